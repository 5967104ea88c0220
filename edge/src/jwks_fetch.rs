//! Fetching the control plane's JWKS over `http://` or `https://`: one GET
//! on a new connection (the JWKS is read every few minutes), TLS checked
//! against the bundled web PKI roots and the CA certificates of
//! `jwks_ca_file`, one deadline for connecting, TLS and the answer, a
//! bounded body, and the answer's `Cache-Control: max-age` for when to read
//! it again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What a fetch got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body.
    pub body: Bytes,
    /// The answer's `Cache-Control: max-age`, when it gave one (and no
    /// `no-store`/`no-cache`).
    pub max_age: Option<Duration>,
}

/// The JWKS client.
#[derive(Clone)]
pub struct JwksFetcher {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    max_bytes: usize,
}

impl JwksFetcher {
    /// A client trusting the web PKI roots and, when given, the CA
    /// certificates of the PEM file `ca_file`; each fetch must finish within
    /// `timeout` and its body stay within `max_bytes`.
    ///
    /// # Errors
    ///
    /// A description when `ca_file` cannot be read or holds no certificate.
    pub fn new(ca_file: Option<&Path>, timeout: Duration, max_bytes: usize) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("jwks_ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("jwks_ca_file {}: no certificate found", path.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("jwks_ca_file {}: {e}", path.display()))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { tls: tokio_rustls::TlsConnector::from(Arc::new(config)), timeout, max_bytes })
    }

    /// GETs `url` (`http://` or `https://`).
    ///
    /// # Errors
    ///
    /// A description naming what failed: the URL, connecting, TLS (e.g. an
    /// untrusted certificate), the status, the size, or the deadline.
    pub async fn get(&self, url: &str) -> Result<Fetched, String> {
        match tokio::time::timeout(self.timeout, self.fetch(url)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Fetched, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad url: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the JWKS URL must start with http:// or https://".into()),
        };
        let host = uri.host().ok_or("the JWKS URL has no host")?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((bare, port)).await.map_err(|e| format!("connect {bare}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let authority = uri.authority().map_or_else(|| host.to_owned(), |a| a.as_str().to_owned());
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        if https {
            let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|e| format!("invalid TLS server name {bare:?}: {e}"))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS with {bare}: {e}"))?;
            self.exchange(TokioIo::new(tls), request).await
        } else {
            self.exchange(TokioIo::new(tcp), request).await
        }
    }

    async fn exchange<IO>(&self, io: IO, request: http::Request<Empty<Bytes>>) -> Result<Fetched, String>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP: {e}"))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let result = async {
            let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            let max_age =
                response.headers().get(http::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(max_age);
            let body = Limited::new(response.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Fetched { body, max_age })
        }
        .await;
        conn.abort();
        result
    }
}

/// The `max-age` of a `Cache-Control` value; `None` when absent, or when
/// `no-store` or `no-cache` says not to keep it.
#[must_use]
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return None;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age("public, max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("Max-Age=\"5\""), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-store, max-age=60"), None);
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[tokio::test]
    async fn bad_urls_and_files_say_what_is_wrong() {
        let f = JwksFetcher::new(None, Duration::from_secs(1), 1024).expect("fetcher");
        assert!(f.get("ftp://x/jwks").await.expect_err("scheme").contains("http:// or https://"));
        assert!(f.get("http://127.0.0.1:1/jwks").await.expect_err("refused").contains("connect"));
        let missing = JwksFetcher::new(Some(Path::new("/nonexistent/ca.pem")), Duration::from_secs(1), 1024);
        assert!(missing.err().is_some_and(|e| e.contains("jwks_ca_file")));
    }
}
