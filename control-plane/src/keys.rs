//! API key secrets and ids: how they are made, written, parsed and checked.
//!
//! A key is written `hk_<key id>_<secret>`: the key id (letters and digits
//! only, so the first `_` after the prefix ends it) lets the server find the
//! key by id, and the secret — 32 random bytes, base64url — is checked
//! against its stored SHA-256 in constant time. The secret is returned once,
//! when the key is created; it is never stored or logged. Also here: the
//! random ids of apps, messages and tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_proto::KeyId;
use rand::Rng as _;
use rand::RngCore as _;

/// The prefix of every API key.
pub const KEY_PREFIX: &str = "hk_";

/// Bytes of randomness in a key's secret part.
const SECRET_BYTES: usize = 32;

const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// `len` random characters of `[0-9a-z]`.
#[must_use]
pub fn random_alnum(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(ALNUM[rng.random_range(0..ALNUM.len())])).collect()
}

/// A new key id: `k` and 20 random characters (about 103 bits).
#[must_use]
pub fn new_key_id() -> KeyId {
    KeyId::new(&format!("k{}", random_alnum(20))).unwrap_or_else(|_| unreachable!("alphabet is valid"))
}

/// A freshly made key: its id, the whole key to give to the caller once,
/// and the hash to store.
pub struct NewKey {
    /// The key id.
    pub id: KeyId,
    /// The whole key, `hk_<id>_<secret>`.
    pub key: String,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Makes a new key from the operating system's random generator.
///
/// # Errors
///
/// When the system random generator fails.
pub fn new_key() -> Result<NewKey, ring::error::Unspecified> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let id = new_key_id();
    let key = format!("{KEY_PREFIX}{id}_{secret}");
    Ok(NewKey { id, key, secret_hash: hash_secret(&secret) })
}

/// Bytes of randomness in a Pusher secret.
const PUSHER_SECRET_BYTES: usize = 16;

/// A new Pusher secret: 16 random bytes from the operating system, as 32
/// lower-case hex characters (the form Pusher's own secrets take).
///
/// # Errors
///
/// When the system random generator fails.
pub fn new_pusher_secret() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom as _;
    use std::fmt::Write as _;
    let mut bytes = [0u8; PUSHER_SECRET_BYTES];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    let mut out = String::with_capacity(PUSHER_SECRET_BYTES * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    Ok(out)
}

/// Splits `hk_<id>_<secret>` into id and secret; `None` when the text is
/// not shaped like a key.
#[must_use]
pub fn parse_key(key: &str) -> Option<(KeyId, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if secret.is_empty() || secret.len() > 256 {
        return None;
    }
    Some((KeyId::new(id).ok()?, secret))
}

/// SHA-256 of a secret.
#[must_use]
pub fn hash_secret(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref().to_vec()
}

/// Whether `secret` hashes to `stored`, compared in constant time.
#[must_use]
pub fn verify_secret(secret: &str, stored: &[u8]) -> bool {
    constant_time_eq(&hash_secret(secret), stored)
}

/// Compares two byte strings in time that depends only on their lengths.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A random message id: `m` and 20 characters of `[0-9a-z]` (about 103
/// bits).
#[must_use]
pub fn new_message_id() -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(21);
    out.push('m');
    // 36^12 and 36^8 both fit in a u64.
    for (mut bits, n) in [(rng.next_u64(), 12), (rng.next_u64(), 8)] {
        for _ in 0..n {
            out.push(char::from(ALNUM[(bits % 36) as usize]));
            bits /= 36;
        }
    }
    out
}

/// The prefix of every webhook endpoint id.
pub const WEBHOOK_ID_PREFIX: &str = "wh_";

/// The prefix of every webhook signing secret.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

/// A new webhook endpoint id: `wh_` and 16 random characters of `[0-9a-z]`
/// (about 82 bits).
#[must_use]
pub fn new_webhook_id() -> String {
    format!("{WEBHOOK_ID_PREFIX}{}", random_alnum(16))
}

/// Whether `id` is shaped like a webhook endpoint id.
#[must_use]
pub fn is_webhook_id(id: &str) -> bool {
    id.strip_prefix(WEBHOOK_ID_PREFIX)
        .is_some_and(|r| r.len() == 16 && r.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))
}

/// A new webhook signing secret: `whsec_` and 32 random characters of
/// `[0-9a-z]` (about 165 bits, from a cryptographically secure generator
/// seeded by the operating system).
#[must_use]
pub fn new_webhook_secret() -> String {
    format!("{WEBHOOK_SECRET_PREFIX}{}", random_alnum(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_and_secrets_have_their_shape() {
        let id = new_webhook_id();
        assert!(is_webhook_id(&id), "{id}");
        assert!(!is_webhook_id("wh_ABCDEFGHIJKLMNOP"));
        assert!(!is_webhook_id("wh_short"));
        assert!(!is_webhook_id("xx_0123456789abcdef"));
        let secret = new_webhook_secret();
        assert_eq!(secret.len(), 6 + 32);
        assert!(secret.starts_with("whsec_"));
        assert_ne!(secret, new_webhook_secret());
    }

    #[test]
    fn keys_round_trip() {
        let k = new_key().expect("rng");
        assert!(k.key.starts_with("hk_k"));
        let (id, secret) = parse_key(&k.key).expect("parse");
        assert_eq!(id, k.id);
        assert!(verify_secret(secret, &k.secret_hash));
        assert!(!verify_secret("wrong", &k.secret_hash));
        assert!(!format!("{k:?}").contains(secret), "debug must not show the secret");
    }

    #[test]
    fn pusher_secrets_are_32_hex_digits() {
        let a = new_pusher_secret().expect("rng");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{a}");
        assert_ne!(a, new_pusher_secret().expect("rng"));
    }

    #[test]
    fn malformed_keys() {
        for bad in ["", "hk_", "hk_abc", "hk_abc_", "xx_abc_def", "hk_a.b_c", "Bearer hk_a_b"] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn message_ids_are_distinct() {
        let a = new_message_id();
        let b = new_message_id();
        assert_eq!(a.len(), 21);
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
