//! Channel namespaces: per app, the options of the channels `name:…`
//! (presence, join/leave events, client publishes, history), their checks,
//! the history streams they own on the bus, the lookups the publish path
//! and channel reads make (through [`crate::namespace_cache`]), and the
//! answers to edges' namespace requests (with the app's Pusher settings,
//! from [`crate::services::pusher`]).
//!
//! A channel `ns:rest` belongs to namespace `ns` when `ns` is a valid
//! [`herald_proto::NamespaceName`]; every other channel (and every channel
//! of a namespace that is not configured) gets [`default_options`]: no
//! presence, no history, client publishes allowed.
//!
//! A change first creates, changes or drops the namespace's history stream
//! on the bus (a failure answers `503 unavailable` and changes
//! nothing), then writes the database, then publishes
//! `NamespacesChanged{app}` so edges and other replicas drop their cached
//! copy (retried in the background when the bus is down; caches trust an
//! entry at most `cache_ttl` anyway).

use std::sync::Weak;

use futures_util::future::BoxFuture;
use herald_bus::{BusError, HistorySpec, NamespaceSource, StreamBounds, now_ms};
use herald_proto::webhook::EventKind;
use herald_proto::{AppId, ChannelName, ErrorCode, NamespaceName, bus};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::namespace_cache::{AppNamespaces, AppNamespacesInner};
use crate::publish::Prepared;
use crate::services::checks::{parse_app_id, parse_namespace, require_admin, require_app};
use crate::store::{Namespace, StoreError, WebhookStatus};

pub use herald_bus::namespaces::{default_options, keeps_history};

/// The shortest history TTL accepted, in milliseconds.
pub const MIN_HISTORY_TTL_MS: u64 = 1_000;

/// Wire form of stored namespaces for edges.
fn to_bus(ns: &Namespace) -> bus::Namespace {
    bus::Namespace { name: ns.name.to_string(), options: Some(ns.options) }
}

impl Core {
    /// Checks options against the rules and the server's bounds.
    ///
    /// # Errors
    ///
    /// `bad_request` naming the field.
    pub fn check_namespace_options(&self, o: &bus::NamespaceOptions) -> Result<(), ApiError> {
        if o.join_leave && !o.presence {
            return Err(ApiError::bad_request(
                "`join_leave` needs `presence`: join and leave events come from presence",
            ));
        }
        if (o.history_size == 0) != (o.history_ttl_ms == 0) {
            return Err(ApiError::bad_request(
                "`history_size` and `history_ttl` go together: both 0 (no history) or both greater than 0",
            ));
        }
        if o.history_size > self.config.max_history_size {
            return Err(ApiError::bad_request(format!(
                "`history_size` is {}; the server allows at most {} (max_history_size)",
                o.history_size, self.config.max_history_size
            )));
        }
        let max_ttl_ms = u64::try_from(self.config.max_history_ttl.0.as_millis()).unwrap_or(u64::MAX);
        if o.history_ttl_ms > max_ttl_ms {
            return Err(ApiError::bad_request(format!(
                "`history_ttl` is {} ms; the server allows at most {} (max_history_ttl)",
                o.history_ttl_ms, self.config.max_history_ttl
            )));
        }
        if o.history_ttl_ms > 0 && o.history_ttl_ms < MIN_HISTORY_TTL_MS {
            return Err(ApiError::bad_request(format!(
                "`history_ttl` is {} ms; it must be at least {MIN_HISTORY_TTL_MS} ms",
                o.history_ttl_ms
            )));
        }
        Ok(())
    }

    fn history_spec(&self, o: &bus::NamespaceOptions) -> HistorySpec {
        HistorySpec::new(o, self.stream_bounds())
    }

    /// The bounds every history stream gets (configuration).
    pub(crate) fn stream_bounds(&self) -> StreamBounds {
        StreamBounds { max_bytes: self.config.history_stream_max_size.0, replicas: self.config.history_replicas }
    }

    /// Reads are open to the admin and the app's own keys.
    fn namespace_reader(&self, who: &Principal, app: &str) -> Result<AppId, ApiError> {
        let app = parse_app_id(app)?;
        require_app(who, &app)?;
        Ok(app)
    }

    async fn existing_app(&self, app: &AppId) -> Result<(), ApiError> {
        match self.store.get_app(app).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!("no app {:?}", app.as_str()))),
        }
    }

    /// Creates or replaces a namespace (admin). Returns it and whether it
    /// is new. A namespace with history gets its stream first (changed when
    /// the bounds changed); turning history off drops the stream and what it
    /// held.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found` (app), `bad_request`, `limit_exceeded`,
    /// `unavailable` (database, or the bus did not take the stream
    /// change: nothing was changed).
    pub async fn put_namespace(
        &self,
        who: &Principal,
        app: &str,
        name: &str,
        options: bus::NamespaceOptions,
    ) -> Result<(Namespace, bool), ApiError> {
        require_admin(who)?;
        let app = parse_app_id(app)?;
        let name = parse_namespace(name)?;
        self.check_namespace_options(&options)?;
        self.existing_app(&app).await?;
        let previous = self.store.get_namespace(&app, &name).await?;
        if previous.is_none() && self.store.count_namespaces(&app).await? >= self.config.max_namespaces_per_app {
            return Err(ApiError::limit_exceeded(format!(
                "the app has {} namespaces, the limit; delete unused ones or raise max_namespaces_per_app",
                self.config.max_namespaces_per_app
            )));
        }
        let had_history = previous.as_ref().is_some_and(Namespace::has_history);
        let bus = self.publisher.bus();
        if keeps_history(&options) {
            bus.ensure_history(&app, &name, &self.history_spec(&options)).await.map_err(history_error)?;
        } else if had_history {
            bus.drop_history(&app, &name).await.map_err(history_error)?;
        }
        let now = now_ms();
        let ns = Namespace {
            app_id: app.clone(),
            name: name.clone(),
            options,
            created_at_ms: previous.as_ref().map_or(now, |p| p.created_at_ms),
            updated_at_ms: now,
        };
        let stored = match self.store.put_namespace(&ns).await {
            Ok(stored) => stored,
            Err(StoreError::Missing(_)) => return Err(ApiError::not_found(format!("no app {:?}", app.as_str()))),
            Err(e) => return Err(e.into()),
        };
        self.namespaces_changed(&app).await;
        if had_history && !keeps_history(&stored.options) {
            // A publish between the first drop and the change above (with
            // the old options cached) may have created the stream again.
            self.drop_history_again(&app, &name).await;
        }
        tracing::info!(app = %app, namespace = %name, created = previous.is_none(), "namespace stored");
        Ok((stored, previous.is_none()))
    }

    /// One namespace (admin, or a key of the app).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `bad_request`, `unavailable`.
    pub async fn get_namespace(&self, who: &Principal, app: &str, name: &str) -> Result<Namespace, ApiError> {
        let app = self.namespace_reader(who, app)?;
        let name = parse_namespace(name)?;
        match self.store.get_namespace(&app, &name).await? {
            Some(ns) => Ok(ns),
            None => {
                self.existing_app(&app).await?;
                Err(ApiError::not_found(format!("app {:?} has no namespace {:?}", app.as_str(), name.as_str())))
            }
        }
    }

    /// The app's namespaces by name (admin, or a key of the app).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn list_namespaces(&self, who: &Principal, app: &str) -> Result<Vec<Namespace>, ApiError> {
        let app = self.namespace_reader(who, app)?;
        self.existing_app(&app).await?;
        Ok(self.store.list_namespaces(&app).await?)
    }

    /// Deletes a namespace (admin): its channels fall back to the defaults,
    /// and its history stream is dropped first.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `bad_request`, `unavailable` (nothing was
    /// deleted).
    pub async fn delete_namespace(&self, who: &Principal, app: &str, name: &str) -> Result<(), ApiError> {
        require_admin(who)?;
        let ns = self.get_namespace(who, app, name).await?;
        if ns.has_history() {
            self.publisher.bus().drop_history(&ns.app_id, &ns.name).await.map_err(history_error)?;
        }
        if self.store.delete_namespace(&ns.app_id, &ns.name).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "app {:?} has no namespace {:?}",
                ns.app_id.as_str(),
                ns.name.as_str()
            )));
        }
        self.namespaces_changed(&ns.app_id).await;
        if ns.has_history() {
            self.drop_history_again(&ns.app_id, &ns.name).await;
        }
        tracing::info!(app = %ns.app_id, namespace = %ns.name, "namespace deleted");
        Ok(())
    }

    /// Drops a namespace's stream once more after its history was turned
    /// off and everyone told (best effort: the first drop, before the
    /// change, is the one whose failure refuses the change).
    async fn drop_history_again(&self, app: &AppId, name: &NamespaceName) {
        if let Err(e) = self.publisher.bus().drop_history(app, name).await {
            tracing::warn!(app = %app, namespace = %name, error = %e, "history stream not dropped again");
        }
    }

    /// Drops the history streams of an app being deleted (best effort: a
    /// stream left behind still expires by its TTL).
    pub(crate) async fn drop_app_history(&self, namespaces: &[Namespace]) {
        for ns in namespaces.iter().filter(|ns| ns.has_history()) {
            if let Err(e) = self.publisher.bus().drop_history(&ns.app_id, &ns.name).await {
                tracing::warn!(app = %ns.app_id, namespace = %ns.name, error = %e, "history stream not dropped");
            }
        }
    }

    /// Re-creates the stream of every namespace with history (at start: a
    /// NATS that lost its data gets them back). Returns how many failed.
    pub async fn ensure_all_history(&self) -> usize {
        let namespaces = match self.store.list_history_namespaces().await {
            Ok(ns) => ns,
            Err(e) => {
                tracing::warn!(error = %e, "history namespaces not listed; their streams are not re-ensured");
                return 1;
            }
        };
        let mut failed = 0;
        for ns in &namespaces {
            let spec = self.history_spec(&ns.options);
            if let Err(e) = self.publisher.bus().ensure_history(&ns.app_id, &ns.name, &spec).await {
                failed += 1;
                tracing::warn!(app = %ns.app_id, namespace = %ns.name, error = %e, "history stream not ensured");
            }
        }
        if !namespaces.is_empty() {
            tracing::info!(streams = namespaces.len(), failed, "history streams ensured");
        }
        failed
    }

    /// Tells edges and other replicas to drop what they cached of the app's
    /// namespaces and Pusher settings (`NamespacesChanged`).
    pub(crate) async fn namespaces_changed(&self, app: &AppId) {
        self.namespaces.evict(app);
        let kind = bus::control_event::Kind::NamespacesChanged(bus::NamespacesChanged { app_id: app.to_string() });
        self.notify(kind).await;
    }

    /// Marks the channels of `msg` that keep history (namespaces from the
    /// cache, else from the database).
    pub(crate) async fn mark_history(&self, app: &AppId, mut msg: Prepared) -> Result<Prepared, ApiError> {
        msg.history.clear();
        let ns = self.app_namespaces(app).await?;
        if ns.any_history {
            msg.history.extend(msg.channels.iter().map(|c| keeps_history(&ns.options(c))));
        }
        Ok(msg)
    }

    /// The app's namespaces, from the cache or the database.
    pub(crate) async fn app_namespaces(&self, app: &AppId) -> Result<AppNamespaces, ApiError> {
        if let Some(cached) = self.namespaces.get(app) {
            return Ok(cached);
        }
        let generation = self.namespaces.generation();
        // Boxed: a cache miss is rare, and the database read's future would
        // otherwise weigh on every publish's.
        let map = AppNamespacesInner::new(&Box::pin(self.store.list_namespaces(app)).await?);
        self.namespaces.fill(app, generation, map.clone());
        Ok(map)
    }

    /// The options in force for `channel` of `app`.
    ///
    /// # Errors
    ///
    /// `unavailable` when the namespaces are not cached and the database is
    /// down.
    pub async fn channel_options(&self, app: &AppId, channel: &ChannelName) -> Result<bus::NamespaceOptions, ApiError> {
        if channel.namespace().is_none() {
            return Ok(default_options(channel));
        }
        Ok(self.app_namespaces(app).await?.options(channel))
    }
}

/// A bus failure while changing a history stream.
fn history_error(e: BusError) -> ApiError {
    match e {
        e if e.is_transient() => {
            tracing::warn!(error = %e, "history stream not changed");
            ApiError::unavailable(
                "the message bus did not take the history stream change; nothing was changed; retry later",
            )
        }
        other => {
            tracing::error!(error = %other, "history stream refused");
            ApiError::new(ErrorCode::Unavailable, "the message bus refused the history stream; nothing was changed")
        }
    }
}

/// Answers edges' namespace requests from the database, with the bounds of
/// history streams (a publisher that finds a stream lost creates it again
/// with them).
pub(crate) struct Source(pub(crate) Weak<Core>);

impl NamespaceSource for Source {
    fn history_bounds(&self) -> StreamBounds {
        self.0.upgrade().map_or(StreamBounds::DEFAULT, |core| core.stream_bounds())
    }

    fn pusher_app(&self, app: AppId) -> BoxFuture<'static, Result<Option<bus::PusherApp>, String>> {
        let core = self.0.clone();
        Box::pin(async move {
            let Some(core) = core.upgrade() else { return Err("the control plane is shutting down".to_owned()) };
            core.pusher_app(&app).await.map_err(|e| {
                tracing::warn!(app = %app, error = %e, "Pusher settings request failed");
                format!("the control plane's store is unavailable: {e}")
            })
        })
    }

    fn webhook_events(&self, app: AppId) -> BoxFuture<'static, Result<Vec<EventKind>, String>> {
        let core = self.0.clone();
        Box::pin(async move {
            let Some(core) = core.upgrade() else { return Err("the control plane is shutting down".to_owned()) };
            // From the database, not this replica's copy: an edge asks right
            // after a change, perhaps before this replica reloaded.
            let endpoints = core.store.list_webhooks(&app).await.map_err(|e| {
                tracing::warn!(app = %app, error = %e, "webhook endpoints not read for an edge");
                format!("the control plane's store is unavailable: {e}")
            })?;
            let mut kinds: Vec<EventKind> = endpoints
                .iter()
                .filter(|w| w.status != WebhookStatus::Disabled)
                .flat_map(|w| w.events.iter().copied())
                .filter(|k| k.is_edge_event())
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            Ok(kinds)
        })
    }

    fn namespaces(&self, app: AppId) -> BoxFuture<'static, Result<Option<Vec<bus::Namespace>>, String>> {
        let core = self.0.clone();
        Box::pin(async move {
            let Some(core) = core.upgrade() else { return Err("the control plane is shutting down".to_owned()) };
            let generation = core.namespaces.generation();
            let lookup = async {
                if core.store.get_app(&app).await?.is_none() {
                    return Ok::<_, StoreError>(None);
                }
                Ok(Some(core.store.list_namespaces(&app).await?))
            };
            match lookup.await {
                Ok(Some(list)) => {
                    core.namespaces.fill(&app, generation, AppNamespacesInner::new(&list));
                    Ok(Some(list.iter().map(to_bus).collect()))
                }
                Ok(None) => Ok(None),
                Err(e) => {
                    // The database is down: answer what this replica cached,
                    // else tell the edge the lookup is unavailable (never
                    // the defaults, which would treat a history channel as
                    // a plain one).
                    let Some(cached) = core.namespaces.get(&app) else {
                        tracing::warn!(app = %app, error = %e, "namespace request failed");
                        return Err(format!("the control plane's store is unavailable: {e}"));
                    };
                    tracing::warn!(app = %app, error = %e, "namespace request answered from the cache");
                    Ok(Some(cached.to_bus()))
                }
            }
        })
    }
}
