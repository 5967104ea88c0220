//! Token verification, offline: the control plane's public keys (JWKS) are
//! fetched once, cached, refreshed periodically and refetched when a token
//! names an unknown `kid` — at most once per `jwks_min_refetch_interval`, so
//! a flood of tokens with made-up key ids cannot turn into a flood of
//! fetches.
//!
//! The algorithm is pinned to EdDSA by the edge: a token whose header says
//! anything else (`none`, `HS256` with the public key as secret, …) is
//! refused before any key is looked at.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::Claims;
use herald_proto::claims::{AUDIENCE, MAX_TOKEN_BYTES};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

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
}

impl AuthError {
    /// A label for the `herald_auth_failures_total` metric.
    #[must_use]
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Invalid(reason) => reason,
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
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
    min_refetch: Duration,
    /// Serializes fetches.
    fetching: tokio::sync::Mutex<()>,
    /// When an unknown `kid` last caused a fetch.
    last_unknown_fetch: std::sync::Mutex<Option<Instant>>,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

impl Verifier {
    /// A verifier for tokens of `issuer`, with keys from `jwks_url`. Keys are
    /// fetched on first use or by [`Self::refresh`].
    #[must_use]
    pub fn new(jwks_url: &str, issuer: &str, leeway: Duration, min_refetch: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = leeway.as_secs();
        let http = Client::builder(TokioExecutor::new()).build_http();
        Self {
            inner: Arc::new(VerifierInner {
                jwks_url: jwks_url.to_owned(),
                validation,
                keys: RwLock::new(Arc::new(HashMap::new())),
                min_refetch,
                fetching: tokio::sync::Mutex::new(()),
                last_unknown_fetch: std::sync::Mutex::new(None),
                http,
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
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "signing keys loaded");
                *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
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

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let uri: http::Uri = self.inner.jwks_url.parse().map_err(|e| format!("bad url: {e}"))?;
        let request = http::Request::get(uri).body(Empty::new()).map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(5), self.inner.http.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body =
            tokio::time::timeout(Duration::from_secs(5), Limited::new(response.into_body(), MAX_JWKS_BYTES).collect())
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?
                .to_bytes();
        parse_jwks(&body)
    }

    /// Verifies `token`: size, header algorithm, key, signature, `exp`,
    /// `nbf`, audience and issuer. Refetches the keys once (rate-limited) when
    /// the `kid` is unknown.
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
        self.verify_with(token, &key)
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

    /// Spawns the periodic refresh; ends when the verifier is dropped.
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let _ = Verifier { inner }.refresh().await;
            }
        })
    }
}

/// Parses a JWKS document, keeping the Ed25519 keys.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, DecodingKey>, String> {
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
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_parsing_keeps_only_ed25519() {
        let doc = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA"},
            {"kty":"RSA","kid":"r","n":"x","e":"AQAB"},
            {"kty":"OKP","crv":"Ed25519","kid":"","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"h","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"HS256"}
        ]}"#;
        let keys = parse_jwks(doc).expect("jwks");
        assert_eq!(keys.len(), 1);
        assert!(keys.contains_key("a"));
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }
}
