//! TLS on the control plane's listener (`tls_cert`, `tls_key`): REST,
//! `/metrics` and gRPC over HTTPS with a self-signed certificate trusted by
//! the client, HTTP/2 and HTTP/1.1 chosen by ALPN; plain text is refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use common::http1::closed;
use common::{ADMIN, Server, TestDb, authed};
use herald_proto::api::admin_service_client::AdminServiceClient;
use herald_proto::api::publish_service_client::PublishServiceClient;
use herald_proto::api::{self as pb};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

struct Tls {
    client: Arc<rustls::ClientConfig>,
    pem: String,
    dir: std::path::PathBuf,
}

/// A self-signed certificate for `localhost` written to PEM files, and a
/// client configuration that trusts it, offering `alpn`.
fn self_signed(alpn: &[&[u8]]) -> Result<(Tls, std::path::PathBuf, std::path::PathBuf)> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let dir = std::env::temp_dir().join(format!("herald-cp-tls-{}", common::random_suffix()));
    std::fs::create_dir_all(&dir)?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((Tls { client: Arc::new(client), pem: cert.cert.pem(), dir }, cert_path, key_path))
}

/// Sends one request over a new TLS connection; the protocol ALPN chose,
/// the status and the body.
async fn https(
    server: &Server,
    tls: &Tls,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Result<(String, u16, Bytes)> {
    let tcp = TcpStream::connect(server.addr).await?;
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    let stream = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
    let alpn = stream.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
    let mut req =
        http::Request::builder().method(method).uri(format!("https://localhost:{}{path}", server.addr.port()));
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    let body = match body {
        Some(b) => Bytes::from(serde_json::to_vec(&b)?),
        None => Bytes::new(),
    };
    let req = req.header("content-type", "application/json").body(Full::new(body))?;
    let io = TokioIo::new(stream);
    let response = if alpn == "h2" {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        send.send_request(req).await?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        send.send_request(req).await?
    };
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((alpn, status, bytes))
}

#[tokio::test]
async fn rest_grpc_and_metrics_over_tls() -> Result<()> {
    let (tls, cert, key) = self_signed(&[b"h2", b"http/1.1"])?;
    let server = Server::start(TestDb::sqlite(), |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await?;
    let (alpn, status, _) = https(&server, &tls, "GET", "/healthz", None, None).await?;
    assert_eq!((alpn.as_str(), status), ("h2", 200));
    let (alpn, status, page) = https(&server, &tls, "GET", "/metrics", None, None).await?;
    assert_eq!((alpn.as_str(), status), ("h2", 200));
    assert!(String::from_utf8_lossy(&page).contains("herald_cp_"), "metrics page");

    // An app and a key over REST, then a publish over each protocol.
    let (_, status, body) = https(&server, &tls, "POST", "/v1/apps", Some(ADMIN), Some(json!({"name": "tls"}))).await?;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let app = serde_json::from_slice::<Value>(&body)?["id"].as_str().context("app id")?.to_owned();
    let caps = json!({"name": "backend", "capabilities": {"chat:*": ["publish"]}});
    let (_, status, body) =
        https(&server, &tls, "POST", &format!("/v1/apps/{app}/keys"), Some(ADMIN), Some(caps)).await?;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let key = serde_json::from_slice::<Value>(&body)?["key"].as_str().context("key")?.to_owned();
    let publish = format!("/v1/apps/{app}/channels/chat:x/messages");
    let (alpn, status, body) = https(&server, &tls, "POST", &publish, Some(&key), Some(json!({"data": 1}))).await?;
    assert_eq!((alpn.as_str(), status), ("h2", 202), "{}", String::from_utf8_lossy(&body));

    // gRPC with the certificate as its root.
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", server.addr.port()))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.pem)).domain_name("localhost"))?
        .connect()
        .await?;
    let apps = AdminServiceClient::new(channel.clone()).list_apps(authed(pb::ListAppsRequest {}, ADMIN)).await?;
    assert!(apps.into_inner().apps.iter().any(|a| a.id == app));
    let msg = pb::PublishRequest {
        app_id: app.clone(),
        channel: "chat:x".into(),
        data: b"over tls".to_vec().into(),
        ..Default::default()
    };
    PublishServiceClient::new(channel).publish(authed(msg, &key)).await?;

    // Plain text on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(server.addr).await?;
    plain.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n").await?;
    let mut got = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut got);
    let _ = tokio::time::timeout(Duration::from_secs(15), read).await.context("plain text is closed")?;
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    let mut h2c = TcpStream::connect(server.addr).await?;
    h2c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await?;
    assert!(closed(&mut h2c, Duration::from_secs(15)).await, "h2c on the TLS port is closed");

    // A certificate the client does not trust: the handshake fails.
    let stranger = self_signed(&[b"h2"])?.0;
    assert!(https(&server, &stranger, "GET", "/healthz", None, None).await.is_err(), "untrusted certificate");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&tls.dir);
    Ok(())
}

#[tokio::test]
async fn http1_over_tls_when_the_client_offers_only_http1() -> Result<()> {
    let (tls, cert, key) = self_signed(&[b"http/1.1"])?;
    let server = Server::start(TestDb::sqlite(), |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await?;
    let (alpn, status, _) = https(&server, &tls, "GET", "/healthz", None, None).await?;
    assert_eq!((alpn.as_str(), status), ("http/1.1", 200));
    server.stop().await;
    let _ = std::fs::remove_dir_all(&tls.dir);
    Ok(())
}

#[tokio::test]
async fn missing_or_half_tls_settings_are_refused_at_start() -> Result<()> {
    let db = TestDb::sqlite();
    let bus = common::nats_backplane_at(common::NATS_URL, common::subjects()).await?;
    let mut config = common::config(&db);
    config.tls_cert = Some("/nonexistent/cert.pem".into());
    let err = herald_control_plane::ControlPlane::new(config.clone(), bus.clone()).await.err().context("half")?;
    assert!(err.to_string().contains("tls_key"), "{err}");
    config.tls_key = Some("/nonexistent/key.pem".into());
    let err = herald_control_plane::ControlPlane::new(config, bus).await.err().context("missing files")?;
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    Ok(())
}
