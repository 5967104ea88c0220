//! The socket to a Herald endpoint, shared by the realtime client and the
//! publisher: a parsed [`Endpoint`] (`ws://`, `wss://`, `http://`,
//! `https://`), TCP, and TLS (the webpki roots by default) for the secure
//! schemes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Where to connect, parsed from a `ws://`, `wss://`, `http://` or
/// `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The `Host` header value.
    pub authority: String,
    /// Path and query; `/v1/connect` when the URL has no path.
    pub path: String,
}

impl Endpoint {
    /// A realtime endpoint: the path defaults to the connect path.
    #[cfg(any(feature = "realtime", test))]
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        Self::parse_with_default_path(url, herald_proto::CONNECT_PATH)
    }

    pub(crate) fn parse_with_default_path(url: &str, default_path: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("ws" | "http") => false,
            Some("wss" | "https") => true,
            Some(other) => {
                return Err(format!("{url:?}: unsupported scheme {other:?}; use ws://, wss://, http:// or https://"));
            }
            None => return Err(format!("{url:?} has no scheme; use ws://host:port or wss://host")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{url:?} has no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("" | "/") => default_path.to_owned(),
            Some(p) => p.to_owned(),
        };
        Ok(Self { tls, host, port, authority: authority.as_str().to_owned(), path })
    }
}

/// The default TLS settings: Mozilla's roots (webpki-roots), ring, TLS 1.2
/// and 1.3, ALPN `http/1.1`.
pub(crate) fn default_tls() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(b) => b,
        // The ring provider supports the default versions; this is unreachable
        // in practice, and the plain builder is a correct fallback.
        Err(_) => rustls::ClientConfig::builder(),
    };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TCP stream, with TLS or without.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens TCP to `endpoint`, with TLS when it says so.
pub(crate) async fn open_stream(endpoint: &Endpoint, tls: &Arc<rustls::ClientConfig>) -> io::Result<Stream> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    let _ = tcp.set_nodelay(true);
    if !endpoint.tls {
        return Ok(Stream::Plain(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid TLS server name: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?;
    Ok(Stream::Tls(Box::new(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_the_default_path() {
        let e = Endpoint::parse("ws://127.0.0.1:8080").expect("parse");
        assert_eq!((e.tls, e.host.as_str(), e.port, e.path.as_str()), (false, "127.0.0.1", 8080, "/v1/connect"));
        let e = Endpoint::parse("wss://edge.example.com/custom?x=1").expect("parse");
        assert_eq!(
            (e.tls, e.port, e.path.as_str(), e.authority.as_str()),
            (true, 443, "/custom?x=1", "edge.example.com")
        );
        let e = Endpoint::parse("http://[::1]:9/").expect("parse");
        assert_eq!((e.host.as_str(), e.path.as_str()), ("::1", "/v1/connect"));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("localhost:80").is_err());
        assert!(Endpoint::parse("not a url").is_err());
    }
}
