//! The signature of Pusher HTTP API requests.
//!
//! Every request carries `auth_key`, `auth_timestamp` (Unix seconds),
//! `auth_version` (`1.0`), `auth_signature`, and `body_md5` (lower-case hex
//! MD5 of the body) when it has a body. The signature is the lower-case hex
//! HMAC-SHA256, keyed with the app secret, of
//!
//! ```text
//! <METHOD>\n<path>\n<query>
//! ```
//!
//! where `<query>` is every parameter but `auth_signature`, keys lower-cased,
//! sorted by key, joined as `k=v` with `&`, values as received (URL-decoded,
//! not re-encoded).
//!
//! [`verify_request`] checks all of it and names the first failure with an
//! [`ApiAuthError`], so that the API can answer 401 with a reason. The
//! signature is compared in constant time (`ring::hmac::verify`); `body_md5`,
//! which is no secret, by a branch-free comparison of the decoded digests.

use md5::{Digest, Md5};

use super::signature::{SignatureMismatch, hex, hmac_hex, unhex, verify_hmac_hex};

/// The only `auth_version` Pusher defines.
pub const AUTH_VERSION: &str = "1.0";

/// How far `auth_timestamp` may be from the server's clock, in seconds
/// (Pusher's window).
pub const DEFAULT_TIMESTAMP_WINDOW_SECS: u64 = 600;

/// One HTTP API request, as received.
///
/// ```
/// use herald_proto::pusher::{ApiRequest, body_md5, sign_request, verify_request};
/// let body = br#"{"name":"shipped","channels":["orders"],"data":"{}"}"#;
/// let md5 = body_md5(body);
/// let mut params = vec![
///     ("auth_key", "app-key"), ("auth_timestamp", "1700000000"),
///     ("auth_version", "1.0"), ("body_md5", md5.as_str()),
/// ];
/// let signature = sign_request("app-secret", "POST", "/apps/3/events", &params);
/// params.push(("auth_signature", signature.as_str()));
/// let req = ApiRequest { method: "POST", path: "/apps/3/events", params: &params, body };
/// assert_eq!(verify_request("app-key", "app-secret", &req, 1_700_000_030, 600), Ok(()));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// The HTTP method, e.g. `POST` (upper-cased for signing).
    pub method: &'a str,
    /// The request path, e.g. `/apps/3/events`.
    pub path: &'a str,
    /// The query parameters, URL-decoded, in any order.
    pub params: &'a [(&'a str, &'a str)],
    /// The body (empty for none).
    pub body: &'a [u8],
}

/// Why an HTTP API request's authentication was refused; each answers 401.
///
/// ```
/// use herald_proto::pusher::{ApiAuthError, ApiRequest, verify_request};
/// let params = [("auth_key", "app-key"), ("auth_timestamp", "1700000000"), ("auth_version", "1.0")];
/// let req = ApiRequest { method: "GET", path: "/apps/3/channels", params: &params, body: b"" };
/// let stale = verify_request("app-key", "app-secret", &req, 1_700_001_000, 600);
/// assert_eq!(stale, Err(ApiAuthError::StaleTimestamp { timestamp: 1_700_000_000, now: 1_700_001_000, window: 600 }));
/// let unsigned = verify_request("app-key", "app-secret", &req, 1_700_000_000, 600);
/// assert_eq!(unsigned, Err(ApiAuthError::MissingParameter("auth_signature")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiAuthError {
    /// A required parameter is missing.
    #[error("missing parameter {0}")]
    MissingParameter(&'static str),
    /// A parameter appears more than once (keys compared lower-cased).
    #[error("parameter {0} given more than once")]
    DuplicateParameter(String),
    /// `auth_key` is not the app's key.
    #[error("auth_key does not match the app key")]
    WrongKey,
    /// `auth_timestamp` is not a whole number of seconds.
    #[error("auth_timestamp {0:?} is not a Unix timestamp in seconds")]
    BadTimestamp(String),
    /// `auth_timestamp` is too far from the server's clock.
    #[error("auth_timestamp {timestamp} is more than {window} s from the server time {now}")]
    StaleTimestamp {
        /// The request's timestamp.
        timestamp: u64,
        /// The server's clock.
        now: u64,
        /// The allowed distance, in seconds.
        window: u64,
    },
    /// `auth_version` is not `1.0`.
    #[error("auth_version {0:?} is not supported (expected 1.0)")]
    UnsupportedVersion(String),
    /// `body_md5` is not the MD5 of the body.
    #[error("body_md5 does not match the body")]
    BodyMd5Mismatch,
    /// `auth_signature` is not 64 hex digits.
    #[error("auth_signature is not a hex HMAC-SHA256 (64 hex digits)")]
    NotHex,
    /// `auth_signature` does not match.
    #[error("invalid auth_signature")]
    BadSignature,
}

/// Lower-case hex MD5 of a body, as `body_md5` carries it.
///
/// ```
/// use herald_proto::pusher::body_md5;
/// assert_eq!(body_md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
/// ```
#[must_use]
pub fn body_md5(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

/// The string an HTTP API request signs: method (upper-cased), path, and
/// every parameter but `auth_signature`, keys lower-cased and sorted.
///
/// ```
/// use herald_proto::pusher::string_to_sign;
/// let params = [("auth_version", "1.0"), ("Auth_Key", "app-key"), ("auth_signature", "ignored")];
/// assert_eq!(string_to_sign("get", "/apps/3/channels", &params), "GET\n/apps/3/channels\nauth_key=app-key&auth_version=1.0");
/// ```
#[must_use]
pub fn string_to_sign(method: &str, path: &str, params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, &str)> =
        params.iter().map(|(k, v)| (k.to_ascii_lowercase(), *v)).filter(|(k, _)| k != "auth_signature").collect();
    pairs.sort_unstable();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query.join("&"))
}

/// `auth_signature` for a request: lower-case hex HMAC-SHA256 of
/// [`string_to_sign`].
///
/// ```
/// use herald_proto::pusher::sign_request;
/// let params = [("auth_key", "app-key"), ("auth_timestamp", "1700000000"), ("auth_version", "1.0")];
/// let signature = sign_request("app-secret", "GET", "/apps/3/channels", &params);
/// assert_eq!(signature.len(), 64, "hex HMAC-SHA256");
/// assert_ne!(signature, sign_request("another-secret", "GET", "/apps/3/channels", &params));
/// ```
#[must_use]
pub fn sign_request(secret: &str, method: &str, path: &str, params: &[(&str, &str)]) -> String {
    hmac_hex(secret, &string_to_sign(method, path, params))
}

/// Compares two byte strings without branching on their contents.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an HTTP API request's authentication against the app's key and
/// secret, with `now` the server's clock in Unix seconds and `window` the
/// allowed distance of `auth_timestamp` from it (Pusher's is
/// [`DEFAULT_TIMESTAMP_WINDOW_SECS`]).
///
/// ```
/// use herald_proto::pusher::request::DEFAULT_TIMESTAMP_WINDOW_SECS;
/// use herald_proto::pusher::{ApiAuthError, ApiRequest, sign_request, verify_request};
/// let mut params = vec![("auth_key", "app-key"), ("auth_timestamp", "1700000000"), ("auth_version", "1.0")];
/// let signature = sign_request("app-secret", "GET", "/apps/3/channels", &params);
/// params.push(("auth_signature", signature.as_str()));
/// let req = ApiRequest { method: "GET", path: "/apps/3/channels", params: &params, body: b"" };
/// let now = 1_700_000_100;
/// assert_eq!(verify_request("app-key", "app-secret", &req, now, DEFAULT_TIMESTAMP_WINDOW_SECS), Ok(()));
/// let wrong_secret = verify_request("app-key", "not-the-secret", &req, now, DEFAULT_TIMESTAMP_WINDOW_SECS);
/// assert_eq!(wrong_secret, Err(ApiAuthError::BadSignature));
/// ```
///
/// # Errors
///
/// [`ApiAuthError`] naming the first failure, checked in this order:
/// duplicate parameters, `auth_key`, `auth_timestamp`, `auth_version`,
/// `body_md5` (required when there is a body, checked whenever given),
/// `auth_signature`.
pub fn verify_request(
    key: &str,
    secret: &str,
    req: &ApiRequest<'_>,
    now: u64,
    window: u64,
) -> Result<(), ApiAuthError> {
    let mut keys: Vec<String> = req.params.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    keys.sort_unstable();
    if let Some(dup) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(ApiAuthError::DuplicateParameter(dup[0].clone()));
    }
    let param = |name: &'static str| {
        req.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .ok_or(ApiAuthError::MissingParameter(name))
    };

    if param("auth_key")? != key {
        return Err(ApiAuthError::WrongKey);
    }
    let raw = param("auth_timestamp")?;
    let timestamp: u64 = raw.parse().map_err(|_| ApiAuthError::BadTimestamp(raw.to_owned()))?;
    if timestamp.abs_diff(now) > window {
        return Err(ApiAuthError::StaleTimestamp { timestamp, now, window });
    }
    let version = param("auth_version")?;
    if version != AUTH_VERSION {
        return Err(ApiAuthError::UnsupportedVersion(version.to_owned()));
    }
    match param("body_md5") {
        Ok(given) => {
            let expected = Md5::digest(req.body);
            let matches = unhex(given).is_some_and(|given| constant_time_eq(&given, &expected));
            if !matches {
                return Err(ApiAuthError::BodyMd5Mismatch);
            }
        }
        Err(missing) if !req.body.is_empty() => return Err(missing),
        Err(_) => {}
    }
    let signature = param("auth_signature")?;
    let message = string_to_sign(req.method, req.path, req.params);
    verify_hmac_hex(secret, &message, signature).map_err(|e| match e {
        SignatureMismatch::NotHex => ApiAuthError::NotHex,
        SignatureMismatch::Bad => ApiAuthError::BadSignature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Pusher's worked example ("HTTP API reference", Pusher Channels docs:
    // "Worked authentication example").
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const BODY_MD5: &str = "ec365a775a4cd0599faeb73354201b6f";
    const TIMESTAMP: u64 = 1_353_088_179;
    const SIGNATURE: &str = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    fn example_params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", BODY_MD5),
            ("auth_signature", SIGNATURE),
        ]
    }

    fn check(params: &[(&str, &str)], body: &str, now: u64) -> Result<(), ApiAuthError> {
        let req = ApiRequest { method: "POST", path: "/apps/3/events", params, body: body.as_bytes() };
        verify_request(KEY, SECRET, &req, now, DEFAULT_TIMESTAMP_WINDOW_SECS)
    }

    #[test]
    fn pusher_http_api_example() {
        assert_eq!(body_md5(BODY.as_bytes()), BODY_MD5);
        let params = example_params();
        assert_eq!(
            string_to_sign("POST", "/apps/3/events", &params),
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(sign_request(SECRET, "POST", "/apps/3/events", &params), SIGNATURE);
        assert_eq!(check(&params, BODY, TIMESTAMP), Ok(()));
        // Order, key case and method case do not matter.
        let mut shuffled: Vec<_> = params.iter().rev().copied().collect();
        shuffled[0].0 = "AUTH_Signature";
        let req = ApiRequest { method: "post", path: "/apps/3/events", params: &shuffled, body: BODY.as_bytes() };
        assert_eq!(verify_request(KEY, SECRET, &req, TIMESTAMP + 600, 600), Ok(()));
    }

    #[test]
    fn values_are_signed_as_received() {
        let params = [("name", "Something else"), ("auth_key", "foo"), ("B", "2"), ("a", "1")];
        assert_eq!(string_to_sign("get", "/x", &params), "GET\n/x\na=1&auth_key=foo&b=2&name=Something else");
    }

    #[test]
    fn a_request_without_body_needs_no_body_md5() {
        let mut params = vec![("auth_key", KEY), ("auth_timestamp", "1353088179"), ("auth_version", "1.0")];
        let sig = sign_request(SECRET, "GET", "/apps/3/channels", &params);
        params.push(("auth_signature", &sig));
        let req = ApiRequest { method: "GET", path: "/apps/3/channels", params: &params, body: b"" };
        assert_eq!(verify_request(KEY, SECRET, &req, TIMESTAMP, 600), Ok(()));
    }

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        example_params().into_iter().filter(|(k, _)| *k != name).collect()
    }

    fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        example_params().into_iter().map(|(k, v)| if k == name { (k, value) } else { (k, v) }).collect()
    }

    #[test]
    fn bad_requests_are_typed_errors() {
        use ApiAuthError::*;
        for name in ["auth_key", "auth_timestamp", "auth_version", "body_md5", "auth_signature"] {
            assert_eq!(check(&without(name), BODY, TIMESTAMP), Err(MissingParameter(name)), "{name}");
        }
        assert_eq!(check(&[], BODY, TIMESTAMP), Err(MissingParameter("auth_key")));
        assert_eq!(check(&with("auth_key", "other"), BODY, TIMESTAMP), Err(WrongKey));
        assert_eq!(check(&with("auth_timestamp", "soon"), BODY, TIMESTAMP), Err(BadTimestamp("soon".into())));
        assert_eq!(check(&with("auth_timestamp", "-1"), BODY, TIMESTAMP), Err(BadTimestamp("-1".into())));
        assert_eq!(
            check(&example_params(), BODY, TIMESTAMP + 601),
            Err(StaleTimestamp { timestamp: TIMESTAMP, now: TIMESTAMP + 601, window: 600 })
        );
        assert!(matches!(check(&example_params(), BODY, TIMESTAMP - 601), Err(StaleTimestamp { .. })));
        assert_eq!(check(&with("auth_version", "2.0"), BODY, TIMESTAMP), Err(UnsupportedVersion("2.0".into())));
        assert_eq!(check(&example_params(), "{}", TIMESTAMP), Err(BodyMd5Mismatch));
        assert_eq!(check(&with("body_md5", "not-hex"), BODY, TIMESTAMP), Err(BodyMd5Mismatch));
        assert_eq!(check(&with("body_md5", "ec365a"), BODY, TIMESTAMP), Err(BodyMd5Mismatch));
        assert_eq!(check(&with("auth_signature", "zz"), BODY, TIMESTAMP), Err(NotHex));
        assert_eq!(check(&with("auth_signature", &SIGNATURE[..63]), BODY, TIMESTAMP), Err(NotHex));
        let wrong = "0a454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        assert_eq!(check(&with("auth_signature", wrong), BODY, TIMESTAMP), Err(BadSignature));
        // A parameter the signature did not cover.
        let mut extra = example_params();
        extra.push(("socket_id", "1.1"));
        assert_eq!(check(&extra, BODY, TIMESTAMP), Err(BadSignature));
        // Another path.
        let req =
            ApiRequest { method: "POST", path: "/apps/4/events", params: &example_params(), body: BODY.as_bytes() };
        assert_eq!(verify_request(KEY, SECRET, &req, TIMESTAMP, 600), Err(BadSignature));
        // Duplicates are ambiguous.
        let mut dup = example_params();
        dup.push(("Auth_Key", KEY));
        assert_eq!(check(&dup, BODY, TIMESTAMP), Err(DuplicateParameter("auth_key".into())));
    }

    proptest! {
        #[test]
        fn verify_never_panics(
            params in proptest::collection::vec(("[a-z_A-Z]{0,16}", any::<String>()), 0..8),
            body in any::<Vec<u8>>(),
            now in any::<u64>(),
        ) {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let req = ApiRequest { method: "POST", path: "/apps/1/events", params: &params, body: &body };
            let _ = verify_request(KEY, SECRET, &req, now, 600);
        }

        #[test]
        fn what_is_signed_verifies(name in "[a-z]{1,8}", value in any::<String>(), body in any::<Vec<u8>>()) {
            let md5 = body_md5(&body);
            let mut params = vec![
                ("auth_key", KEY), ("auth_timestamp", "1353088179"), ("auth_version", "1.0"),
                ("body_md5", md5.as_str()), (name.as_str(), value.as_str()),
            ];
            let mut keys: Vec<&str> = params.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            keys.dedup();
            prop_assume!(keys.len() == params.len() && name != "auth_signature");
            let sig = sign_request(SECRET, "POST", "/apps/1/events", &params);
            params.push(("auth_signature", &sig));
            let req = ApiRequest { method: "POST", path: "/apps/1/events", params: &params, body: &body };
            prop_assert_eq!(verify_request(KEY, SECRET, &req, TIMESTAMP, 600), Ok(()));
        }
    }
}
