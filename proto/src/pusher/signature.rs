//! Pusher channel authorization: the `auth` string a client presents to
//! subscribe to a private, private-encrypted or presence channel.
//!
//! `auth` is `<key>:<signature>`, where the signature is the lower-case hex
//! HMAC-SHA256, keyed with the app secret, of `<socket_id>:<channel>`, or of
//! `<socket_id>:<channel>:<channel_data>` for presence channels (the
//! `channel_data` string exactly as the client sent it). Verification
//! compares signatures in constant time; malformed input is an error.
//!
//! A user sign-in (`pusher:signin`) is signed the same way, over
//! `<socket_id>::user::<user_data>` ([`sign_user`], [`verify_user`]).
//!
//! The hex and HMAC helpers here are shared with [`super::request`].

use ring::hmac;

use super::channel::{PusherChannel, PusherChannelKind};

/// Why a channel `auth` string was refused.
///
/// ```
/// use herald_proto::pusher::{ChannelAuthError, PusherChannel, verify_channel};
/// let channel = PusherChannel::new("presence-room")?;
/// let verify = |data, auth| verify_channel("app-key", "app-secret", "1.1", &channel, data, auth);
/// assert_eq!(verify(Some("{}"), "no-colon"), Err(ChannelAuthError::Malformed));
/// assert_eq!(verify(Some("{}"), "other-key:00"), Err(ChannelAuthError::WrongKey));
/// assert_eq!(verify(Some("{}"), "app-key:zz"), Err(ChannelAuthError::NotHex));
/// assert_eq!(verify(None, "app-key:00"), Err(ChannelAuthError::MissingChannelData));
/// assert_eq!(verify(Some("{}"), &format!("app-key:{}", "0".repeat(64))), Err(ChannelAuthError::BadSignature));
/// # Ok::<(), herald_proto::pusher::PusherChannelError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelAuthError {
    /// The string is not `<key>:<signature>`.
    #[error("malformed auth: expected \"<key>:<signature>\"")]
    Malformed,
    /// The key is not the app's.
    #[error("auth key does not match the app key")]
    WrongKey,
    /// The signature is not 64 hex digits.
    #[error("auth signature is not a hex HMAC-SHA256 (64 hex digits)")]
    NotHex,
    /// A presence subscription came without `channel_data`.
    #[error("presence channel auth needs channel_data")]
    MissingChannelData,
    /// The signature does not match.
    #[error("invalid auth signature")]
    BadSignature,
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Decodes hex (either case); `None` when `s` is not hex of whole bytes.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks_exact(2).map(|p| Some((digit(p[0])? << 4) | digit(p[1])?)).collect()
}

/// Hex digits of an HMAC-SHA256.
pub(crate) const SIGNATURE_HEX_LEN: usize = 64;

/// The HMAC-SHA256 key of an app secret.
pub(crate) fn hmac_key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// Lower-case hex HMAC-SHA256 of `message` under `secret`.
pub(crate) fn hmac_hex(secret: &str, message: &str) -> String {
    hex(hmac::sign(&hmac_key(secret), message.as_bytes()).as_ref())
}

/// Checks a hex signature against `message` in constant time.
pub(crate) fn verify_hmac_hex(secret: &str, message: &str, signature_hex: &str) -> Result<(), SignatureMismatch> {
    if signature_hex.len() != SIGNATURE_HEX_LEN {
        return Err(SignatureMismatch::NotHex);
    }
    let signature = unhex(signature_hex).ok_or(SignatureMismatch::NotHex)?;
    hmac::verify(&hmac_key(secret), message.as_bytes(), &signature).map_err(|_| SignatureMismatch::Bad)
}

/// How a hex signature failed [`verify_hmac_hex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureMismatch {
    NotHex,
    Bad,
}

/// The string a channel `auth` signs.
///
/// ```
/// use herald_proto::pusher::PusherChannel;
/// use herald_proto::pusher::signature::channel_string_to_sign;
/// let channel = PusherChannel::new("presence-room")?;
/// assert_eq!(channel_string_to_sign("1234.1234", &channel, None), "1234.1234:presence-room");
/// assert_eq!(
///     channel_string_to_sign("1234.1234", &channel, Some(r#"{"user_id":"10"}"#)),
///     r#"1234.1234:presence-room:{"user_id":"10"}"#
/// );
/// # Ok::<(), herald_proto::pusher::PusherChannelError>(())
/// ```
#[must_use]
pub fn channel_string_to_sign(socket_id: &str, channel: &PusherChannel, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The `auth` string `<key>:<signature>` for one subscription.
///
/// `channel_data` is signed when given (Pusher gives it for presence
/// channels only).
///
/// ```
/// use herald_proto::pusher::{PusherChannel, sign_channel};
/// // Pusher's worked example of a private channel's `auth`.
/// let channel = PusherChannel::new("private-foobar")?;
/// let auth = sign_channel("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234", &channel, None);
/// assert_eq!(auth, "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
/// # Ok::<(), herald_proto::pusher::PusherChannelError>(())
/// ```
#[must_use]
pub fn sign_channel(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &PusherChannel,
    channel_data: Option<&str>,
) -> String {
    format!("{key}:{}", hmac_hex(secret, &channel_string_to_sign(socket_id, channel, channel_data)))
}

/// Checks a subscription's `auth` string, the signature in constant time.
///
/// ```
/// use herald_proto::pusher::{ChannelAuthError, PusherChannel, sign_channel, verify_channel};
/// let channel = PusherChannel::new("presence-room")?;
/// let data = r#"{"user_id":"ada"}"#;
/// let auth = sign_channel("app-key", "app-secret", "1.1", &channel, Some(data));
/// assert_eq!(verify_channel("app-key", "app-secret", "1.1", &channel, Some(data), &auth), Ok(()));
/// // Signed for another connection:
/// let other = verify_channel("app-key", "app-secret", "2.2", &channel, Some(data), &auth);
/// assert_eq!(other, Err(ChannelAuthError::BadSignature));
/// # Ok::<(), herald_proto::pusher::PusherChannelError>(())
/// ```
///
/// # Errors
///
/// [`ChannelAuthError`] naming the first thing wrong: no `:`, another key,
/// a signature that is not 64 hex digits, a presence channel without
/// `channel_data`, or a signature that does not match.
pub fn verify_channel(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &PusherChannel,
    channel_data: Option<&str>,
    auth: &str,
) -> Result<(), ChannelAuthError> {
    let (auth_key, signature) = auth.split_once(':').ok_or(ChannelAuthError::Malformed)?;
    if auth_key != key {
        return Err(ChannelAuthError::WrongKey);
    }
    if channel.kind() == PusherChannelKind::Presence && channel_data.is_none() {
        return Err(ChannelAuthError::MissingChannelData);
    }
    let message = channel_string_to_sign(socket_id, channel, channel_data);
    verify_hmac_hex(secret, &message, signature).map_err(|e| match e {
        SignatureMismatch::NotHex => ChannelAuthError::NotHex,
        SignatureMismatch::Bad => ChannelAuthError::BadSignature,
    })
}

/// The string a user sign-in's `auth` signs: `<socket_id>::user::<user_data>`.
///
/// ```
/// use herald_proto::pusher::signature::user_string_to_sign;
/// assert_eq!(user_string_to_sign("1.1", r#"{"id":"ada"}"#), r#"1.1::user::{"id":"ada"}"#);
/// ```
#[must_use]
pub fn user_string_to_sign(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// The `auth` string `<key>:<signature>` of a user sign-in (`pusher:signin`).
///
/// ```
/// use herald_proto::pusher::sign_user;
/// let auth = sign_user("app-key", "app-secret", "1.1", r#"{"id":"ada"}"#);
/// let (key, signature) = auth.split_once(':').expect("key:signature");
/// assert_eq!((key, signature.len()), ("app-key", 64));
/// ```
#[must_use]
pub fn sign_user(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    format!("{key}:{}", hmac_hex(secret, &user_string_to_sign(socket_id, user_data)))
}

/// Checks a user sign-in's `auth` string, the signature in constant time.
///
/// ```
/// use herald_proto::pusher::{ChannelAuthError, sign_user, verify_user};
/// let user = r#"{"id":"ada"}"#;
/// let auth = sign_user("app-key", "app-secret", "1.1", user);
/// assert_eq!(verify_user("app-key", "app-secret", "1.1", user, &auth), Ok(()));
/// let forged = verify_user("app-key", "app-secret", "1.1", r#"{"id":"eve"}"#, &auth);
/// assert_eq!(forged, Err(ChannelAuthError::BadSignature));
/// ```
///
/// # Errors
///
/// [`ChannelAuthError`] naming the first thing wrong: no `:`, another key,
/// a signature that is not 64 hex digits, or one that does not match.
pub fn verify_user(
    key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> Result<(), ChannelAuthError> {
    let (auth_key, signature) = auth.split_once(':').ok_or(ChannelAuthError::Malformed)?;
    if auth_key != key {
        return Err(ChannelAuthError::WrongKey);
    }
    verify_hmac_hex(secret, &user_string_to_sign(socket_id, user_data), signature).map_err(|e| match e {
        SignatureMismatch::NotHex => ChannelAuthError::NotHex,
        SignatureMismatch::Bad => ChannelAuthError::BadSignature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Pusher's worked example ("Generating authentication and authorization
    // strings", Pusher Channels docs, library auth reference).
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const SOCKET: &str = "1234.1234";
    const PRIVATE_AUTH: &str = "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
    const PRESENCE_DATA: &str = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
    const PRESENCE_AUTH: &str = "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80";

    fn ch(name: &str) -> PusherChannel {
        PusherChannel::new(name).expect("valid channel")
    }

    #[test]
    fn pusher_private_example() {
        let c = ch("private-foobar");
        assert_eq!(channel_string_to_sign(SOCKET, &c, None), "1234.1234:private-foobar");
        assert_eq!(sign_channel(KEY, SECRET, SOCKET, &c, None), PRIVATE_AUTH);
        assert_eq!(verify_channel(KEY, SECRET, SOCKET, &c, None, PRIVATE_AUTH), Ok(()));
    }

    #[test]
    fn pusher_presence_example() {
        let c = ch("presence-foobar");
        assert_eq!(sign_channel(KEY, SECRET, SOCKET, &c, Some(PRESENCE_DATA)), PRESENCE_AUTH);
        assert_eq!(verify_channel(KEY, SECRET, SOCKET, &c, Some(PRESENCE_DATA), PRESENCE_AUTH), Ok(()));
        // The docs' earlier edition of the same example named the user
        // "Mr. Pusher".
        let older = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
        assert_eq!(
            sign_channel(KEY, SECRET, SOCKET, &c, Some(older)),
            "278d425bdf160c739803:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"
        );
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let auth = format!("{KEY}:{}", PRIVATE_AUTH[KEY.len() + 1..].to_ascii_uppercase());
        assert_eq!(verify_channel(KEY, SECRET, SOCKET, &ch("private-foobar"), None, &auth), Ok(()));
    }

    #[test]
    fn bad_auth_is_a_typed_error() {
        let c = ch("private-foobar");
        let sig = &PRIVATE_AUTH[KEY.len() + 1..];
        let check = |auth: &str| verify_channel(KEY, SECRET, SOCKET, &c, None, auth);
        assert_eq!(check(""), Err(ChannelAuthError::Malformed));
        assert_eq!(check(sig), Err(ChannelAuthError::Malformed));
        assert_eq!(check(&format!("other:{sig}")), Err(ChannelAuthError::WrongKey));
        assert_eq!(check(&format!(":{sig}")), Err(ChannelAuthError::WrongKey));
        assert_eq!(check(&format!("{KEY}:")), Err(ChannelAuthError::NotHex));
        assert_eq!(check(&format!("{KEY}:{}", &sig[..63])), Err(ChannelAuthError::NotHex));
        assert_eq!(check(&format!("{KEY}:{}zz", &sig[..62])), Err(ChannelAuthError::NotHex));
        assert_eq!(check(&format!("{KEY}:{sig}:")), Err(ChannelAuthError::NotHex));
        assert_eq!(check(&format!("{KEY}:{}00", &sig[..62])), Err(ChannelAuthError::BadSignature));
        assert_eq!(check(&format!("{KEY}:{}", "é".repeat(32))), Err(ChannelAuthError::NotHex));
        // Another socket or channel.
        assert_eq!(
            verify_channel(KEY, SECRET, "1234.4321", &c, None, PRIVATE_AUTH),
            Err(ChannelAuthError::BadSignature)
        );
        assert_eq!(
            verify_channel(KEY, SECRET, SOCKET, &ch("private-foobaz"), None, PRIVATE_AUTH),
            Err(ChannelAuthError::BadSignature)
        );
        // Another secret.
        assert_eq!(
            verify_channel(KEY, "not-the-secret", SOCKET, &c, None, PRIVATE_AUTH),
            Err(ChannelAuthError::BadSignature)
        );
        // Presence: channel_data is signed and required.
        let p = ch("presence-foobar");
        assert_eq!(
            verify_channel(KEY, SECRET, SOCKET, &p, None, PRESENCE_AUTH),
            Err(ChannelAuthError::MissingChannelData)
        );
        assert_eq!(
            verify_channel(KEY, SECRET, SOCKET, &p, Some(r#"{"user_id":11}"#), PRESENCE_AUTH),
            Err(ChannelAuthError::BadSignature)
        );
    }

    #[test]
    fn user_signin_round_trips() {
        let data = r#"{"id":"42","name":"Ada"}"#;
        assert_eq!(user_string_to_sign(SOCKET, data), format!("{SOCKET}::user::{data}"));
        let auth = sign_user(KEY, SECRET, SOCKET, data);
        assert_eq!(verify_user(KEY, SECRET, SOCKET, data, &auth), Ok(()));
        assert_eq!(verify_user(KEY, SECRET, "1.2", data, &auth), Err(ChannelAuthError::BadSignature));
        assert_eq!(verify_user("other", SECRET, SOCKET, data, &auth), Err(ChannelAuthError::WrongKey));
        assert_eq!(verify_user(KEY, SECRET, SOCKET, data, "nocolon"), Err(ChannelAuthError::Malformed));
        // The channel form of the same socket and data is another signature.
        let channel_auth = sign_channel(KEY, SECRET, SOCKET, &ch("presence-x"), Some(data));
        assert_eq!(verify_user(KEY, SECRET, SOCKET, data, &channel_auth), Err(ChannelAuthError::BadSignature));
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(unhex("000fA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(""), Some(vec![]));
    }

    proptest! {
        #[test]
        fn verify_never_panics(auth in any::<String>(), data in proptest::option::of(any::<String>())) {
            let _ = verify_channel(KEY, SECRET, SOCKET, &ch("presence-x"), data.as_deref(), &auth);
        }

        #[test]
        fn what_is_signed_verifies(socket in "[0-9]{1,8}\\.[0-9]{1,8}", data in any::<String>()) {
            let c = ch("presence-room");
            let auth = sign_channel(KEY, SECRET, &socket, &c, Some(&data));
            prop_assert_eq!(verify_channel(KEY, SECRET, &socket, &c, Some(&data), &auth), Ok(()));
        }
    }
}
