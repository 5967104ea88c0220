//! Token signing: the Ed25519 signing keys, minting JWTs, the JWKS and
//! rotation.
//!
//! Signing keys live in the database (private key as PKCS#8). Exactly one is
//! current and signs new tokens; a rotation retires it and stores when it
//! leaves the JWKS (`now + overlap`), so every replica serves the same JWKS
//! and edges keep verifying older tokens through the overlap — and stop once
//! it has passed. Each replica keeps the keys in memory ([`Signer`]),
//! reloads them every `signing_key_refresh_interval` and at once on a
//! `SigningKeysRotated` event, and filters expired keys out of the JWKS at
//! serve time.
//!
//! Tokens carry exactly [`herald_proto::Claims`], `alg: EdDSA` and the
//! signing key's `kid` in the header.
//!
//! The JWKS also lists, under `herald_revoked`, the API keys revoked and the
//! apps deleted within the longest token lifetime (plus a margin for the
//! edges' leeway): edges refuse the tokens minted from them before then,
//! even an edge that started after the revocation or missed its event.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_proto::claims::{AUDIENCE, AppLimits, MAX_REVOCATIONS, MAX_TOKEN_BYTES, Revocation};
use herald_proto::{AppId, Capabilities, Claims, ClientId, KeyId};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::Serialize;

use crate::config::Config;
use crate::error::ApiError;
use crate::keys::random_alnum;
use crate::store::{SigningKey, Store, StoreError};
use herald_bus::now_ms;

/// Why signing keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be generated or read.
    #[error("signing key: {0}")]
    Key(String),
}

impl From<SigningError> for ApiError {
    fn from(e: SigningError) -> Self {
        match e {
            SigningError::Store(e) => e.into(),
            SigningError::Key(msg) => {
                tracing::error!(error = %msg, "signing key failure");
                ApiError::internal()
            }
        }
    }
}

/// One key of the JWKS, in the JSON shape edges read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// The key id, as in the tokens' header.
    pub kid: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
}

/// The JWKS document: `{"keys": [...], "herald_revoked": [...]}`, current
/// key first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Jwks {
    /// The keys that verify tokens now.
    pub keys: Vec<Jwk>,
    /// Tokens to refuse despite a good signature, newest first
    /// (`{"app", "key"?, "at", "until"}`, Unix seconds; no `key` = the
    /// whole app): see [`Revocation`].
    #[serde(default, rename = "herald_revoked")]
    #[schema(value_type = Vec<Object>)]
    pub revoked: Vec<Revocation>,
}

/// How long past the longest token lifetime a revocation stays listed:
/// room for the edges' `exp` leeway and clock skew.
const REVOCATION_MARGIN: Duration = Duration::from_secs(300);

/// The outcome of a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Rotation {
    /// The new current `kid`.
    pub kid: String,
    /// The `kid` that retired, if any.
    pub previous_kid: Option<String>,
    /// When the retired key leaves the JWKS (Unix seconds).
    pub previous_expires_at: Option<i64>,
}

struct Published {
    jwk: Jwk,
    expires_at_ms: Option<i64>,
}

struct State {
    kid: String,
    encoding: EncodingKey,
    published: Vec<Published>,
    revoked: Vec<Revocation>,
}

/// What a token is minted for.
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// The app.
    pub app: AppId,
    /// The API key that asked (or `admin` for the admin token).
    pub key: KeyId,
    /// The end user.
    pub client_id: ClientId,
    /// The capabilities (already checked against the key's).
    pub capabilities: Capabilities,
    /// Lifetime (already checked against the bounds).
    pub ttl: Duration,
    /// Optional presence info (already checked for size).
    pub info: Option<serde_json::Map<String, serde_json::Value>>,
    /// The app's Origin allowlist, for edges to check offline.
    pub origins: Vec<String>,
    /// The app's limits, for edges to apply.
    pub limits: Option<AppLimits>,
}

/// The signing keys of one replica.
pub struct Signer {
    store: Store,
    issuer: String,
    /// How long a revocation is listed: the longest token lifetime plus
    /// [`REVOCATION_MARGIN`].
    revocation_window: Duration,
    /// How long other replicas may still trust a revoked key or a deleted
    /// app from their caches (and mint with it): tokens issued up to the
    /// revocation plus this are refused.
    stale_for: Duration,
    state: RwLock<Arc<State>>,
    loaded_at: Mutex<Instant>,
    reloading: tokio::sync::Mutex<()>,
}

/// How stale the JWKS may be when served: an edge that meets an unknown
/// `kid` refetches it, so a rotation on another replica must show within
/// this bound even when the rotation event is lost.
const JWKS_MAX_AGE: Duration = Duration::from_secs(1);

fn generate(now_ms: i64) -> Result<SigningKey, SigningError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SigningError::Key("generate ed25519".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| SigningError::Key(e.to_string()))?;
    Ok(SigningKey {
        kid: format!("sk{}", random_alnum(22)),
        private_key: pkcs8.as_ref().to_vec(),
        public_key: pair.public_key().as_ref().to_vec(),
        created_at_ms: now_ms,
        retired_at_ms: None,
        expires_at_ms: None,
    })
}

fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Until when (Unix seconds) a revocation made at `at_ms` is listed.
fn until(at_ms: i64, window: Duration) -> i64 {
    (at_ms + window_ms(window)) / 1000
}

/// Tokens issued up to when (Unix seconds) a revocation made at `at_ms`
/// refuses: up to the moment no replica can still mint with a stale cache,
/// rounded up.
fn issued_up_to(at_ms: i64, stale_for: Duration) -> i64 {
    (at_ms + window_ms(stale_for) + 999) / 1000
}

fn build_state(keys: &[SigningKey], revoked: Vec<Revocation>) -> Result<Option<State>, SigningError> {
    let Some(current) = keys.first().filter(|k| k.retired_at_ms.is_none()) else {
        return Ok(None);
    };
    let published = keys
        .iter()
        .map(|k| Published {
            jwk: Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                alg: "EdDSA".into(),
                use_: "sig".into(),
                kid: k.kid.clone(),
                x: URL_SAFE_NO_PAD.encode(&k.public_key),
            },
            expires_at_ms: k.expires_at_ms,
        })
        .collect();
    Ok(Some(State {
        kid: current.kid.clone(),
        encoding: EncodingKey::from_ed_der(&current.private_key),
        published,
        revoked,
    }))
}

impl Signer {
    /// Loads the signing keys, creating the first one when the database has
    /// none, and the revocations of the last `token_max_ttl` (plus
    /// `cache_ttl`, how long replicas trust their cached keys and apps,
    /// and a margin).
    ///
    /// # Errors
    ///
    /// [`SigningError`] when the store fails or a key cannot be made.
    pub async fn load(store: Store, config: &Config) -> Result<Self, SigningError> {
        let stale_for = config.cache_ttl();
        let revocation_window = config.token_max_ttl.0 + stale_for + REVOCATION_MARGIN;
        let state = Self::load_state(&store, revocation_window, stale_for).await?;
        Ok(Self {
            store,
            issuer: config.issuer.clone(),
            revocation_window,
            stale_for,
            state: RwLock::new(Arc::new(state)),
            loaded_at: Mutex::new(Instant::now()),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    async fn load_state(
        store: &Store,
        revocation_window: Duration,
        stale_for: Duration,
    ) -> Result<State, SigningError> {
        for _ in 0..3 {
            let now = now_ms();
            let keys = store.signing_keys(now).await?;
            let revoked = store
                .revocations(now - window_ms(revocation_window), MAX_REVOCATIONS)
                .await?
                .into_iter()
                .map(|(app, key, at_ms, disabled)| Revocation {
                    app,
                    key,
                    at: issued_up_to(at_ms, stale_for),
                    until: until(at_ms, revocation_window),
                    disabled,
                })
                .collect();
            if let Some(state) = build_state(&keys, revoked)? {
                return Ok(state);
            }
            let first = generate(now_ms())?;
            if store.insert_first_signing_key(&first).await? {
                tracing::info!(kid = %first.kid, "created the first signing key");
            }
        }
        Err(SigningError::Key("no current signing key after creating one".into()))
    }

    /// Reloads the keys from the database.
    ///
    /// # Errors
    ///
    /// [`SigningError`] when the store fails; the keys in memory stay.
    pub async fn refresh(&self) -> Result<(), SigningError> {
        let state = Self::load_state(&self.store, self.revocation_window, self.stale_for).await?;
        let changed = self.current_kid() != state.kid;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        *self.loaded_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if changed {
            tracing::info!(kid = %self.current_kid(), "signing key changed");
        }
        Ok(())
    }

    fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `kid` new tokens are signed with.
    #[must_use]
    pub fn current_kid(&self) -> String {
        self.state().kid.clone()
    }

    /// The JWKS at `now_ms`: the current key and every retired key whose
    /// overlap has not passed, and the revocations still listed.
    #[must_use]
    pub fn jwks(&self, now_ms: i64) -> Jwks {
        let state = self.state();
        Jwks {
            keys: state
                .published
                .iter()
                .filter(|p| p.expires_at_ms.is_none_or(|t| t > now_ms))
                .map(|p| p.jwk.clone())
                .collect(),
            revoked: state.revoked.iter().filter(|r| r.until > now_ms / 1000).cloned().collect(),
        }
    }

    /// The revocation made at `at_ms`, as edges are told of it: `(at,
    /// until)` in Unix seconds.
    #[must_use]
    pub fn revocation_bounds(&self, at_ms: i64) -> (i64, i64) {
        (issued_up_to(at_ms, self.stale_for), until(at_ms, self.revocation_window))
    }

    /// Before when (Unix ms) revocations are no longer listed.
    #[must_use]
    pub fn revocations_since_ms(&self, now_ms: i64) -> i64 {
        now_ms - window_ms(self.revocation_window)
    }

    /// The JWKS, reloaded from the database first when older than a second
    /// (one reload at a time; others get what is loaded). Errors leave the
    /// loaded keys in place.
    pub async fn jwks_fresh(&self, now_ms: i64) -> Jwks {
        let stale = self.loaded_at.lock().unwrap_or_else(|e| e.into_inner()).elapsed() > JWKS_MAX_AGE;
        if stale
            && let Ok(_guard) = self.reloading.try_lock()
            && let Err(e) = self.refresh().await
        {
            tracing::warn!(error = %e, "signing keys not reloaded for the jwks");
        }
        self.jwks(now_ms)
    }

    /// Signs a token; returns it with its expiry (Unix seconds).
    ///
    /// # Errors
    ///
    /// `too_large` when the token would exceed the size edges accept;
    /// `internal` when signing fails.
    pub fn mint(&self, req: MintRequest) -> Result<(String, i64), ApiError> {
        let state = self.state();
        let now = now_ms() / 1000;
        let ttl = i64::try_from(req.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            sub: req.client_id,
            app: req.app,
            key: req.key,
            iat: now,
            nbf: now,
            exp: now + ttl,
            jti: format!("t{}", random_alnum(22)),
            caps: req.capabilities,
            info: req.info,
            origins: req.origins,
            lim: req.limits,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(state.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &state.encoding).map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            ApiError::internal()
        })?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::too_large(format!(
                "the token would be {} bytes; edges accept at most {MAX_TOKEN_BYTES}: use fewer or shorter capability patterns or less info",
                token.len()
            )));
        }
        Ok((token, claims.exp))
    }

    /// Makes a new current key; the current one stays in the JWKS for
    /// `overlap`.
    ///
    /// # Errors
    ///
    /// [`SigningError`] when the store fails (a concurrent rotation on
    /// another replica is retried once).
    pub async fn rotate(&self, overlap: Duration) -> Result<Rotation, SigningError> {
        let mut attempt = 0;
        let (key, previous, expires_at_ms) = loop {
            attempt += 1;
            let now = now_ms();
            let key = generate(now)?;
            let expires_at_ms = now.saturating_add(i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX / 2));
            match self.store.rotate_signing_key(&key, now, expires_at_ms).await {
                Ok(previous) => break (key, previous, expires_at_ms),
                Err(StoreError::Conflict(_)) if attempt < 3 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.refresh().await?;
        tracing::info!(kid = %key.kid, previous = ?previous, "signing keys rotated");
        Ok(Rotation {
            kid: key.kid,
            previous_expires_at: previous.as_ref().map(|_| expires_at_ms / 1000),
            previous_kid: previous,
        })
    }
}
