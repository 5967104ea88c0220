//! Token signatures checked with each signing key decompressed once.
//!
//! jsonwebtoken builds a verifier from the raw public key for every token
//! it checks, and an Ed25519 public key must be decompressed (a square
//! root in the field) before it can check anything: about a tenth of an
//! edge's CPU in a connect storm. This module installs jsonwebtoken's
//! process-wide crypto provider as its RustCrypto provider with one
//! change: Ed25519 verifiers come from a small cache of decompressed keys.
//! Signing and every other algorithm are RustCrypto's, unchanged.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ed25519_dalek::{Signature, VerifyingKey};
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Keys kept decompressed; beyond it the cache starts again (a JWKS holds
/// a handful of keys).
const MAX_KEYS: usize = 64;

static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();

static KEYS: Mutex<Option<HashMap<[u8; 32], VerifyingKey>>> = Mutex::new(None);

/// Installs the provider for this process, unless one was installed (or
/// used, which installs the default) before: then tokens are still checked
/// by it, only without the cache.
pub(crate) fn install() {
    let provider =
        PROVIDER.get_or_init(|| CryptoProvider { verifier_factory: verifier, ..rust_crypto::DEFAULT_PROVIDER.clone() });
    let _ = provider.install_default();
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::EdDSA {
        return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key);
    }
    let raw: [u8; 32] = key
        .try_get_as_bytes()?
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| jsonwebtoken::errors::Error::from(ErrorKind::InvalidEddsaKey))?;
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let keys = keys.get_or_insert_with(HashMap::new);
    let decompressed = match keys.get(&raw) {
        Some(key) => *key,
        None => {
            let key = VerifyingKey::from_bytes(&raw).map_err(|_| ErrorKind::InvalidEddsaKey)?;
            if keys.len() >= MAX_KEYS {
                keys.clear();
            }
            keys.insert(raw, key);
            key
        }
    };
    Ok(Box::new(Ed25519(decompressed)))
}

/// An Ed25519 verifier over a decompressed key.
struct Ed25519(VerifyingKey);

impl signature::Verifier<Vec<u8>> for Ed25519 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // As RustCrypto's own verifier checks: the same rules, the same
        // tokens accepted.
        signature::Verifier::verify(&self.0, message, &Signature::from_slice(signature)?)
    }
}

impl JwtVerifier for Ed25519 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}
