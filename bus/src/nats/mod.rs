//! The NATS bus: core subjects, JetStream history streams, publish receipts.

mod cache;
mod outgoing;
mod reads;
mod relay;
mod routes;
mod usage;
mod webhooks;

pub(crate) use routes::RouteGuard;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use herald_proto::{AppId, ChannelName, NamespaceName, SubjectSpace, bus};
use prost::Message as _;
use tokio::task::JoinHandle;

use crate::app_config::AppConfig;
use crate::history::{HistoryEntry, HistoryPage, HistorySpec, Position};
use crate::{BusError, NamespaceSource, Sink, lock};
use relay::{Epochs, KnownEpochs, Relay, STREAM_ADVISORIES, epoch_of, forget_all_epochs, is_stream_not_found};

/// Tuning of the NATS bus.
///
/// ```no_run
/// use herald_bus::{Bus, NatsOptions};
/// use herald_proto::SubjectSpace;
/// # async fn connect() -> Result<(), herald_bus::BusError> {
/// let options = NatsOptions { connection_name: "herald-edge e1".into(), ..NatsOptions::default() };
/// let bus = Bus::connect_nats("nats://127.0.0.1:4222", SubjectSpace::default(), options).await?;
/// assert!(bus.is_connected());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Longest wait for a publish or subscribe to reach NATS.
    pub publish_timeout: Duration,
    /// Messages buffered between NATS and the hub per bucket of channels
    /// (see [`herald_proto::subject::CHANNEL_BUCKETS`]); also the most
    /// messages a history gap fill delivers.
    pub subscription_capacity: usize,
    /// Name shown in NATS monitoring.
    pub connection_name: String,
    /// Requests the control plane handles at once, per kind (namespace
    /// lookups, webhook events).
    pub request_concurrency: usize,
    /// How long the last message of a cache channel is kept.
    pub cache_ttl: Duration,
    /// Most bytes the cache stream keeps (the oldest entries go first).
    pub cache_max_bytes: u64,
    /// How the channels with local subscribers are followed.
    pub channel_routing: ChannelRouting,
    /// Most publishes waiting to be handed to the NATS client; past it a
    /// publish waits for room, within `publish_timeout`.
    pub publish_queue: usize,
}

/// How a node follows on NATS the channels it has local subscribers to.
///
/// ```
/// use herald_bus::ChannelRouting;
/// assert_eq!("channel".parse::<ChannelRouting>(), Ok(ChannelRouting::Channel));
/// assert_eq!("bucket".parse::<ChannelRouting>(), Ok(ChannelRouting::default()));
/// assert!("all".parse::<ChannelRouting>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelRouting {
    /// One NATS subscription per bucket of an app's channels (at most
    /// [`CHANNEL_BUCKETS`](herald_proto::subject::CHANNEL_BUCKETS) per
    /// app): little memory per channel, but the node also receives the
    /// messages of the other channels of its buckets.
    #[default]
    Bucket,
    /// One NATS subscription per channel: the node receives only its own
    /// channels' messages, and the NATS client keeps a queue (about 6 KiB)
    /// for each.
    Channel,
}

impl std::str::FromStr for ChannelRouting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bucket" => Ok(Self::Bucket),
            "channel" => Ok(Self::Channel),
            other => Err(format!("unknown channel routing {other:?}: expected \"bucket\" or \"channel\"")),
        }
    }
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(5),
            subscription_capacity: 8192,
            connection_name: "herald".to_owned(),
            request_concurrency: 32,
            cache_ttl: crate::cache::DEFAULT_CACHE_TTL,
            cache_max_bytes: 256 * 1024 * 1024,
            channel_routing: ChannelRouting::Bucket,
            publish_queue: 8192,
        }
    }
}

/// Which kind of report a report subscription decodes.
#[derive(Clone, Copy)]
pub(crate) enum Report {
    Presence,
    Occupancy,
}

pub(crate) struct NatsBus {
    pub(crate) client: async_nats::Client,
    pub(crate) subjects: SubjectSpace,
    pub(crate) options: NatsOptions,
    pub(crate) sink: Arc<OnceLock<Arc<dyn Sink>>>,
    pub(crate) connected: Arc<AtomicBool>,
    /// Notified (one permit) each time the connection is established again
    /// after it was lost (not at the first connect).
    pub(crate) reconnected: Arc<tokio::sync::Notify>,
    pub(crate) control_task: Mutex<Option<JoinHandle<()>>>,
    pub(crate) serve_task: Mutex<Option<JoinHandle<()>>>,
    /// Takes the webhook events edges report (the control plane's side).
    pub(crate) webhook_task: Mutex<Option<JoinHandle<()>>>,
    pub(crate) usage_task: Mutex<Option<JoinHandle<()>>>,
    /// Forgets the epoch of a stream JetStream announces as created or
    /// deleted.
    pub(crate) advisory_task: Mutex<Option<JoinHandle<()>>>,
    pub(crate) epochs: Arc<Epochs>,
    /// The publishes on their way to the server, and their confirmations.
    pub(crate) outgoing: Arc<outgoing::Outgoing>,
    /// Hands the queued publishes to the client and confirms them.
    flush_task: JoinHandle<()>,
    /// Set once the cache stream is known to exist.
    pub(crate) cache_ready: AtomicBool,
    /// The buckets of channels with local subscriptions.
    pub(crate) buckets: Arc<routes::Buckets>,
    /// History reads of the same page at the same moment, shared.
    reads: reads::SharedReads,
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        for task in [&self.advisory_task, &self.webhook_task, &self.usage_task] {
            if let Some(task) = lock(task).take() {
                task.abort();
            }
        }
        self.flush_task.abort();
    }
}

impl NatsBus {
    /// Connects to NATS at `url`, with the event handling that keeps the
    /// connection state, the epochs and the metrics current.
    pub(crate) async fn connect(url: &str, subjects: SubjectSpace, options: NatsOptions) -> Result<Self, BusError> {
        let sink: Arc<OnceLock<Arc<dyn Sink>>> = Arc::new(OnceLock::new());
        let connected = Arc::new(AtomicBool::new(false));
        let events_connected = connected.clone();
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let events_reconnected = reconnected.clone();
        let ever_connected = Arc::new(AtomicBool::new(false));
        let known_epochs: Arc<Mutex<KnownEpochs>> = Arc::default();
        let events_epochs = known_epochs.clone();
        let client = async_nats::ConnectOptions::new()
            .name(&options.connection_name)
            .subscription_capacity(options.subscription_capacity)
            // Subjects are built from checked names (the prefix, app ids,
            // channel names), never from raw input: checking each publish's
            // again costs a scan per message.
            .skip_subject_validation(true)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(2_000)))
            .event_callback(move |event| {
                let connected = events_connected.clone();
                let epochs = events_epochs.clone();
                let reconnected = events_reconnected.clone();
                let ever_connected = ever_connected.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            // Stream advisories sent while disconnected were
                            // missed, and the server may have lost its
                            // storage: every cached epoch is suspect.
                            forget_all_epochs(&epochs);
                            connected.store(true, Ordering::Release);
                            if ever_connected.swap(true, Ordering::AcqRel) {
                                reconnected.notify_one();
                            }
                            tracing::info!("bus connected");
                            crate::telemetry::connected(true);
                        }
                        async_nats::Event::Disconnected => {
                            connected.store(false, Ordering::Release);
                            tracing::warn!("bus disconnected");
                            crate::telemetry::connected(false);
                            crate::telemetry::disconnected();
                        }
                        async_nats::Event::SlowConsumer(sid) => {
                            tracing::warn!(sid, "bus subscription fell behind; messages dropped by nats client");
                            crate::telemetry::slow_consumer();
                        }
                        other => tracing::debug!(event = %other, "bus event"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| BusError::Unavailable(format!("connect to {url}: {e}")))?;
        connected.store(true, Ordering::Release);
        crate::telemetry::connected(true);
        let epochs = Arc::new(Epochs { js: async_nats::jetstream::new(client.clone()), known: known_epochs });
        let outgoing = Arc::new(outgoing::Outgoing::new(options.publish_queue));
        let flush_task = tokio::spawn(outgoing.clone().flush(client.clone(), subjects.sync().into()));
        let nats = Self {
            subjects,
            options,
            sink,
            connected,
            reconnected,
            control_task: Mutex::new(None),
            serve_task: Mutex::new(None),
            webhook_task: Mutex::new(None),
            usage_task: Mutex::new(None),
            advisory_task: Mutex::new(None),
            epochs,
            flush_task,
            outgoing,
            client,
            cache_ready: AtomicBool::new(false),
            buckets: Arc::default(),
            reads: reads::SharedReads::default(),
        };
        nats.watch_streams().await?;
        Ok(nats)
    }

    pub(crate) fn check_connected(&self) -> Result<(), BusError> {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(BusError::Disconnected)
        }
    }

    pub(crate) async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        self.check_connected()?;
        let work = async {
            let ticket = self.send(subject, payload).await?;
            self.receipt(ticket).await
        };
        match tokio::time::timeout(self.options.publish_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(BusError::Timeout { what: "publish" }),
        }
    }

    /// Waits until the server has the `ticket`-th publish (see
    /// [`outgoing`]).
    pub(crate) async fn receipt(&self, ticket: u64) -> Result<(), BusError> {
        self.outgoing.confirmed(ticket).await
    }

    /// Waits until the server processed everything this connection sent so
    /// far: a request nobody answers comes back as "no responders" only
    /// after the server handled the commands before it (a subscription is
    /// then live, and messages published from now on reach it).
    pub(crate) async fn sync(&self) -> Result<(), BusError> {
        outgoing::round_trip(&self.client, self.subjects.sync().into())
            .await
            .map_err(|e| BusError::Unavailable(format!("nats did not confirm the subscription: {e}")))
    }

    /// Follows JetStream's advisories about created and deleted streams, and
    /// forgets the epoch of those of this subject space (a stream deleted
    /// and created again has a new epoch, while its sequence numbers may
    /// look like a continuation to an edge that saw only some of them).
    pub(crate) async fn watch_streams(&self) -> Result<(), BusError> {
        let mut subscribers = Vec::with_capacity(STREAM_ADVISORIES.len());
        for kind in STREAM_ADVISORIES {
            let subject = format!("$JS.EVENT.ADVISORY.STREAM.{kind}.*");
            let sub = self.client.subscribe(subject).await.map_err(|e| BusError::Unavailable(e.to_string()))?;
            subscribers.push(sub);
        }
        self.timed("the advisory subscription", self.sync()).await?;
        let prefix = self.subjects.history_stream_prefix();
        let epochs = self.epochs.clone();
        let task = tokio::spawn(async move {
            let mut advisories = futures_util::stream::select_all(subscribers);
            while let Some(msg) = advisories.next().await {
                // Stream names hold no dot: the last token is the name.
                let Some((_, stream)) = msg.subject.as_str().rsplit_once('.') else { continue };
                if stream.starts_with(&prefix) {
                    tracing::debug!(stream, advisory = %msg.subject, "history stream changed; its epoch is looked up again");
                    epochs.forget(stream);
                }
            }
        });
        if let Some(old) = lock(&self.advisory_task).replace(task) {
            old.abort();
        }
        Ok(())
    }

    pub(crate) async fn attach(&self, sink: Arc<dyn Sink>) -> Result<(), BusError> {
        if self.sink.set(sink.clone()).is_err() {
            return Ok(());
        }
        let mut control =
            self.client.subscribe(self.subjects.control()).await.map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.sync().await?;
        let task = tokio::spawn(async move {
            while let Some(msg) = control.next().await {
                match bus::ControlEvent::decode(msg.payload) {
                    Ok(event) => sink.control(event),
                    Err(e) => tracing::warn!(error = %e, "undecodable control event ignored"),
                }
            }
        });
        *self.control_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(())
    }

    /// Subscribes to `channel` as subscription `id`: adds it to its bucket
    /// (its own, with [`ChannelRouting::Channel`]) and, when that has no
    /// live NATS subscription yet, subscribes to it and waits until NATS
    /// has the subscription. Dropping the guard ends it.
    pub(crate) async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        id: u64,
        bus: Weak<Self>,
    ) -> Result<routes::RouteGuard, BusError> {
        let guard = self.buckets.add(app, channel, id, self.options.channel_routing);
        let bucket = guard.bucket();
        if bucket.is_live() {
            return Ok(guard);
        }
        // Boxed: the first subscription to a bucket is the rare path.
        Box::pin(async {
            let _setup = bucket.setting_up().await;
            if bucket.is_live() {
                return Ok(());
            }
            let (app, number) = (bucket.app(), bucket.number());
            let subject = match bucket.only() {
                Some(channel) => self.subjects.channel(app, channel),
                None => self.subjects.channel_bucket(app, number),
            };
            let (sink, sub) = self.subscribe_confirmed(subject).await?;
            let relay = Relay {
                sink,
                bucket: bucket.clone(),
                prefix: self.subjects.channel_bucket_prefix(app, number).into(),
                epochs: self.epochs.clone(),
                bus,
                gap_limit: self.options.subscription_capacity,
            };
            bucket.set_relay(tokio::spawn(relay.run(sub)));
            Ok(())
        })
        .await?;
        Ok(guard)
    }

    /// Runs `work` within the publish timeout.
    pub(crate) async fn timed<T>(
        &self,
        what: &'static str,
        work: impl std::future::Future<Output = Result<T, BusError>>,
    ) -> Result<T, BusError> {
        match tokio::time::timeout(self.options.publish_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(BusError::Timeout { what }),
        }
    }

    pub(crate) async fn ensure_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        spec: &HistorySpec,
    ) -> Result<(), BusError> {
        use async_nats::jetstream::stream;
        self.check_connected()?;
        let source = self.subjects.history_stream_subjects(app, ns);
        let config = stream::Config {
            name: self.subjects.history_stream(app, ns),
            description: Some(format!("Herald history of namespace {ns} of app {app}")),
            subjects: vec![source.clone()],
            max_messages_per_subject: i64::from(spec.size),
            max_age: spec.ttl,
            max_bytes: i64::try_from(spec.max_bytes).unwrap_or(i64::MAX),
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            num_replicas: usize::from(spec.replicas.max(1)),
            allow_direct: true,
            republish: Some(stream::Republish {
                source,
                destination: self.subjects.history_republish(app),
                headers_only: false,
            }),
            ..Default::default()
        };
        let js = &self.epochs.js;
        self.timed("the stream update", async {
            js.create_or_update_stream(config).await.map_err(|e| BusError::Failed(format!("history stream: {e}")))?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn drop_history(&self, app: &AppId, ns: &NamespaceName) -> Result<(), BusError> {
        self.check_connected()?;
        let name = self.subjects.history_stream(app, ns);
        let js = &self.epochs.js;
        let result = self
            .timed("the stream delete", async {
                match js.delete_stream(&name).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_stream_not_found(&e) => Ok(()),
                    Err(e) => Err(BusError::Failed(format!("history stream: {e}"))),
                }
            })
            .await;
        self.epochs.forget(&name);
        result
    }

    pub(crate) async fn publish_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        message_id: &str,
        payload: Bytes,
    ) -> Result<Position, BusError> {
        use async_nats::jetstream::context::PublishErrorKind;
        self.check_connected()?;
        let subject = self.subjects.history(app, ns, channel);
        let mut headers = async_nats::HeaderMap::new();
        if !message_id.is_empty() {
            // Per channel: one message sent to several channels of the
            // namespace is one message per channel, not a duplicate.
            let dedupe = format!("{}:{channel}:{message_id}", channel.as_str().len());
            headers.insert(async_nats::header::NATS_MESSAGE_ID, dedupe.as_str());
        }
        let js = &self.epochs.js;
        let ack = self
            .timed("the history publish", async {
                let map = |e: async_nats::jetstream::context::PublishError| match e.kind() {
                    PublishErrorKind::StreamNotFound => {
                        BusError::NoHistory(format!("namespace {ns} of app {app} has no history stream"))
                    }
                    _ => BusError::Unavailable(format!("history publish: {e}")),
                };
                js.publish_with_headers(subject, headers, payload).await.map_err(map)?.await.map_err(map)
            })
            .await?;
        let epoch = self
            .epochs
            .get(&ack.stream, ack.sequence)
            .await
            .ok_or_else(|| BusError::Unavailable("history stream epoch unknown".into()))?;
        Ok(Position { seq: ack.sequence, epoch })
    }

    pub(crate) async fn read_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, BusError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        self.check_connected()?;
        let name = self.subjects.history_stream(app, ns);
        let subject = self.subjects.history(app, ns, channel);
        let js = &self.epochs.js;
        let key = (name.clone(), subject.clone(), after_seq, limit);
        self.reads
            .read(key, || {
                self.timed("the history read", async {
                    let stream = js.get_stream(&name).await.map_err(|e| {
                        if is_stream_not_found(&e) {
                            BusError::NoHistory(format!("namespace {ns} of app {app} keeps no history"))
                        } else {
                            BusError::Unavailable(format!("history read: {e}"))
                        }
                    })?;
                    let info = stream.cached_info();
                    let epoch = epoch_of(info);
                    let state = &info.state;
                    let unavailable = |e: async_nats::jetstream::stream::DirectGetError| {
                        BusError::Unavailable(format!("history read: {e}"))
                    };
                    let complete = if after_seq == 0 {
                        // Nothing was ever dropped from the stream.
                        state.first_sequence <= 1 && state.messages == state.last_sequence
                    } else if after_seq > state.last_sequence {
                        false
                    } else {
                        match stream.direct_get(after_seq).await {
                            Ok(m) => m.subject.as_str() == subject,
                            Err(e) if e.kind() == DirectGetErrorKind::NotFound => false,
                            Err(e) => return Err(unavailable(e)),
                        }
                    };
                    let mut messages = Vec::new();
                    let mut next = after_seq + 1;
                    while messages.len() < limit {
                        match stream.direct_get_next_for_subject(subject.as_str(), Some(next)).await {
                            Ok(m) => {
                                next = m.sequence + 1;
                                messages.push(HistoryEntry { seq: m.sequence, payload: m.payload });
                            }
                            Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                            Err(e) => return Err(unavailable(e)),
                        }
                    }
                    let last_seq = match stream.direct_get_last_for_subject(subject.as_str()).await {
                        Ok(m) => m.sequence,
                        Err(e) if e.kind() == DirectGetErrorKind::NotFound => 0,
                        Err(e) => return Err(unavailable(e)),
                    };
                    Ok(HistoryPage { epoch, messages, complete, last_seq })
                })
            })
            .await
    }

    pub(crate) async fn serve_namespaces(&self, source: Arc<dyn NamespaceSource>) -> Result<(), BusError> {
        self.check_connected()?;
        let requests = self
            .client
            .queue_subscribe(self.subjects.all_namespaces(), "herald-control-plane".into())
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.sync().await?;
        let client = self.client.clone();
        let subjects = self.subjects.clone();
        let concurrency = self.options.request_concurrency.max(1);
        let task = tokio::spawn(requests.for_each_concurrent(concurrency, move |msg| {
            let (client, subjects, source) = (client.clone(), subjects.clone(), source.clone());
            async move {
                let (Some(reply), Some(app)) = (msg.reply, subjects.parse_namespaces(&msg.subject)) else { return };
                let list = crate::app_config::answer(&*source, app).await;
                if let Err(e) = client.publish(reply, Bytes::from(list.encode_to_vec())).await {
                    tracing::warn!(error = %e, "namespace reply not sent");
                }
            }
        }));
        if let Some(old) = lock(&self.serve_task).replace(task) {
            old.abort();
        }
        Ok(())
    }

    pub(crate) async fn fetch_namespaces(&self, app: &AppId) -> Result<Option<AppConfig>, BusError> {
        use async_nats::RequestErrorKind;
        self.check_connected()?;
        let subject = self.subjects.namespaces(app);
        let reply = self
            .timed("the namespace request", async {
                self.client.request(subject, Bytes::new()).await.map_err(|e| match e.kind() {
                    RequestErrorKind::NoResponders => BusError::NoControlPlane,
                    _ => BusError::Unavailable(format!("namespace request: {e}")),
                })
            })
            .await?;
        let list = bus::NamespaceList::decode(reply.payload)
            .map_err(|e| BusError::Failed(format!("undecodable namespace reply: {e}")))?;
        AppConfig::from_list(list)
    }

    /// Subscribes to `subject` and waits until NATS holds the interest
    /// (within the publish timeout). Returns the attached sink too.
    pub(crate) async fn subscribe_confirmed(
        &self,
        subject: String,
    ) -> Result<(Arc<dyn Sink>, async_nats::Subscriber), BusError> {
        let sink = self.sink.get().cloned().ok_or(BusError::NoSink)?;
        self.check_connected()?;
        let sub = self
            .timed("the subscription", async {
                let sub = self.client.subscribe(subject).await.map_err(|e| BusError::Unavailable(e.to_string()))?;
                self.sync().await?;
                Ok(sub)
            })
            .await?;
        Ok((sink, sub))
    }

    pub(crate) async fn subscribe_reports(&self, subject: String, kind: Report) -> Result<JoinHandle<()>, BusError> {
        let (sink, mut sub) = self.subscribe_confirmed(subject).await?;
        let subjects = self.subjects.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                match kind {
                    Report::Presence => {
                        let Some((app, channel)) = subjects.parse_presence(&msg.subject) else { continue };
                        match bus::PresenceReport::decode(msg.payload) {
                            Ok(report) if report.app_id == app.as_str() => sink.presence(&app, &channel, report),
                            Ok(_) => tracing::warn!(subject = %msg.subject, "presence report for another app ignored"),
                            Err(e) => tracing::warn!(error = %e, "undecodable presence report ignored"),
                        }
                    }
                    Report::Occupancy => match bus::OccupancyReport::decode(msg.payload) {
                        Ok(report) => sink.occupancy(report),
                        Err(e) => tracing::warn!(error = %e, "undecodable occupancy report ignored"),
                    },
                }
            }
        });
        Ok(task)
    }
}
