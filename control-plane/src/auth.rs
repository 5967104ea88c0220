//! Who is calling: the admin token, or an API key of an app — and the
//! per-replica caches that keep a database round trip off every request
//! (keys, apps, which app has which Pusher app id, and each app's keys with
//! a Pusher secret, which the Pusher HTTP API checks request signatures
//! against).
//!
//! [`Auth::authenticate`] turns an `Authorization: Bearer …` value into a
//! [`Principal`]. API keys and apps are cached for `cache_ttl`, found or
//! not (so random keys cannot hammer the database). Invalidation:
//!
//! - on this replica, revoking a key or deleting an app evicts the entry
//!   before the call returns: the key stops working here at once;
//! - other replicas evict on the `KeyRevoked` / `AppDeleted` /
//!   `AppLimitsChanged` / `NamespacesChanged` control events the bus
//!   delivers (milliseconds) — evicting an app also forgets which Pusher
//!   app id was found to name no app, as the app may have just taken it —
//!   and
//!   in any case trust an entry no longer than the TTL (the bound when the
//!   bus is down).
//!
//! Every cache is bounded (`cache_max_entries`); a full cache is emptied
//! and refilled, which costs some database reads, never memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use herald_proto::{AppId, KeyId};

use crate::config::Secret;
use crate::error::ApiError;
use crate::keys;
use crate::pusher_app_id::PusherAppId;
use crate::store::{ApiKey, App, Store};

/// The caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An operator with the admin token.
    Admin,
    /// An app's API key (active, secret checked).
    Key(Arc<ApiKey>),
}

/// A bounded map whose entries expire.
pub(crate) struct TtlCache<K, V> {
    map: RwLock<HashMap<K, (Instant, Option<V>)>>,
    ttl: Duration,
    max_entries: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { map: RwLock::new(HashMap::new()), ttl, max_entries: max_entries.max(1) }
    }

    /// `Some(entry)` when cached and fresh; the entry is `None` for a cached
    /// miss.
    pub(crate) fn get(&self, k: &K) -> Option<Option<V>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(k) {
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            _ => None,
        }
    }

    /// The entry, fresh or not (`None` when not cached).
    pub(crate) fn get_stale(&self, k: &K) -> Option<Option<V>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(k).map(|(_, v)| v.clone())
    }

    pub(crate) fn insert(&self, k: K, v: Option<V>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max_entries && !map.contains_key(&k) {
            map.clear();
        }
        map.insert(k, (Instant::now(), v));
    }

    pub(crate) fn remove(&self, k: &K) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).remove(k);
    }

    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &Option<V>) -> bool) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).retain(|k, (_, v)| keep(k, v));
    }
}

/// Authentication and the app/key caches of one replica.
pub struct Auth {
    store: Store,
    /// SHA-256 of the admin token: compared in constant time, whatever the
    /// length of what the caller sent.
    admin_hash: Option<Vec<u8>>,
    keys: TtlCache<KeyId, Arc<ApiKey>>,
    apps: TtlCache<AppId, Arc<App>>,
    pusher_ids: TtlCache<PusherAppId, AppId>,
    pusher_keys: TtlCache<AppId, PusherKeys>,
    /// Keys used since the last flush, and when (at most `max_entries`:
    /// past it, uses of other keys wait for the next flush's next use).
    usage: std::sync::Mutex<HashMap<KeyId, i64>>,
    max_usage: usize,
}

/// The active keys of an app that have a Pusher secret.
pub type PusherKeys = Arc<[Arc<ApiKey>]>;

impl Auth {
    pub(crate) fn new(store: Store, admin_token: Option<Secret>, ttl: Duration, max_entries: usize) -> Self {
        Self {
            store,
            admin_hash: admin_token.map(|t| keys::hash_secret(t.expose())),
            keys: TtlCache::new(ttl, max_entries),
            apps: TtlCache::new(ttl, max_entries),
            pusher_ids: TtlCache::new(ttl, max_entries),
            pusher_keys: TtlCache::new(ttl, max_entries),
            usage: std::sync::Mutex::new(HashMap::new()),
            max_usage: max_entries,
        }
    }

    /// Notes that `key` authenticated a request now.
    fn used(&self, key: &KeyId) {
        let mut usage = self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if usage.len() < self.max_usage || usage.contains_key(key) {
            usage.insert(key.clone(), herald_bus::now_ms());
        }
    }

    /// Writes the key uses noted since the last flush (they are kept for
    /// the next one when the database fails).
    pub(crate) async fn flush_usage(&self) {
        let taken: Vec<(KeyId, i64)> =
            std::mem::take(&mut *self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
                .into_iter()
                .collect();
        if taken.is_empty() {
            return;
        }
        let rows: Vec<(String, i64)> = taken.iter().map(|(k, at)| (k.to_string(), *at)).collect();
        if let Err(e) = self.store.record_key_usage(&rows).await {
            tracing::warn!(error = %e, "key last-used times not written; retrying");
            let mut usage = self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (k, at) in taken {
                if usage.len() < self.max_usage {
                    usage.entry(k).or_insert(at);
                }
            }
        }
    }

    /// Authenticates an `Authorization` header value.
    ///
    /// # Errors
    ///
    /// `unauthorized` for a missing, malformed, unknown, wrong or revoked
    /// credential; `app_disabled` for a key of a disabled app;
    /// `unavailable` when the key must be read and the database is down.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let Some(value) = authorization else {
            return Err(ApiError::unauthorized("missing credentials: send `Authorization: Bearer <API key>`"));
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("malformed Authorization header: expected `Bearer <API key>`"))?;
        if let Some(admin) = &self.admin_hash
            && keys::verify_secret(token, admin)
        {
            return Ok(Principal::Admin);
        }
        let Some((key_id, secret)) = keys::parse_key(token) else {
            return Err(ApiError::unauthorized("invalid API key"));
        };
        let key = self.key(&key_id).await?;
        let Some(key) = key else {
            return Err(ApiError::unauthorized("invalid API key"));
        };
        if !keys::verify_secret(secret, &key.secret_hash) {
            return Err(ApiError::unauthorized("invalid API key"));
        }
        if key.revoked_at_ms.is_some() {
            return Err(ApiError::unauthorized("this API key was revoked"));
        }
        if let Some(disabled) = &self.app(&key.app_id).await?.disabled {
            return Err(ApiError::app_disabled(disabled));
        }
        self.used(&key.id);
        Ok(Principal::Key(key))
    }

    /// Authenticates the raw bytes of an `Authorization` header (REST) or
    /// `authorization` metadata entry (gRPC).
    ///
    /// # Errors
    ///
    /// As [`Self::authenticate`]; `unauthorized` for a value that is not
    /// text.
    pub async fn authenticate_raw(&self, authorization: Option<&[u8]>) -> Result<Principal, ApiError> {
        let value = match authorization {
            Some(v) => {
                Some(std::str::from_utf8(v).map_err(|_| ApiError::unauthorized("malformed Authorization header"))?)
            }
            None => None,
        };
        self.authenticate(value).await
    }

    async fn key(&self, id: &KeyId) -> Result<Option<Arc<ApiKey>>, ApiError> {
        if let Some(hit) = self.keys.get(id) {
            return Ok(hit);
        }
        // Boxed: the database read is rare (a cache miss), and its future
        // would otherwise weigh on every request's.
        let key = Box::pin(self.store.get_key(id)).await?.map(Arc::new);
        self.keys.insert(id.clone(), key.clone());
        Ok(key)
    }

    /// The app, from the cache or the store.
    ///
    /// # Errors
    ///
    /// `not_found` when no such app exists; `unavailable` when the database
    /// is down.
    pub async fn app(&self, id: &AppId) -> Result<Arc<App>, ApiError> {
        let app = match self.apps.get(id) {
            Some(hit) => hit,
            None => {
                let app = Box::pin(self.store.get_app(id)).await?.map(Arc::new);
                self.apps.insert(id.clone(), app.clone());
                app
            }
        };
        app.ok_or_else(|| ApiError::not_found(format!("no app {id:?}")))
    }

    /// The app whose Pusher app id is `id`, from the caches or the store.
    ///
    /// # Errors
    ///
    /// `not_found` when no app has it; `unavailable` when the database is
    /// down.
    pub async fn app_by_pusher_id(&self, id: PusherAppId) -> Result<Arc<App>, ApiError> {
        let not_found = || ApiError::not_found(format!("no app has the Pusher app_id {:?}", id.to_string()));
        match self.pusher_ids.get(&id) {
            Some(None) => return Err(not_found()),
            Some(Some(app)) => match self.app(&app).await {
                // The id may have moved to another app since: check.
                Ok(found) if found.pusher.app_id == Some(id) => return Ok(found),
                Ok(_) => self.pusher_ids.remove(&id),
                Err(e) if e.code == herald_proto::ErrorCode::NotFound => self.pusher_ids.remove(&id),
                Err(e) => return Err(e),
            },
            None => {}
        }
        let app = self.store.get_app_by_pusher_id(id).await?.map(Arc::new);
        self.pusher_ids.insert(id, app.as_ref().map(|a| a.id.clone()));
        let app = app.ok_or_else(not_found)?;
        self.apps.insert(app.id.clone(), Some(app.clone()));
        Ok(app)
    }

    /// The app's active keys with a Pusher secret, from the cache or the
    /// store.
    ///
    /// # Errors
    ///
    /// `unavailable` when the database is down.
    pub async fn pusher_keys(&self, app: &AppId) -> Result<PusherKeys, ApiError> {
        if let Some(Some(hit)) = self.pusher_keys.get(app) {
            return Ok(hit);
        }
        let keys: PusherKeys = self.store.list_pusher_keys(app).await?.into_iter().map(Arc::new).collect();
        self.pusher_keys.insert(app.clone(), Some(keys.clone()));
        Ok(keys)
    }

    /// What is cached of the app's Pusher keys, however old (for answers
    /// while the database is down).
    pub(crate) fn cached_pusher_keys(&self, app: &AppId) -> Option<PusherKeys> {
        self.pusher_keys.get_stale(app).flatten()
    }

    /// What is cached of the app, however old.
    pub(crate) fn cached_app(&self, app: &AppId) -> Option<Arc<App>> {
        self.apps.get_stale(app).flatten()
    }

    /// Forgets a key (it was revoked), and the Pusher keys of its app.
    pub fn evict_key(&self, id: &KeyId, app: &AppId) {
        self.keys.remove(id);
        self.pusher_keys.remove(app);
    }

    /// Forgets the app's Pusher keys (one was created).
    pub fn evict_pusher_keys(&self, app: &AppId) {
        self.pusher_keys.remove(app);
    }

    /// Forgets an app, its keys and its Pusher app id (it was deleted or
    /// changed), and every Pusher app id found to name no app (the app may
    /// have taken one).
    pub fn evict_app(&self, id: &AppId) {
        self.apps.remove(id);
        self.pusher_ids.retain(|_, app| app.as_ref().is_some_and(|a| a != id));
        self.pusher_keys.remove(id);
        self.keys.retain(|_, key| key.as_ref().is_none_or(|k| &k.app_id != id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_cache_expires_and_is_bounded() {
        let c: TtlCache<u32, u32> = TtlCache::new(Duration::from_millis(30), 2);
        c.insert(1, Some(10));
        c.insert(2, None);
        assert_eq!(c.get(&1), Some(Some(10)));
        assert_eq!(c.get(&2), Some(None));
        c.insert(3, Some(30));
        assert!(c.get(&1).is_none(), "a full cache is emptied");
        assert_eq!(c.get(&3), Some(Some(30)));
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get(&3).is_none(), "expired");
    }
}
