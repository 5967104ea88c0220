//! The exit codes of `herald`, and how an error is given one (README,
//! "Exit codes"):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure |
//! | 2 | usage: unknown command or flag, missing argument (clap) |
//! | 3 | configuration: a bad file, key or value |
//! | 4 | unreachable: the control plane, an edge, NATS or the database could not be reached |
//! | 5 | refused: the credentials were refused (401, 403, a refused token) |
//!
//! An error is classified by what its chain holds: a [`Failure`] a command
//! attached, or the errors of the SDK, tonic and the configuration.

use std::fmt;

use herald_sdk::RestError;

/// What kind of failure ended a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A bad configuration.
    Config,
    /// A service could not be reached.
    Unreachable,
    /// The credentials were refused.
    Refused,
}

impl Failure {
    /// The process exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Config => 3,
            Self::Unreachable => 4,
            Self::Refused => 5,
        }
    }

    /// The failure an error's chain shows, if any.
    #[must_use]
    pub fn of(error: &anyhow::Error) -> Option<Self> {
        // Attached with `.context(Failure::…)`: found through the contexts.
        if let Some(f) = error.downcast_ref::<Self>() {
            return Some(*f);
        }
        error.chain().find_map(|cause| {
            if let Some(f) = cause.downcast_ref::<Self>() {
                return Some(*f);
            }
            if cause.is::<Unreachable>() {
                return Some(Self::Unreachable);
            }
            if cause.is::<herald_edge::config::ConfigError>() || cause.is::<herald_control_plane::ConfigError>() {
                return Some(Self::Config);
            }
            if let Some(e) = cause.downcast_ref::<RestError>() {
                return match e {
                    RestError::Transport(_) | RestError::TimedOut(_) => Some(Self::Unreachable),
                    RestError::Api { status: 401 | 403, .. } => Some(Self::Refused),
                    _ => None,
                };
            }
            if let Some(status) = cause.downcast_ref::<tonic::Status>() {
                return match status.code() {
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Some(Self::Refused),
                    tonic::Code::Unavailable => Some(Self::Unreachable),
                    _ => None,
                };
            }
            if cause.is::<tonic::transport::Error>() {
                return Some(Self::Unreachable);
            }
            if let Some(e) = cause.downcast_ref::<herald_sdk::Error>() {
                return match e {
                    herald_sdk::Error::Connect(_) | herald_sdk::Error::GaveUp { .. } => Some(Self::Unreachable),
                    _ => None,
                };
            }
            None
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "invalid configuration",
            Self::Unreachable => "unreachable",
            Self::Refused => "refused",
        })
    }
}

impl std::error::Error for Failure {}

/// A service that could not be reached, said so that the user knows what
/// to do.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach {what} at {url} ({reason}) — is it running (for a try, `herald dev`)? Give its address with {flag}"
)]
pub struct Unreachable {
    /// What it is: "the control plane", "the edge".
    pub what: &'static str,
    /// Where it was looked for.
    pub url: String,
    /// What failed, in a few words.
    pub reason: String,
    /// The flag (and variable) that sets `url`.
    pub flag: &'static str,
}

/// `error`, retold as [`Unreachable`] when it is a failure to reach the
/// control plane at `url`; otherwise unchanged.
#[must_use]
pub fn explain_api_error(error: anyhow::Error, url: &str) -> anyhow::Error {
    if Failure::of(&error) != Some(Failure::Unreachable) || error.is::<Unreachable>() {
        return error;
    }
    let reason = reason_of(&error);
    anyhow::Error::new(Unreachable {
        what: "the control plane",
        url: url.to_owned(),
        reason,
        flag: "--api-url (HERALD_API_URL)",
    })
}

/// What failed, in a few words: the innermost cause's text (see
/// [`short_reason`]).
#[must_use]
pub fn reason_of(error: &anyhow::Error) -> String {
    short_reason(&error.root_cause().to_string())
}

/// The last part of an error text (after its last `: `), lower-cased and
/// without its OS error number: "connection refused".
#[must_use]
pub fn short_reason(text: &str) -> String {
    let last = text.rsplit(": ").next().unwrap_or(text);
    let last = last.split(" (os error").next().unwrap_or(last).trim();
    let mut chars = last.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "no answer".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_from_the_chain() {
        let refused = anyhow::Error::new(RestError::Api {
            status: 401,
            code: herald_proto::ErrorCode::Unauthorized,
            message: "bad key".into(),
            retry_after: None,
        });
        assert_eq!(Failure::of(&refused), Some(Failure::Refused));
        let down = anyhow::Error::new(RestError::Transport(
            "http://127.0.0.1:9/v1/x: client error (Connect): tcp connect error: Connection refused (os error 111)"
                .into(),
        ))
        .context("publishing");
        assert_eq!(Failure::of(&down), Some(Failure::Unreachable));
        let told = format!("{}", explain_api_error(down, "http://127.0.0.1:9"));
        assert_eq!(
            told,
            "cannot reach the control plane at http://127.0.0.1:9 (connection refused) — is it running (for a try, \
             `herald dev`)? Give its address with --api-url (HERALD_API_URL)"
        );
        assert_eq!(Failure::of(&anyhow::anyhow!("other")), None);
        assert_eq!(Failure::of(&anyhow::Error::new(Failure::Config).context("x")), Some(Failure::Config));
    }
}
