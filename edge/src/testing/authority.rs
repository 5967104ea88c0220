//! A signing authority for tests: signs tokens with Ed25519 keys it
//! generates and serves their public half as a JWKS over HTTP, as the
//! control plane does, with rotation and revocations.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use herald_proto::{AppId, Capabilities, Claims, ClientId, KeyId};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse generated key");
        Self { kid: kid.to_owned(), pkcs8: pkcs8.as_ref().to_vec(), public: pair.public_key().as_ref().to_vec() }
    }
}

/// Signs tokens and serves its public keys as a JWKS over HTTP.
pub struct TestAuthority {
    keys: Arc<Mutex<Vec<SigningKey>>>,
    revoked: Arc<Mutex<Vec<herald_proto::claims::Revocation>>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
    addr: SocketAddr,
    https: bool,
    _server: JoinHandle<()>,
}

impl TestAuthority {
    /// Starts the JWKS server on `127.0.0.1:0` with one key.
    pub async fn start() -> Self {
        Self::serve(None, None).await
    }

    /// Like [`Self::start`], over TLS with `acceptor` (its certificate for
    /// `localhost`), answering with `Cache-Control: max-age` when given.
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor, max_age: Option<u64>) -> Self {
        Self::serve(Some(acceptor), max_age).await
    }

    /// Like [`Self::start`], answering with `Cache-Control: max-age`.
    pub async fn start_with_max_age(max_age: u64) -> Self {
        Self::serve(None, Some(max_age)).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, max_age: Option<u64>) -> Self {
        let keys = Arc::new(Mutex::new(vec![SigningKey::generate("k1")]));
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind jwks server");
        let addr = listener.local_addr().expect("addr");
        let (served, served_revoked, counted) = (keys.clone(), revoked.clone(), fetches.clone());
        let https = tls.is_some();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (served, served_revoked, counted) = (served.clone(), served_revoked.clone(), counted.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = jwks(&served.lock().expect("keys"), &served_revoked.lock().expect("revoked"));
                        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                        if let Some(age) = max_age
                            && let Ok(value) = hyper::header::HeaderValue::from_str(&format!("max-age={age}"))
                        {
                            response.headers_mut().insert(hyper::header::CACHE_CONTROL, value);
                        }
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { keys, revoked, fetches, addr, https, _server: server }
    }

    /// How many times the JWKS was fetched.
    #[must_use]
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lists tokens of `app` minted from `key` (every token of the app when
    /// `None`) as revoked in the JWKS, for an hour.
    pub fn revoke(&self, app: &str, key: Option<&str>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
        self.revoked.lock().expect("revoked").push(herald_proto::claims::Revocation {
            app: AppId::new(app).expect("app id"),
            key: key.map(|k| KeyId::new(k).expect("key id")),
            at: now,
            until: now + 3600,
            disabled: false,
        });
    }

    /// The JWKS URL for [`EdgeConfig::jwks_url`].
    #[must_use]
    pub fn jwks_url(&self) -> String {
        if self.https {
            format!("https://localhost:{}/.well-known/jwks.json", self.addr.port())
        } else {
            format!("http://{}/.well-known/jwks.json", self.addr)
        }
    }

    /// Adds a new current key (`kid`) and keeps the older ones published.
    pub fn rotate(&self, kid: &str) {
        self.keys.lock().expect("keys").push(SigningKey::generate(kid));
    }

    /// Stops publishing every key but the newest.
    pub fn retire_old_keys(&self) {
        let mut keys = self.keys.lock().expect("keys");
        let n = keys.len();
        keys.drain(..n - 1);
    }

    /// Claims for `client` of `app` with `caps` (JSON), valid for `ttl`.
    #[must_use]
    pub fn claims(app: &str, client: &str, caps: &str, ttl: Duration) -> Claims {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
        Claims {
            iss: herald_proto::claims::DEFAULT_ISSUER.to_owned(),
            aud: herald_proto::claims::AUDIENCE.to_owned(),
            sub: ClientId::new(client).expect("client id"),
            app: AppId::new(app).expect("app id"),
            key: KeyId::new("key1").expect("key id"),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            jti: format!("t-{now}"),
            caps: serde_json::from_str::<Capabilities>(caps).expect("caps"),
            info: None,
            origins: Vec::new(),
            lim: None,
        }
    }

    /// Signs `claims` with the current key.
    #[must_use]
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_json(&serde_json::to_value(claims).expect("claims as json"))
    }

    /// Signs arbitrary JSON claims with the current key: for tokens a
    /// correct control plane never mints (a claim missing, an odd type).
    #[must_use]
    pub fn sign_json(&self, claims: &serde_json::Value) -> String {
        let keys = self.keys.lock().expect("keys");
        let key = keys.last().expect("a key");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&key.pkcs8)).expect("sign")
    }

    /// A token for `client` of `app` with `caps`, valid for an hour.
    #[must_use]
    pub fn token(&self, app: &str, client: &str, caps: &str) -> String {
        self.sign(&Self::claims(app, client, caps, Duration::from_secs(3600)))
    }

    /// The current public key, raw (for algorithm-confusion tests).
    #[must_use]
    pub fn public_key(&self) -> Vec<u8> {
        self.keys.lock().expect("keys").last().expect("a key").public.clone()
    }

    /// The current key id.
    #[must_use]
    pub fn kid(&self) -> String {
        self.keys.lock().expect("keys").last().expect("a key").kid.clone()
    }
}

fn jwks(keys: &[SigningKey], revoked: &[herald_proto::claims::Revocation]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid,
                "x": URL_SAFE_NO_PAD.encode(&k.public)})
        })
        .collect();
    serde_json::json!({ "keys": keys, herald_proto::claims::REVOKED_MEMBER: revoked }).to_string()
}
