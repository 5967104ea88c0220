//! [`NamespaceCache`]: every app's channel namespaces as this replica last
//! read them, looked up by a channel's prefix without allocating. Evicted
//! on changes here and on `NamespacesChanged` events from other replicas;
//! an entry is trusted at most `cache_ttl` anyway.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_bus::namespaces::{default_options, keeps_history};
use herald_proto::{AppId, ChannelName, bus};

use crate::auth::TtlCache;
use crate::store::Namespace;

/// An app's namespaces, as cached: looked up by a channel's prefix without
/// allocating, with a flag for the common case of no history at all.
pub(crate) struct AppNamespacesInner {
    by_name: HashMap<Box<str>, bus::NamespaceOptions>,
    pub(crate) any_history: bool,
}

pub(crate) type AppNamespaces = Arc<AppNamespacesInner>;

impl AppNamespacesInner {
    pub(crate) fn new(stored: &[Namespace]) -> AppNamespaces {
        let by_name: HashMap<Box<str>, bus::NamespaceOptions> =
            stored.iter().map(|ns| (Box::from(ns.name.as_str()), ns.options)).collect();
        let any_history = by_name.values().any(keeps_history);
        Arc::new(Self { by_name, any_history })
    }

    /// The options in force for `channel`.
    pub(crate) fn options(&self, channel: &ChannelName) -> bus::NamespaceOptions {
        // A prefix that is not a valid name never matches a stored one.
        channel.namespace().and_then(|ns| self.by_name.get(ns)).copied().unwrap_or_else(|| default_options(channel))
    }

    /// The namespaces in their wire form for edges.
    pub(crate) fn to_bus(&self) -> Vec<bus::Namespace> {
        self.by_name.iter().map(|(name, o)| bus::Namespace { name: name.to_string(), options: Some(*o) }).collect()
    }
}

/// Per-replica cache of every app's namespaces.
pub(crate) struct NamespaceCache {
    apps: TtlCache<AppId, AppNamespaces>,
    /// Bumped on every eviction: a database read that started before one
    /// does not fill the cache with what it read (it may be stale).
    generation: AtomicU64,
}

impl NamespaceCache {
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { apps: TtlCache::new(ttl, max_entries), generation: AtomicU64::new(0) }
    }

    pub(crate) fn evict(&self, app: &AppId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.apps.remove(app);
    }

    /// The app's cached namespaces, when cached and fresh.
    pub(crate) fn get(&self, app: &AppId) -> Option<AppNamespaces> {
        self.apps.get(app).flatten()
    }

    /// Read before a database read, passed to [`Self::fill`] after it.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches what a read that started at `generation` found, unless an
    /// eviction happened meanwhile.
    pub(crate) fn fill(&self, app: &AppId, generation: u64, namespaces: AppNamespaces) {
        if self.generation() == generation {
            self.apps.insert(app.clone(), Some(namespaces));
        }
    }
}
