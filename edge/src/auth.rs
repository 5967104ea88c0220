//! Token verification, offline: the control plane's public keys (JWKS) are
//! fetched once, cached, refreshed periodically and refetched when a token
//! names an unknown `kid` — at most once per `jwks_min_refetch_interval`, so
//! a flood of tokens with made-up key ids cannot turn into a flood of
//! fetches.
//!
//! The algorithm is pinned to EdDSA by the edge: a token whose header says
//! anything else (`none`, `HS256` with the public key as secret, …) is
//! refused before any key is looked at.
//!
//! A good signature is not enough: tokens minted from a revoked API key, or
//! for a deleted app, are refused too ([`Revocations`]). The edge learns of
//! revocations at once from the control plane's events and, for what it
//! missed (started later, cut off from NATS), from the JWKS, which lists
//! them until every token they cover has expired.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use herald_proto::claims::{AUDIENCE, MAX_REVOCATIONS, MAX_TOKEN_BYTES, Revocation};
use herald_proto::{AppId, Claims, KeyId};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::jwks_fetch::JwksFetcher;

/// Largest JWKS document accepted: a few keys and up to
/// [`MAX_REVOCATIONS`] revocations.
pub const MAX_JWKS_BYTES: usize = 2 * 1024 * 1024;

/// Revocations learned from events are kept until their `until`; past this
/// many entries the soonest to expire are dropped first.
const MAX_KEPT_REVOCATIONS: usize = 2 * MAX_REVOCATIONS;

/// How long an event's revocation is kept when the event says no `until`:
/// the control plane's longest token lifetime by default.
const DEFAULT_REVOCATION_SECS: i64 = 86_400;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token expired (past `exp` plus leeway).
    #[error("token expired")]
    Expired,
    /// The token is invalid; the reason is safe to show to the client.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// No signing keys could be loaded.
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// The API key that minted the token was revoked.
    #[error("the api key that minted this token was revoked")]
    KeyRevoked,
    /// The token's app was deleted.
    #[error("the app was deleted")]
    AppDeleted,
    /// An administrator disabled the token's app.
    #[error("the app is disabled")]
    AppDisabled,
}

impl AuthError {
    /// A label for the `herald_auth_failures_total` metric.
    #[must_use]
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Invalid(reason) => reason,
            Self::KeysUnavailable => "keys_unavailable",
            Self::KeyRevoked => "key_revoked",
            Self::AppDeleted => "app_deleted",
            Self::AppDisabled => "app_disabled",
        }
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
    /// [`herald_proto::claims::REVOKED_MEMBER`]; each entry on its own, so
    /// one bad entry cannot cost the keys.
    #[serde(default, rename = "herald_revoked")]
    revoked: Vec<serde_json::Value>,
}

/// What a JWKS document holds for the edge.
struct JwksContent {
    keys: HashMap<String, DecodingKey>,
    revoked: Vec<Revocation>,
}

/// The revoked keys and deleted apps whose tokens must be refused. Shared
/// (cheap to clone) by the verifier, which refuses such tokens, and the hub,
/// which adds what the control plane's events announce.
#[derive(Clone, Default)]
pub struct Revocations {
    inner: Arc<RwLock<HashMap<AppId, Revoked>>>,
}

#[derive(Default)]
struct Revoked {
    /// The whole app.
    app: Option<Window>,
    /// Keys of the app.
    keys: HashMap<KeyId, Window>,
}

/// Tokens issued at or before `at` are refused until `until` (Unix
/// seconds); for a whole app, because it was `disabled` or deleted.
#[derive(Clone, Copy)]
struct Window {
    at: i64,
    until: i64,
    disabled: bool,
}

impl Window {
    fn refuses(&self, iat: i64, now: i64) -> bool {
        iat <= self.at && now < self.until
    }
}

fn unix_now() -> i64 {
    herald_bus::now_ms() / 1000
}

impl Revocations {
    /// Records what the control plane announced in an event: tokens of
    /// `app` (minted from `key`, when given) issued at or before `at` are
    /// refused until `until` (Unix seconds; 0 = now, and the default token
    /// lifetime from now); `disabled` when the app was disabled rather
    /// than deleted.
    pub fn add_announced(&self, app: &str, key: Option<&str>, at: i64, until: i64, disabled: bool) {
        let Ok(app) = AppId::new(app) else { return };
        let key = match key.map(KeyId::new) {
            Some(Ok(key)) => Some(key),
            Some(Err(_)) => return,
            None => None,
        };
        let now = unix_now();
        let at = if at > 0 { at } else { now };
        let until = if until > 0 { until } else { now + DEFAULT_REVOCATION_SECS };
        self.merge(vec![Revocation { app, key, at, until, disabled }]);
    }

    fn insert(map: &mut HashMap<AppId, Revoked>, r: Revocation) {
        let entry = map.entry(r.app).or_default();
        let window = Window { at: r.at, until: r.until, disabled: r.disabled };
        let slot = match r.key {
            Some(key) => entry.keys.entry(key).or_insert(window),
            None => entry.app.get_or_insert(window),
        };
        // An app deleted, created again and deleted again: the later
        // deletion covers more, and says why.
        if r.at >= slot.at {
            slot.disabled = r.disabled;
        }
        slot.at = slot.at.max(r.at);
        slot.until = slot.until.max(r.until);
    }

    /// Adds revocations (a JWKS's list, or an event's one) and forgets what
    /// has expired.
    fn merge(&self, revoked: Vec<Revocation>) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for r in revoked {
            Self::insert(&mut map, r);
        }
        Self::trim(&mut map, unix_now());
    }

    /// Drops expired entries, then the soonest to expire past the bound.
    fn trim(map: &mut HashMap<AppId, Revoked>, now: i64) {
        for r in map.values_mut() {
            r.keys.retain(|_, w| w.until > now);
            r.app = r.app.filter(|w| w.until > now);
        }
        map.retain(|_, r| r.app.is_some() || !r.keys.is_empty());
        let mut untils: Vec<i64> =
            map.values().flat_map(|r| r.keys.values().chain(r.app.as_ref()).map(|w| w.until)).collect();
        if untils.len() > MAX_KEPT_REVOCATIONS {
            let cut = untils.len() - MAX_KEPT_REVOCATIONS;
            let (_, nth, _) = untils.select_nth_unstable(cut - 1);
            let keep_after = *nth;
            tracing::warn!(kept = MAX_KEPT_REVOCATIONS, "too many revocations: the soonest to expire are forgotten");
            Self::trim(map, keep_after);
        }
    }

    /// Why a token with `claims` must be refused, if it must.
    ///
    /// # Errors
    ///
    /// [`AuthError::AppDeleted`], [`AuthError::AppDisabled`] or
    /// [`AuthError::KeyRevoked`].
    pub fn check(&self, claims: &Claims) -> Result<(), AuthError> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(revoked) = map.get(&claims.app) else { return Ok(()) };
        let now = unix_now();
        if let Some(w) = revoked.app.filter(|w| w.refuses(claims.iat, now)) {
            return Err(if w.disabled { AuthError::AppDisabled } else { AuthError::AppDeleted });
        }
        if revoked.keys.get(&claims.key).is_some_and(|w| w.refuses(claims.iat, now)) {
            return Err(AuthError::KeyRevoked);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    kid: String,
    #[serde(default)]
    x: String,
    #[serde(default)]
    alg: Option<String>,
}

/// Verifies tokens against the control plane's published keys.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    jwks_url: String,
    validation: Validation,
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    revocations: Revocations,
    min_refetch: Duration,
    /// Serializes fetches.
    fetching: tokio::sync::Mutex<()>,
    /// When an unknown `kid` last caused a fetch.
    last_unknown_fetch: std::sync::Mutex<Option<Instant>>,
    fetcher: JwksFetcher,
    /// The last answer's `Cache-Control: max-age`.
    max_age: std::sync::Mutex<Option<Duration>>,
    /// Woken after each successful fetch (the periodic refresh counts from
    /// it).
    fetched: tokio::sync::Notify,
}

impl Verifier {
    /// A verifier for tokens of `issuer`, with keys from `jwks_url`. Keys are
    /// fetched on first use or by [`Self::refresh`]; tokens `revocations`
    /// covers are refused (and the JWKS's revocations are added to it).
    #[must_use]
    pub fn new(
        jwks_url: &str,
        issuer: &str,
        leeway: Duration,
        min_refetch: Duration,
        revocations: Revocations,
        fetcher: JwksFetcher,
    ) -> Self {
        crate::eddsa::install();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = leeway.as_secs();
        Self {
            inner: Arc::new(VerifierInner {
                jwks_url: jwks_url.to_owned(),
                validation,
                keys: RwLock::new(Arc::new(HashMap::new())),
                revocations,
                min_refetch,
                fetching: tokio::sync::Mutex::new(()),
                last_unknown_fetch: std::sync::Mutex::new(None),
                fetcher,
                max_age: std::sync::Mutex::new(None),
                fetched: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Whether any key is loaded.
    #[must_use]
    pub fn has_keys(&self) -> bool {
        !self.keys().is_empty()
    }

    fn keys(&self) -> Arc<HashMap<String, DecodingKey>> {
        self.inner.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the JWKS now.
    ///
    /// # Errors
    ///
    /// [`AuthError::KeysUnavailable`] when the fetch fails; the old keys stay.
    pub async fn refresh(&self) -> Result<(), AuthError> {
        let _one_at_a_time = self.inner.fetching.lock().await;
        match self.fetch().await {
            Ok(JwksContent { keys, revoked }) => {
                tracing::info!(keys = keys.len(), revoked = revoked.len(), "signing keys loaded");
                self.inner.revocations.merge(revoked);
                *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                self.inner.fetched.notify_waiters();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(url = %self.inner.jwks_url, error = %e, "fetching signing keys failed");
                metrics::counter!("herald_jwks_fetch_failures_total").increment(1);
                Err(AuthError::KeysUnavailable)
            }
        }
    }

    /// Refetches because a token named an unknown `kid` — at most once per
    /// minimum interval, whatever the number of such tokens.
    async fn refresh_for_unknown_kid(&self) {
        {
            let mut last = self.inner.last_unknown_fetch.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.inner.min_refetch) {
                return;
            }
            *last = Some(Instant::now());
        }
        let _ = self.refresh().await;
    }

    async fn fetch(&self) -> Result<JwksContent, String> {
        let fetched = self.inner.fetcher.get(&self.inner.jwks_url).await?;
        *self.inner.max_age.lock().unwrap_or_else(|e| e.into_inner()) = fetched.max_age;
        parse_jwks(&fetched.body)
    }

    /// Verifies `token`: size, header algorithm, key, signature, `exp`,
    /// `nbf`, audience and issuer, then that neither its key nor its app was
    /// revoked. Refetches the keys once (rate-limited) when the `kid` is
    /// unknown.
    ///
    /// # Errors
    ///
    /// [`AuthError`] saying why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Invalid("empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("too_long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid("algorithm_not_allowed"));
        }
        let kid = header.kid.ok_or(AuthError::Invalid("missing_kid"))?;
        let mut key = self.keys().get(&kid).cloned();
        if key.is_none() {
            // A failed or rate-limited refetch leaves the key unknown.
            self.refresh_for_unknown_kid().await;
            key = self.keys().get(&kid).cloned();
        }
        let key = match key {
            Some(key) => key,
            None if !self.has_keys() => return Err(AuthError::KeysUnavailable),
            None => return Err(AuthError::Invalid("unknown_kid")),
        };
        let claims = self.verify_with(token, &key)?;
        self.inner.revocations.check(&claims)?;
        Ok(claims)
    }

    fn verify_with(&self, token: &str, key: &DecodingKey) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        match jsonwebtoken::decode::<Claims>(token, key, &self.inner.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::Invalid("not_yet_valid"),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong_audience"),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong_issuer"),
                ErrorKind::InvalidSignature => AuthError::Invalid("bad_signature"),
                ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("missing_claim"),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm_not_allowed"),
                _ => AuthError::Invalid("malformed"),
            }),
        }
    }

    /// Spawns the periodic refresh; ends when the verifier is dropped. It
    /// reads the JWKS again when the last answer's `Cache-Control:
    /// max-age` runs out, but not more often than the minimum refetch
    /// interval, and at least `every`.
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let refetch = {
                    let Some(inner) = weak.upgrade() else { return };
                    let max_age = *inner.max_age.lock().unwrap_or_else(|e| e.into_inner());
                    let wait = refresh_after(max_age, inner.min_refetch, every);
                    // Any fetch (a first one, one for an unknown key)
                    // starts the wait again, with its own max-age.
                    let fetched = inner.fetched.notified();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => true,
                        () = fetched => false,
                    }
                };
                if refetch {
                    let Some(inner) = weak.upgrade() else { return };
                    let _ = Verifier { inner }.refresh().await;
                }
            }
        })
    }
}

/// When to read the JWKS again: its `max_age`, within `[min, every]`.
fn refresh_after(max_age: Option<Duration>, min: Duration, every: Duration) -> Duration {
    max_age.map_or(every, |age| age.clamp(min.min(every), every))
}

/// Parses a JWKS document, keeping the Ed25519 keys and the first
/// [`MAX_REVOCATIONS`] well-formed revocations.
fn parse_jwks(body: &[u8]) -> Result<JwksContent, String> {
    let jwks: Jwks = serde_json::from_slice(body).map_err(|e| format!("bad jwks: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in jwks.keys {
        let usable = jwk.kty == "OKP"
            && jwk.crv == "Ed25519"
            && !jwk.kid.is_empty()
            && jwk.alg.as_deref().is_none_or(|a| a == "EdDSA");
        if !usable {
            continue;
        }
        match DecodingKey::from_ed_components(&jwk.x) {
            Ok(key) => {
                keys.insert(jwk.kid, key);
            }
            Err(e) => tracing::warn!(kid = %jwk.kid, error = %e, "unusable key in jwks skipped"),
        }
    }
    if keys.is_empty() {
        return Err("jwks holds no Ed25519 key".into());
    }
    if jwks.revoked.len() > MAX_REVOCATIONS {
        tracing::warn!(listed = jwks.revoked.len(), read = MAX_REVOCATIONS, "the jwks lists too many revocations");
    }
    let revoked = jwks
        .revoked
        .into_iter()
        .take(MAX_REVOCATIONS)
        .filter_map(|v| match serde_json::from_value::<Revocation>(v) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "unusable revocation in jwks skipped");
                None
            }
        })
        .collect();
    Ok(JwksContent { keys, revoked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_follows_max_age_within_bounds() {
        let (min, every) = (Duration::from_secs(5), Duration::from_secs(300));
        assert_eq!(refresh_after(None, min, every), every);
        assert_eq!(refresh_after(Some(Duration::from_secs(60)), min, every), Duration::from_secs(60));
        assert_eq!(refresh_after(Some(Duration::ZERO), min, every), min);
        assert_eq!(refresh_after(Some(Duration::from_secs(86_400)), min, every), every);
    }

    #[test]
    fn jwks_parsing_keeps_only_ed25519() {
        let doc = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA"},
            {"kty":"RSA","kid":"r","n":"x","e":"AQAB"},
            {"kty":"OKP","crv":"Ed25519","kid":"","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"h","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"HS256"}
        ]}"#;
        let keys = parse_jwks(doc).expect("jwks").keys;
        assert_eq!(keys.len(), 1);
        assert!(keys.contains_key("a"));
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    fn claims_at(app: &str, key: &str, iat: i64) -> Claims {
        serde_json::from_value(serde_json::json!({"iss": "herald", "aud": "herald", "sub": "u", "app": app,
            "key": key, "iat": iat, "nbf": iat, "exp": iat + 60, "jti": "t", "caps": {}}))
        .expect("claims")
    }

    fn claims(app: &str, key: &str) -> Claims {
        claims_at(app, key, 1)
    }

    #[test]
    fn jwks_revocations_are_read_each_on_its_own() {
        let doc = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}],
            "herald_revoked":[{"app":"app1","key":"k1","at":100,"until":4000000000},
            {"app":"app2","at":100,"until":4000000000},
            {"app":"bad app","key":"k1","at":100,"until":4000000000},{"app":"app3","at":100},17]}"#;
        let content = parse_jwks(doc).expect("jwks");
        assert_eq!(content.keys.len(), 1);
        assert_eq!(content.revoked.len(), 2, "the three bad entries are skipped, the keys kept");
        let revocations = Revocations::default();
        revocations.merge(content.revoked);
        assert_eq!(revocations.check(&claims("app1", "k1")), Err(AuthError::KeyRevoked));
        assert_eq!(revocations.check(&claims("app1", "k2")), Ok(()));
        assert_eq!(revocations.check(&claims("app2", "k9")), Err(AuthError::AppDeleted));
        assert_eq!(revocations.check(&claims("app3", "k1")), Ok(()));
        assert_eq!(revocations.check(&claims_at("app2", "k9", 101)), Ok(()), "minted after: the app was created again");
    }

    #[test]
    fn a_disabled_app_is_refused_as_disabled_until_deleted() {
        let doc = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}],
            "herald_revoked":[{"app":"app4","at":100,"until":4000000000,"disabled":true}]}"#;
        let revocations = Revocations::default();
        revocations.merge(parse_jwks(doc).expect("jwks").revoked);
        assert_eq!(revocations.check(&claims("app4", "k1")), Err(AuthError::AppDisabled));
        assert_eq!(revocations.check(&claims_at("app4", "k1", 101)), Ok(()), "minted after it was enabled again");
        revocations.add_announced("app4", None, 200, 4_000_000_000, false);
        assert_eq!(revocations.check(&claims("app4", "k1")), Err(AuthError::AppDeleted), "the later deletion says why");
    }

    #[test]
    fn revocations_expire_and_stay_bounded() {
        let revocations = Revocations::default();
        revocations.add_announced("app1", Some("old"), 0, unix_now() - 1, false);
        revocations.add_announced("app1", Some("new"), 0, 0, false);
        assert_eq!(revocations.check(&claims("app1", "old")), Ok(()), "past its until");
        assert_eq!(revocations.check(&claims("app1", "new")), Err(AuthError::KeyRevoked));
        revocations.add_announced("bad app", None, 0, 0, false);
        let far = unix_now() + 10_000;
        for i in 0..MAX_KEPT_REVOCATIONS + 10 {
            revocations.add_announced("app9", Some(&format!("k{i}")), 0, far + i as i64, false);
        }
        let kept = revocations.inner.read().expect("map").values().map(|r| r.keys.len()).sum::<usize>();
        assert!(kept <= MAX_KEPT_REVOCATIONS, "{kept} kept");
        let newest = format!("k{}", MAX_KEPT_REVOCATIONS + 9);
        assert_eq!(revocations.check(&claims("app9", &newest)), Err(AuthError::KeyRevoked), "the latest stay");
        assert_eq!(revocations.check(&claims("app9", "k0")), Ok(()), "the soonest to expire go first");
    }
}
