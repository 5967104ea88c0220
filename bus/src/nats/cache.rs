//! The cache stream over NATS: the last message of every cache channel of
//! the subject space, one JetStream message per subject (see the crate's
//! `cache` module for what a cache channel is).

use std::sync::atomic::Ordering;

use async_nats::jetstream::stream;
use bytes::Bytes;
use herald_proto::{AppId, ChannelName};

use super::NatsBus;
use super::relay::is_stream_not_found;
use crate::BusError;

impl NatsBus {
    async fn ensure_cache_stream(&self) -> Result<(), BusError> {
        if self.cache_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let config = stream::Config {
            name: self.subjects.cache_stream(),
            description: Some("Herald: the last message of each cache channel".into()),
            subjects: vec![self.subjects.all_cache()],
            max_messages_per_subject: 1,
            max_age: self.options.cache_ttl,
            max_bytes: i64::try_from(self.options.cache_max_bytes).unwrap_or(i64::MAX),
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            ..Default::default()
        };
        // Idempotent: replicas and edges racing to create it agree.
        self.timed("the cache stream", async {
            self.epochs
                .js
                .get_or_create_stream(config)
                .await
                .map(drop)
                .map_err(|e| BusError::Unavailable(format!("cache stream: {e}")))
        })
        .await?;
        self.cache_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Keeps `payload` as the channel's last message.
    pub(crate) async fn store_cached(
        &self,
        app: &AppId,
        channel: &ChannelName,
        payload: Bytes,
    ) -> Result<(), BusError> {
        use async_nats::jetstream::context::PublishErrorKind;
        self.check_connected()?;
        let subject = self.subjects.cache(app, channel);
        for attempt in 0..2 {
            self.ensure_cache_stream().await?;
            let work = async {
                let ack = self.epochs.js.publish(subject.clone(), payload.clone()).await?;
                ack.await.map(drop)
            };
            let result = tokio::time::timeout(self.options.publish_timeout, work)
                .await
                .map_err(|_| BusError::Timeout { what: "the cache publish" })?;
            match result {
                Ok(()) => return Ok(()),
                // Deleted behind our back: create it again, once.
                Err(e) if attempt == 0 && e.kind() == PublishErrorKind::StreamNotFound => {
                    self.cache_ready.store(false, Ordering::Release);
                }
                Err(e) => return Err(BusError::Unavailable(format!("cache publish: {e}"))),
            }
        }
        Err(BusError::Unavailable("cache stream missing".into()))
    }

    /// The channel's last message, if one is kept.
    pub(crate) async fn read_cached(&self, app: &AppId, channel: &ChannelName) -> Result<Option<Bytes>, BusError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        self.check_connected()?;
        let subject = self.subjects.cache(app, channel);
        self.timed("the cache read", async {
            let stream = match self.epochs.js.get_stream(self.subjects.cache_stream()).await {
                Ok(stream) => stream,
                Err(e) if is_stream_not_found(&e) => return Ok(None),
                Err(e) => return Err(BusError::Unavailable(format!("cache read: {e}"))),
            };
            match stream.direct_get_last_for_subject(subject.as_str()).await {
                Ok(m) => Ok(Some(m.payload)),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
                Err(e) => Err(BusError::Unavailable(format!("cache read: {e}"))),
            }
        })
        .await
    }
}
