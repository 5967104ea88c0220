//! TLS for Herald's listeners: a certificate chain and its private key,
//! read from PEM files into a rustls server configuration (the ring
//! provider, TLS 1.2 and 1.3) that offers the ALPN protocols the listener
//! speaks. The edge (`wss://`) and the control plane (HTTPS for REST, gRPC
//! and `/metrics`) both serve with it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built: names the file and what is
/// wrong with it.
///
/// ```
/// use std::path::Path;
/// let err = herald_bus::tls::server_config(Path::new("no-such-cert.pem"), Path::new("no-such-key.pem"), &[])
///     .unwrap_err();
/// assert!(err.to_string().starts_with("certificate no-such-cert.pem"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// A TLS acceptor presenting the chain in `cert` with the key in `key`
/// (both PEM), offering `alpn` (e.g. `h2` then `http/1.1`) in that order of
/// preference.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A self-signed certificate written to PEM files.
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
/// let dir = std::env::temp_dir().join(format!("herald-doc-tls-acceptor-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
/// std::fs::write(&cert_file, cert.cert.pem())?;
/// std::fs::write(&key_file, cert.signing_key.serialize_pem())?;
///
/// let acceptor = herald_bus::tls::acceptor(&cert_file, &key_file, &[b"h2", b"http/1.1"])?;
/// assert_eq!(acceptor.config().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`TlsError`] when a file cannot be read, holds no certificate or key,
/// or the key does not fit the certificate.
pub fn acceptor(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cert, key, alpn)?)))
}

/// The rustls server configuration behind [`acceptor`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
/// let dir = std::env::temp_dir().join(format!("herald-doc-tls-config-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
/// std::fs::write(&cert_file, cert.cert.pem())?;
/// std::fs::write(&key_file, cert.signing_key.serialize_pem())?;
///
/// let config = herald_bus::tls::server_config(&cert_file, &key_file, &[b"http/1.1"])?;
/// assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
/// // The key must fit the certificate.
/// let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
/// std::fs::write(&key_file, other.signing_key.serialize_pem())?;
/// assert!(herald_bus::tls::server_config(&cert_file, &key_file, &[]).is_err());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`acceptor`].
pub fn server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("certificate {}: no certificate found", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError(format!("key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(e.to_string()))?;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = std::env::temp_dir().join(format!("herald-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let err = server_config(&dir.join("nope.pem"), &empty, &[]).expect_err("missing");
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let err = server_config(&empty, &empty, &[]).expect_err("empty");
        assert!(err.to_string().contains("no certificate found"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
