//! The HTTP client webhooks are sent with: one POST over HTTP/1.1 (TLS for
//! `https`, checked against the bundled web PKI roots), within one deadline
//! for everything (resolving, connecting, TLS, sending, the answer).
//! Connections are kept alive for the next request to the same host (a
//! bounded pool: `MAX_IDLE_PER_HOST` idle per host for `IDLE_TIMEOUT`), so
//! a busy endpoint does not pay a TCP and TLS handshake per event.
//!
//! Unless private addresses are allowed, the host is resolved here and only
//! a public address is connected to — the check is made on the address
//! actually used, so a name that resolves to an internal address at
//! delivery time (DNS rebinding) is refused like one given at creation.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::address::is_public_ip;

/// Most bytes of a response body kept for the delivery log.
const MAX_ERROR_BODY: usize = 256;

/// What an endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The start of the body (for the log), when not 2xx.
    pub body: String,
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The URL cannot be sent to (scheme, host, refused address).
    #[error("{0}")]
    Refused(String),
    /// Resolving, connecting, TLS or HTTP failed.
    #[error("{0}")]
    Failed(String),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Sends webhooks.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    allow_private: bool,
    timeout: Duration,
    user_agent: String,
    pool: Arc<Pool>,
}

impl Client {
    /// A client that waits `timeout` for each request and, unless
    /// `allow_private`, refuses non-public addresses.
    #[must_use]
    pub fn new(timeout: Duration, allow_private: bool) -> Self {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let config = match config {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhook TLS setup failed; https endpoints will fail");
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            allow_private,
            timeout,
            user_agent: format!("Herald-Webhooks/{}", env!("CARGO_PKG_VERSION")),
            pool: Arc::new(Pool::default()),
        }
    }

    /// POSTs `body` (JSON) with `headers` to `url`; returns the answer and
    /// how long it took.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> (Result<Answer, SendError>, Duration) {
        let start = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.send(url, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout(self.timeout)),
        };
        (result, start.elapsed())
    }

    async fn send(&self, url: &str, headers: &[(&'static str, String)], body: Bytes) -> Result<Answer, SendError> {
        let uri: Uri = url.parse().map_err(|e| SendError::Refused(format!("invalid URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(SendError::Refused("only http and https URLs are sent to".into())),
        };
        let host = uri.host().ok_or_else(|| SendError::Refused("URL without a host".into()))?;
        let authority = uri.authority().map_or_else(|| host.to_owned(), |a| a.as_str().to_owned());
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = http::Request::post(path)
            .header(http::header::HOST, &authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, &self.user_agent);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| SendError::Refused(format!("request: {e}")))?;
        let key = format!("{}://{authority}", if https { "https" } else { "http" });
        // A kept connection first; one the endpoint closed meanwhile fails
        // before anything is sent, and a new connection takes over.
        if let Some(mut sender) = self.pool.take(&key) {
            match sender.try_send_request(request).await {
                Ok(response) => return self.answer(&key, sender, response).await,
                Err(mut e) => match e.take_message() {
                    Some(unsent) => return self.send_new(&uri, https, &key, unsent).await,
                    None => return Err(SendError::Failed(format!("HTTP: {}", e.into_error()))),
                },
            }
        }
        self.send_new(&uri, https, &key, request).await
    }

    /// Sends `request` on a new connection to `uri`'s host.
    async fn send_new(
        &self,
        uri: &Uri,
        https: bool,
        key: &str,
        request: http::Request<Full<Bytes>>,
    ) -> Result<Answer, SendError> {
        let host = uri.host().ok_or_else(|| SendError::Refused("URL without a host".into()))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = self.resolve(bare, port).await?;
        let tcp = TcpStream::connect(addr).await.map_err(|e| SendError::Failed(format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let mut sender = if https {
            let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|e| SendError::Refused(format!("invalid TLS server name: {e}")))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| SendError::Failed(format!("TLS: {e}")))?;
            handshake(TokioIo::new(tls)).await?
        } else {
            handshake(TokioIo::new(tcp)).await?
        };
        let response = sender.send_request(request).await.map_err(|e| SendError::Failed(format!("HTTP: {e}")))?;
        self.answer(key, sender, response).await
    }

    /// Reads the answer; keeps the connection for the next request when
    /// the body was read to its end.
    async fn answer(
        &self,
        key: &str,
        sender: Sender,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<Answer, SendError> {
        let status = response.status().as_u16();
        let mut incoming = response.into_body();
        let mut bytes = Vec::new();
        let mut read = 0usize;
        let complete = loop {
            match incoming.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read += data.len();
                        if bytes.len() < MAX_ERROR_BODY {
                            bytes.extend_from_slice(data);
                        }
                    }
                    if read > MAX_DRAINED_BODY {
                        break false;
                    }
                }
                Some(Err(_)) => break false,
                None => break true,
            }
        };
        if complete {
            self.pool.put(key, sender);
        }
        let body = if (200..300).contains(&status) {
            String::new()
        } else {
            // The start of the body helps whoever reads the delivery log.
            bytes.truncate(MAX_ERROR_BODY);
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Ok(Answer { status, body })
    }

    /// The address to connect to: the first public one (any, when private
    /// addresses are allowed).
    async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, SendError> {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| SendError::Failed(format!("resolve {host}: {e}")))?
                .collect(),
        };
        let first = addrs.first().copied().ok_or_else(|| SendError::Failed(format!("{host} has no address")))?;
        if self.allow_private {
            return Ok(first);
        }
        addrs.into_iter().find(|a| is_public_ip(a.ip())).ok_or_else(|| {
            SendError::Refused(format!(
                "{host} resolves to {} (not a public address; webhook_allow_private_urls allows it)",
                first.ip()
            ))
        })
    }
}

/// An HTTP/1.1 connection over `io`; its task ends when the sender is
/// dropped (or the peer closes).
async fn handshake<IO>(io: IO) -> Result<Sender, SendError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| SendError::Failed(format!("HTTP: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Idle connections kept for the next request, per scheme and authority:
/// at most `MAX_IDLE_PER_HOST` each, for at most `IDLE_TIMEOUT`, over at
/// most `MAX_HOSTS` hosts (past it, emptied and refilled).
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<String, Vec<(Instant, Sender)>>>,
}

/// Idle connections kept per host.
const MAX_IDLE_PER_HOST: usize = 8;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Hosts with idle connections kept.
const MAX_HOSTS: usize = 1024;
/// Most bytes of a response body read so that its connection can be kept.
const MAX_DRAINED_BODY: usize = 64 * 1024;

impl Pool {
    /// A kept connection to `key` that is still open, if any.
    fn take(&self, key: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some((since, sender)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT && sender.is_ready() {
                return Some(sender);
            }
        }
        idle.remove(key);
        None
    }

    fn put(&self, key: &str, sender: Sender) {
        if !sender.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_HOSTS && !idle.contains_key(key) {
            idle.clear();
        }
        let list = idle.entry(key.to_owned()).or_default();
        list.retain(|(since, s)| since.elapsed() < IDLE_TIMEOUT && !s.is_closed());
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((Instant::now(), sender));
        }
    }
}
