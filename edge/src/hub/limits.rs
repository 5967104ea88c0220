//! Per-app limits on this edge: how many connections each app has here,
//! and each app's newest limits as the control plane announced them
//! (`AppLimitsChanged`, sent when an app's limits are changed).
//!
//! # How the limits combine
//!
//! A token carries the app's limits as they were when it was minted (its
//! `lim` claim). An announcement is the app's current setting, so where it
//! gives a value that value wins over the token's — for the connections
//! already open and for new ones alike. A `0` in an announcement means "not
//! sent" (a control plane that does not send that limit): the token's value
//! stands. The edge's own configuration caps both:
//!
//! - **Connections**: a new connection of an app is refused (close code
//!   `ConnectionLimit`) when the app already has its limit of connections on
//!   this edge; the limit is the smaller of the edge's
//!   `max_connections_per_app` (0: none) and the app's (announced, else the
//!   token's; at least 1). Connections already open over a lowered limit
//!   stay open.
//! - **Message size**: a client publish whose data is larger than the
//!   smaller of the edge's `max_message_size` and the app's limit
//!   (announced, else the token's) is refused with `TooLarge`, also on a
//!   connection opened before the announcement. The limit the `Connected`
//!   frame tells a client is the one in force when it connected.
//!
//! # Bounded
//!
//! The edge keeps one entry per app with a connection here: the app's first
//! connection creates it and its last one drops it, announced limits with
//! it. An announcement for an app with no connection here is not kept: the
//! app's next connection starts from its token, which the control plane
//! mints with the app's current limits (a token minted before the change
//! carries the older ones until it is refreshed).
//!
//! The connections of an app share its [`AppLimits`], so a publish reads
//! the announced size limit with one atomic load, without a lock. The same
//! shared value carries the app's usage counters and its quota state (see
//! the hub's `quota`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use herald_bus::usage::{AppCounters, Refused};
use herald_proto::{AppId, CloseCode, bus};

use super::{Hub, lock};

/// The limits the control plane announced for an app; shared by the app's
/// connections on this edge.
#[derive(Debug, Default)]
pub struct AppLimits {
    /// 0: not announced.
    max_message_bytes: AtomicU32,
    /// 0: not announced.
    max_connections: AtomicU32,
    /// The app's usage counters on this edge.
    usage: Arc<AppCounters>,
    /// Until when (Unix ms) publishes are refused: over a message quota.
    messages_over_until: AtomicI64,
    /// Until when (Unix ms) new connections are refused: at the connection
    /// quota.
    connections_over_until: AtomicI64,
    /// Why, as the control plane said.
    quota_reason: std::sync::Mutex<Arc<str>>,
}

impl AppLimits {
    /// The announced largest message payload, in bytes, if any.
    #[must_use]
    pub fn max_message_bytes(&self) -> Option<u32> {
        Some(self.max_message_bytes.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// The announced most connections of the app on one edge, if any.
    #[must_use]
    pub fn max_connections(&self) -> Option<u32> {
        Some(self.max_connections.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// The app's usage counters on this edge.
    #[must_use]
    pub fn usage(&self) -> &AppCounters {
        &self.usage
    }

    /// Why publishes are refused, while the app is over a message quota.
    #[must_use]
    pub fn messages_over_quota(&self) -> Option<Arc<str>> {
        (herald_bus::now_ms() < self.messages_over_until.load(Ordering::Relaxed)).then(|| self.quota_reason())
    }

    /// Why new connections are refused, while the app is at its connection
    /// quota.
    #[must_use]
    pub fn connections_over_quota(&self) -> Option<Arc<str>> {
        (herald_bus::now_ms() < self.connections_over_until.load(Ordering::Relaxed)).then(|| self.quota_reason())
    }

    fn quota_reason(&self) -> Arc<str> {
        lock(&self.quota_reason).clone()
    }

    /// Takes a quota state announced at `now_ms`.
    pub(super) fn set_quota(&self, state: &bus::QuotaState, now_ms: i64) {
        let until = now_ms.saturating_add(i64::from(state.ttl_ms));
        *lock(&self.quota_reason) = Arc::from(herald_proto::codes::truncate_reason(&state.reason));
        self.messages_over_until.store(if state.messages_over { until } else { 0 }, Ordering::Relaxed);
        self.connections_over_until.store(if state.connections_over { until } else { 0 }, Ordering::Relaxed);
    }

    /// Takes the values an announcement gives (0: not given, kept).
    fn update(&self, changed: &bus::AppLimitsChanged) {
        if changed.max_message_bytes > 0 {
            self.max_message_bytes.store(changed.max_message_bytes, Ordering::Relaxed);
        }
        if changed.max_connections > 0 {
            self.max_connections.store(changed.max_connections, Ordering::Relaxed);
        }
    }
}

/// An app with connections on this edge.
#[derive(Debug)]
pub(super) struct AppEntry {
    /// Its connections here.
    connections: u32,
    limits: Arc<AppLimits>,
}

/// Most connections of an app on this edge: the smaller of the edge's
/// `edge_max` (0: no limit) and the app's limit (`app_max`, at least 1);
/// 0 when neither limits them.
#[must_use]
pub fn connection_limit(edge_max: u32, app_max: Option<u32>) -> u32 {
    match (edge_max, app_max) {
        (0, None) => 0,
        (0, Some(n)) => n.max(1),
        (c, None) => c,
        (c, Some(n)) => c.min(n.max(1)),
    }
}

/// Why [`Hub::register`] refused a connection: the app's limit of
/// connections on this edge and whose setting it is, so the refusal can
/// say which key to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimitReached {
    /// The limit in force.
    pub limit: u32,
    /// The edge's `max_connections_per_app` set it (else the app's limit).
    pub by_edge: bool,
}

impl ConnectionLimitReached {
    /// The refusal's text (a close reason: at most 123 bytes).
    #[must_use]
    pub fn message(&self) -> String {
        if self.by_edge {
            format!(
                "connection limit of {} for this app on this edge reached; raise the edge's max_connections_per_app",
                self.limit
            )
        } else {
            format!(
                "app connection limit of {} reached; raise the app's limits.max_connections or default_max_connections",
                self.limit
            )
        }
    }
}

/// Why [`Hub::register`] refused a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitError {
    /// The app has its limit of connections on this edge.
    Limit(ConnectionLimitReached),
    /// The app is at its connection quota (the reason).
    Quota(Arc<str>),
}

impl AdmitError {
    /// The close code the connection gets.
    #[must_use]
    pub fn code(&self) -> CloseCode {
        match self {
            Self::Limit(_) => CloseCode::ConnectionLimit,
            Self::Quota(_) => CloseCode::QuotaExceeded,
        }
    }

    /// The refusal's text (a close reason: at most 123 bytes).
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::Limit(reached) => reached.message(),
            Self::Quota(reason) => herald_proto::codes::truncate_reason(reason).to_owned(),
        }
    }
}

/// Largest client message payload: the smaller of the edge's `edge_max`
/// and the app's limit, if any.
#[must_use]
pub fn message_limit(edge_max: usize, app_max: Option<u32>) -> usize {
    app_max.map_or(edge_max, |n| edge_max.min(usize::try_from(n).unwrap_or(usize::MAX)))
}

/// Most quota states an edge keeps for apps without connections here;
/// past it, new ones are not kept (the app's connections still get them).
pub(super) const MAX_QUOTA_STATES: usize = 100_000;

/// A quota state as announced, and when (Unix ms).
#[derive(Debug)]
pub(super) struct QuotaEntry {
    state: bus::QuotaState,
    at_ms: i64,
}

impl Hub {
    /// Counts a new connection of `app`, unless the app already has its
    /// limit here: the smaller of `edge_max` (0: none) and the app's
    /// announced limit, else `token_max`. Returns the app's shared
    /// [`AppLimits`], or the limit that refused it.
    pub(super) fn admit(
        &self,
        app: &AppId,
        edge_max: u32,
        token_max: Option<u32>,
    ) -> Result<Arc<AppLimits>, AdmitError> {
        let mut apps = lock(&self.apps);
        let entry = apps.entry(app.clone()).or_insert_with(|| {
            let limits = AppLimits { usage: self.usage.app(app), ..AppLimits::default() };
            if let Some(state) = lock(&self.quotas).get(app) {
                limits.set_quota(&state.state, state.at_ms);
            }
            AppEntry { connections: 0, limits: Arc::new(limits) }
        });
        let app_max = entry.limits.max_connections().or(token_max);
        let limit = connection_limit(edge_max, app_max);
        let refused = if let Some(reason) = entry.limits.connections_over_quota() {
            Some(AdmitError::Quota(reason))
        } else if limit > 0 && entry.connections >= limit {
            let by_edge = edge_max > 0 && app_max.is_none_or(|n| edge_max <= n.max(1));
            Some(AdmitError::Limit(ConnectionLimitReached { limit, by_edge }))
        } else {
            None
        };
        if let Some(refused) = refused {
            entry.limits.usage.refused(Refused::Close(refused.code()));
            if entry.connections == 0 {
                apps.remove(app);
            }
            return Err(refused);
        }
        entry.connections += 1;
        entry.limits.usage.connection_opened();
        Ok(entry.limits.clone())
    }

    /// The current connections of each app on this edge.
    #[must_use]
    pub fn app_connections(&self) -> Vec<(AppId, u32)> {
        lock(&self.apps).iter().map(|(app, e)| (app.clone(), e.connections)).collect()
    }

    /// Applies an announced quota state: kept for its TTL (for the app's
    /// next connections here) and applied to the app's connections now.
    pub(super) fn apply_quota(&self, state: bus::QuotaState) {
        let Ok(app) = AppId::new(&state.app_id) else { return };
        let now = herald_bus::now_ms();
        if let Some(entry) = lock(&self.apps).get(&app) {
            entry.limits.set_quota(&state, now);
        }
        let mut quotas = lock(&self.quotas);
        quotas.retain(|_, q| q.at_ms.saturating_add(i64::from(q.state.ttl_ms)) > now);
        let over = state.messages_over || state.connections_over;
        if !over {
            quotas.remove(&app);
        } else if quotas.len() < MAX_QUOTA_STATES || quotas.contains_key(&app) {
            quotas.insert(app, QuotaEntry { state, at_ms: now });
        } else {
            tracing::warn!(%app, "quota state not kept: too many apps over quota announced");
        }
    }

    /// Uncounts a connection of `app`; the app's entry goes with its last.
    pub(super) fn release_app(&self, app: &AppId) {
        let mut apps = lock(&self.apps);
        if let Some(entry) = apps.get_mut(app) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                apps.remove(app);
            }
        }
    }

    /// Applies an announcement of an app's limits, if the app has
    /// connections here.
    pub(super) fn apply_app_limits(&self, changed: &bus::AppLimitsChanged) {
        let Ok(app) = AppId::new(&changed.app_id) else { return };
        let served = match lock(&self.apps).get(&app) {
            Some(entry) => {
                entry.limits.update(changed);
                true
            }
            None => false,
        };
        tracing::info!(
            %app,
            max_message_bytes = changed.max_message_bytes,
            max_connections = changed.max_connections,
            served,
            "app limits changed"
        );
    }

    /// The limits announced for `app`, while it has connections here.
    #[must_use]
    pub fn app_limits(&self, app: &AppId) -> Option<Arc<AppLimits>> {
        lock(&self.apps).get(app).map(|e| e.limits.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_whose_limit_it_is_and_fits_a_close_reason() {
        let hub = Hub::new(herald_bus::Bus::local(&herald_bus::LocalBus::new()));
        let app = AppId::new("a").expect("app");
        // The edge's limit is the smaller: the edge's key is named.
        assert!(hub.admit(&app, 1, Some(5)).is_ok());
        let AdmitError::Limit(reached) = hub.admit(&app, 1, Some(5)).expect_err("over the edge's limit") else {
            panic!("not a limit")
        };
        assert_eq!(reached, ConnectionLimitReached { limit: 1, by_edge: true });
        assert!(reached.message().contains("max_connections_per_app"), "{}", reached.message());
        // The app's limit is the smaller: the app's keys are named.
        let AdmitError::Limit(reached) = hub.admit(&app, 0, Some(1)).expect_err("over the app's limit") else {
            panic!("not a limit")
        };
        assert_eq!(reached, ConnectionLimitReached { limit: 1, by_edge: false });
        assert!(reached.message().contains("limits.max_connections"), "{}", reached.message());
        hub.apply_quota(bus::QuotaState {
            app_id: "b".into(),
            connections_over: true,
            reason: "connection quota of 1 reached".into(),
            ttl_ms: 60_000,
            ..Default::default()
        });
        let b = AppId::new("b").expect("app");
        let refused = hub.admit(&b, 0, None).expect_err("over quota");
        assert_eq!(refused.code(), CloseCode::QuotaExceeded);
        assert_eq!(refused.message(), "connection quota of 1 reached");
        for by_edge in [true, false] {
            let longest = ConnectionLimitReached { limit: u32::MAX, by_edge }.message();
            assert!(longest.len() <= 123, "{} bytes: {longest}", longest.len());
        }
    }

    #[test]
    fn the_smaller_limit_wins_and_an_app_limit_is_at_least_one() {
        assert_eq!(connection_limit(0, None), 0);
        assert_eq!(connection_limit(0, Some(0)), 1);
        assert_eq!(connection_limit(0, Some(7)), 7);
        assert_eq!(connection_limit(5, None), 5);
        assert_eq!(connection_limit(5, Some(7)), 5);
        assert_eq!(connection_limit(5, Some(2)), 2);
        assert_eq!(message_limit(1000, None), 1000);
        assert_eq!(message_limit(1000, Some(10)), 10);
        assert_eq!(message_limit(1000, Some(u32::MAX)), 1000);
    }

    #[test]
    fn an_announcement_keeps_what_it_does_not_give() {
        let limits = AppLimits::default();
        assert_eq!((limits.max_message_bytes(), limits.max_connections()), (None, None));
        limits.update(&bus::AppLimitsChanged { app_id: "a".into(), max_message_bytes: 10, max_connections: 0 });
        assert_eq!((limits.max_message_bytes(), limits.max_connections()), (Some(10), None));
        limits.update(&bus::AppLimitsChanged { app_id: "a".into(), max_message_bytes: 0, max_connections: 3 });
        assert_eq!((limits.max_message_bytes(), limits.max_connections()), (Some(10), Some(3)));
    }
}
