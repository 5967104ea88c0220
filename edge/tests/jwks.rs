//! The edge's JWKS client through a real edge: keys over HTTPS from a
//! private CA given in `jwks_ca_file` (and refused without it), and the
//! refresh following the JWKS's `Cache-Control: max-age`.

use std::sync::Arc;
use std::time::Duration;

use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::*;

/// A TLS acceptor for `localhost` with a new self-signed certificate, and
/// that certificate as PEM.
fn localhost_tls() -> (tokio_rustls::TlsAcceptor, String) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.cert.der().to_vec())], key)
        .expect("server config");
    (tokio_rustls::TlsAcceptor::from(Arc::new(server)), cert.cert.pem())
}

#[tokio::test]
async fn keys_come_over_https_from_a_private_ca_and_an_untrusted_one_is_refused() {
    let (acceptor, pem) = localhost_tls();
    let auth = TestAuthority::start_tls(acceptor, None).await;
    assert!(auth.jwks_url().starts_with("https://"));
    let dir = std::env::temp_dir().join(format!("herald-jwks-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).expect("write ca");

    let with_ca =
        herald_edge::jwks_fetch::JwksFetcher::new(Some(&ca), Duration::from_secs(5), 1 << 20).expect("fetcher");
    let fetched = with_ca.get(&auth.jwks_url()).await.expect("the JWKS over https");
    assert!(fetched.body.starts_with(b"{"), "{fetched:?}");
    let trusted = EdgeConfig { jwks_url: auth.jwks_url(), jwks_ca_file: Some(ca), ..EdgeConfig::default() };
    let edge = TestEdge::start(trusted, Bus::local(&LocalBus::new())).await;
    let (_client, connected) =
        RawClient::connect(edge.addr, &auth.token("app1", "alice", "{\"*\":[\"subscribe\"]}")).await;
    assert!(!connected.connection_id.is_empty());
    assert!(auth.fetches() >= 1);

    // Without the CA, the certificate is not trusted, and the error says so.
    let plain = herald_edge::jwks_fetch::JwksFetcher::new(None, Duration::from_secs(5), 1 << 20).expect("fetcher");
    let err = plain.get(&auth.jwks_url()).await.expect_err("untrusted certificate");
    assert!(err.contains("TLS") && err.to_lowercase().contains("certificate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_ca_file_stops_the_edge_with_its_name() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = EdgeConfig { jwks_ca_file: Some("/nonexistent/ca.pem".into()), ..EdgeConfig::default() };
    let err = herald_edge::run(listener, config, Bus::local(&LocalBus::new()), std::future::pending())
        .await
        .expect_err("missing CA file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn the_jwks_is_read_again_when_its_max_age_runs_out() {
    let auth = TestAuthority::start_with_max_age(1).await;
    let config = EdgeConfig {
        jwks_url: auth.jwks_url(),
        jwks_min_refetch_interval: herald_proto::units::HumanDuration::millis(500),
        jwks_refresh_interval: herald_proto::units::HumanDuration::secs(300),
        ..EdgeConfig::default()
    };
    let edge = TestEdge::start(config, Bus::local(&LocalBus::new())).await;
    let _ = RawClient::connect(edge.addr, &auth.token("app1", "alice", "{\"*\":[\"subscribe\"]}")).await;
    let before = auth.fetches();
    // max-age=1 s against a 300 s refresh interval: more reads soon.
    within(Duration::from_secs(10), "refreshes by max-age", async {
        while auth.fetches() < before + 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
