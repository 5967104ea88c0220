//! Form posts: the body read whole within `max_body_size`,
//! `min_body_rate_per_sec` and `body_read_timeout` (413 and 408 pages past
//! them; see `crate::body`), only
//! `application/x-www-form-urlencoded` (415 otherwise), parsed into
//! name/value pairs. (The CSRF check of every state-changing form is
//! [`Session::read_form`](super::session::Session::read_form).)

use axum::extract::Request;
use axum::http::{StatusCode, header};

use super::Failure;
use crate::core::Core;

/// A posted form's fields, in order.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Reads and parses the body of `request`.
    ///
    /// # Errors
    ///
    /// [`Failure`] pages for a body too large or too slow, or not a form.
    pub async fn read(request: Request, core: &Core) -> Result<Self, Failure> {
        let kind = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !kind.split(';').next().is_some_and(|k| k.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Not a form",
                "The console takes application/x-www-form-urlencoded forms.",
            ));
        }
        let limit = core.config.max_body_size.as_usize();
        let bytes = match crate::body::read(request, &core.config, &core.connections).await {
            Ok(bytes) => bytes,
            Err(crate::body::BodyError::Slow(_)) => {
                return Err(Failure::new(StatusCode::REQUEST_TIMEOUT, "Too slow", "The form did not arrive in time."));
            }
            Err(crate::body::BodyError::Api(e)) if e.code == herald_proto::ErrorCode::TooLarge => {
                return Err(Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Too large",
                    format!("The form is over {limit} bytes."),
                ));
            }
            Err(crate::body::BodyError::Api(e)) => {
                return Err(Failure::new(StatusCode::BAD_REQUEST, "Bad request", e.message.into_owned()));
            }
        };
        Ok(Self(form_urlencoded::parse(&bytes).into_owned().collect()))
    }

    /// The first value of `name`, trimmed; empty when absent.
    #[must_use]
    pub fn text(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim())
    }

    /// The first value of `name` as given (not trimmed); empty when absent.
    #[must_use]
    pub fn raw(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    #[must_use]
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// Whether the checkbox `name` is ticked.
    #[must_use]
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v == "on")
    }
}

/// Errors of a form's fields, shown beside them.
#[derive(Debug, Default)]
pub struct FieldErrors(pub Vec<(&'static str, String)>);

impl FieldErrors {
    /// Records the error of `field`.
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    /// The error of `field`, if any.
    #[must_use]
    pub fn of(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }

    /// Whether there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses an optional whole number field: empty is `None`.
///
/// # Errors
///
/// A message naming the field when it is not a whole number in range.
pub fn optional_number<T: std::str::FromStr>(form: &Form, name: &str, label: &str) -> Result<Option<T>, String> {
    let v = form.text(name);
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<T>().map(Some).map_err(|_| format!("{label} must be a whole number (0 or more)"))
}

/// The form field an error message of the services is about: the last
/// part of its first `` `quoted` `` name (`pusher.batch_max` is
/// `batch_max`), renamed by `aliases`, when it is one of `fields`.
#[must_use]
pub fn field_of<'a>(message: &str, fields: &[&'a str], aliases: &[(&str, &'a str)]) -> Option<&'a str> {
    let quoted = message.split('`').nth(1)?;
    let last = quoted.rsplit('.').next().unwrap_or(quoted);
    if let Some((_, to)) = aliases.iter().find(|(from, _)| *from == last) {
        return Some(to);
    }
    fields.iter().find(|f| **f == last).copied()
}

/// A fixed confirmation text for a `?done=` key of a redirect (never the
/// query's own text).
#[must_use]
pub fn done_notice(query: &std::collections::HashMap<String, String>, texts: &[(&str, &str)]) -> String {
    query
        .get("done")
        .and_then(|k| texts.iter().find(|(key, _)| key == k))
        .map(|(_, text)| super::html::notice("ok", text))
        .unwrap_or_default()
}

impl Form {
    /// A form with these fields (to prefill a page).
    #[must_use]
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }
}
