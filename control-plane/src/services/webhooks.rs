//! Webhook endpoints: create, list, read, change, delete them and rotate
//! their signing secrets (admin only), with the checks of their URLs, event
//! kinds, formats and channel filters, and the app's endpoint count.
//!
//! A URL must be an absolute `http` or `https` URL of at most
//! [`MAX_URL_BYTES`], without credentials or fragment. Unless
//! `webhook_allow_private_urls` is set, its host must be a public address, or
//! a name whose addresses (looked up for at most [`RESOLVE_TIMEOUT`]) are all
//! public: the control plane sits inside the operator's network, and an
//! endpoint must not make it call what only that network reaches (SSRF).
//! [`is_public_ip`] is the one rule; the delivery applies it again to the
//! addresses it connects to, since a name may resolve elsewhere later. A
//! name that does not resolve now is accepted for that reason.
//!
//! Every change publishes `NamespacesChanged{app}`: edges re-read the app's
//! configuration, which says which edge-seen event kinds some endpoint
//! wants.

use std::net::IpAddr;
use std::time::Duration;

use herald_bus::now_ms;
use herald_proto::webhook::{EventKind, Format};
use herald_proto::{AppId, NamespaceName};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::keys;
use crate::services::checks::{parse_app_id, require_admin};
use crate::store::{App, Attempt, ChannelFilter, StoreError, Webhook, WebhookChange, WebhookStatus};
use crate::webhook_engine::TestResult;
use crate::webhooks::address::is_public_ip;

/// Longest endpoint URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Longest channel prefix of a filter, in bytes.
pub const MAX_PREFIX_BYTES: usize = 200;

/// Longest wait for the addresses of an endpoint's host name.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a rotated-out secret still signs when the caller gives no
/// overlap, in seconds (24 h).
pub const DEFAULT_SECRET_OVERLAP_SECS: u64 = 86_400;

/// The longest overlap a secret rotation accepts, in seconds (30 days).
pub const MAX_SECRET_OVERLAP_SECS: u64 = 30 * 86_400;

/// A channel filter as a caller gives it: exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Channels whose name starts with this.
    pub prefix: Option<String>,
    /// Channels of this namespace (`<namespace>:…`).
    pub namespace: Option<String>,
}

/// A new endpoint, as a caller gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookSpec {
    /// Where events are POSTed.
    pub url: String,
    /// Event kind names; at least one.
    pub events: Vec<String>,
    /// `herald` (when `None`) or `pusher`.
    pub format: Option<String>,
    /// Which channels; every channel when `None`.
    pub filter: Option<FilterSpec>,
}

/// A change to an endpoint: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPatch {
    /// A new URL.
    pub url: Option<String>,
    /// New event kind names; at least one.
    pub events: Option<Vec<String>>,
    /// A new format.
    pub format: Option<String>,
    /// A new filter; `Some(None)` removes it (every channel).
    pub filter: Option<Option<FilterSpec>>,
    /// Turn the endpoint on again (`true`) or disable it (`false`, which
    /// drops its pending deliveries).
    pub enabled: Option<bool>,
}

impl Core {
    /// Creates a webhook endpoint of an app (admin); the answer holds its
    /// signing secret, which is shown this once.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found` (app), `bad_request` naming the field,
    /// `limit_exceeded` (`webhook_max_endpoints_per_app`), `unavailable`.
    pub async fn create_webhook(&self, who: &Principal, app: &str, spec: WebhookSpec) -> Result<Webhook, ApiError> {
        let app = self.get_app(who, app).await?;
        check_url(&spec.url, self.config.webhook_allow_private_urls).await?;
        let events = check_events(&spec.events)?;
        let format = spec.format.as_deref().map(check_format).transpose()?.unwrap_or_default();
        check_format_allowed(&app, format)?;
        let filter = spec.filter.map(check_filter).transpose()?;
        let now = now_ms();
        let hook = Webhook {
            id: keys::new_webhook_id(),
            app_id: app.id.clone(),
            url: spec.url,
            events,
            format,
            filter,
            secret: keys::new_webhook_secret(),
            previous_secret: None,
            status: WebhookStatus::Active,
            status_reason: None,
            failing_since_ms: None,
            dropped: 0,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let max = self.config.webhook_max_endpoints_per_app;
        match self.store.insert_webhook(&hook, max).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(ApiError::limit_exceeded(format!(
                    "the app has {max} webhook endpoints, the limit; delete unused ones or raise \
                     webhook_max_endpoints_per_app"
                )));
            }
            Err(StoreError::Missing(_)) => return Err(no_app(&app.id)),
            Err(e) => return Err(e.into()),
        }
        self.namespaces_changed(&app.id).await;
        self.webhooks.changed();
        tracing::info!(app = %app.id, webhook = %hook.id, format = %hook.format, "webhook endpoint created");
        Ok(hook)
    }

    /// The webhook endpoints of an app, oldest first (admin).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn list_webhooks(&self, who: &Principal, app: &str) -> Result<Vec<Webhook>, ApiError> {
        let app = self.get_app(who, app).await?;
        Ok(self.store.list_webhooks(&app.id).await?)
    }

    /// One webhook endpoint (admin).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found` (app or endpoint), `unavailable`.
    pub async fn get_webhook(&self, who: &Principal, app: &str, id: &str) -> Result<Webhook, ApiError> {
        require_admin(who)?;
        let app = parse_app_id(app)?;
        let id = parse_webhook_id(id)?;
        match self.store.get_webhook(&app, id).await? {
            Some(hook) => Ok(hook),
            None => Err(self.missing_webhook(&app, id).await),
        }
    }

    /// Changes a webhook endpoint (admin): what the patch gives changes,
    /// with the same checks as on creation. Disabling it drops its pending
    /// deliveries (counted in `dropped`); enabling a disabled one makes it
    /// active again.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found` (app or endpoint), `bad_request` naming the
    /// field, `unavailable`.
    pub async fn update_webhook(
        &self,
        who: &Principal,
        app: &str,
        id: &str,
        patch: WebhookPatch,
    ) -> Result<Webhook, ApiError> {
        let app = self.get_app(who, app).await?;
        let id = parse_webhook_id(id)?;
        if let Some(url) = &patch.url {
            check_url(url, self.config.webhook_allow_private_urls).await?;
        }
        let events = patch.events.as_deref().map(check_events).transpose()?;
        let format = patch.format.as_deref().map(check_format).transpose()?;
        if let Some(format) = format {
            check_format_allowed(&app, format)?;
        }
        let filter = match patch.filter {
            Some(Some(f)) => Some(Some(check_filter(f)?)),
            Some(None) => Some(None),
            None => None,
        };
        let change = WebhookChange { url: patch.url, events, format, filter, enabled: patch.enabled };
        let Some(hook) = self.store.update_webhook(&app.id, id, &change, now_ms()).await? else {
            return Err(self.missing_webhook(&app.id, id).await);
        };
        self.namespaces_changed(&app.id).await;
        self.webhooks.changed();
        tracing::info!(app = %app.id, webhook = %hook.id, status = hook.status.as_str(), "webhook endpoint changed");
        Ok(hook)
    }

    /// Deletes a webhook endpoint, its pending deliveries and its log
    /// (admin).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found` (app or endpoint), `unavailable`.
    pub async fn delete_webhook(&self, who: &Principal, app: &str, id: &str) -> Result<(), ApiError> {
        require_admin(who)?;
        let app = parse_app_id(app)?;
        let id = parse_webhook_id(id)?;
        if !self.store.delete_webhook(&app, id).await? {
            return Err(self.missing_webhook(&app, id).await);
        }
        self.namespaces_changed(&app).await;
        self.webhooks.changed();
        tracing::info!(app = %app, webhook = %id, "webhook endpoint deleted");
        Ok(())
    }

    /// Gives a webhook endpoint a new signing secret (admin), returned with
    /// it this once. Requests are also signed with the previous secret for
    /// `overlap_secs` ([`DEFAULT_SECRET_OVERLAP_SECS`] when `None`; 0 drops
    /// it at once), so the receiver can switch without losing a request.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found` (app or endpoint), `bad_request` (overlap
    /// too long), `unavailable`.
    pub async fn rotate_webhook_secret(
        &self,
        who: &Principal,
        app: &str,
        id: &str,
        overlap_secs: Option<u64>,
    ) -> Result<Webhook, ApiError> {
        require_admin(who)?;
        let app = parse_app_id(app)?;
        let id = parse_webhook_id(id)?;
        let overlap = overlap_secs.unwrap_or(DEFAULT_SECRET_OVERLAP_SECS);
        if overlap > MAX_SECRET_OVERLAP_SECS {
            return Err(ApiError::bad_request(format!(
                "`overlap_seconds` is {overlap}; it must be at most {MAX_SECRET_OVERLAP_SECS} (30 days)"
            )));
        }
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(overlap.saturating_mul(1000)).unwrap_or(i64::MAX));
        let secret = keys::new_webhook_secret();
        let Some(hook) = self.store.rotate_webhook_secret(&app, id, &secret, until, now).await? else {
            return Err(self.missing_webhook(&app, id).await);
        };
        self.namespaces_changed(&app).await;
        self.webhooks.changed();
        tracing::info!(app = %app, webhook = %id, overlap_secs = overlap, "webhook secret rotated");
        Ok(hook)
    }

    /// The error for an endpoint that is not there: the app's, or the
    /// endpoint's.
    /// Sends a test request to an endpoint now (admin), once, and logs it.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn test_webhook(&self, who: &Principal, app: &str, id: &str) -> Result<TestResult, ApiError> {
        let hook = self.get_webhook(who, app, id).await?;
        Ok(crate::webhook_engine::send_test(self, &hook).await?)
    }

    /// The last delivery attempts of an endpoint, newest first (admin): at
    /// most `limit` (and `webhook_log_size`).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn webhook_deliveries(
        &self,
        who: &Principal,
        app: &str,
        id: &str,
        limit: Option<u64>,
    ) -> Result<Vec<Attempt>, ApiError> {
        let hook = self.get_webhook(who, app, id).await?;
        let max = self.config.webhook_log_size;
        let limit = i64::try_from(limit.unwrap_or(max).clamp(1, max)).unwrap_or(i64::MAX);
        Ok(self.store.webhook_attempts(&hook.id, limit).await?)
    }

    async fn missing_webhook(&self, app: &AppId, id: &str) -> ApiError {
        match self.store.get_app(app).await {
            Ok(None) => no_app(app),
            Err(e) => e.into(),
            Ok(Some(_)) => ApiError::not_found(format!("app {:?} has no webhook endpoint {id:?}", app.as_str())),
        }
    }
}

fn no_app(app: &AppId) -> ApiError {
    ApiError::not_found(format!("no app {:?}", app.as_str()))
}

/// Validates a webhook endpoint id from a path or request.
///
/// # Errors
///
/// `not_found`: an id that cannot exist names no endpoint.
pub fn parse_webhook_id(id: &str) -> Result<&str, ApiError> {
    if keys::is_webhook_id(id) { Ok(id) } else { Err(ApiError::not_found("no such webhook endpoint")) }
}

/// Event kind names as stored: known kinds, sorted, without duplicates.
///
/// # Errors
///
/// `bad_request` naming `events`: empty, or an unknown name.
pub fn check_events(names: &[String]) -> Result<Vec<EventKind>, ApiError> {
    if names.is_empty() {
        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "`events` must name at least one event type (known: {})",
            known.join(", ")
        )));
    }
    let mut kinds = names
        .iter()
        .map(|n| n.parse::<EventKind>().map_err(|e| ApiError::bad_request(format!("`events`: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    kinds.sort_unstable();
    kinds.dedup();
    Ok(kinds)
}

/// A format name.
///
/// # Errors
///
/// `bad_request` naming `format`.
pub fn check_format(name: &str) -> Result<Format, ApiError> {
    name.parse().map_err(|e| ApiError::bad_request(format!("`format`: {e}")))
}

/// Pusher's format needs the app in Pusher mode: its requests are signed
/// with the app's Pusher secret and carry its Pusher key.
fn check_format_allowed(app: &App, format: Format) -> Result<(), ApiError> {
    if format == Format::Pusher && !app.pusher.enabled {
        return Err(ApiError::bad_request(format!(
            "`format` pusher needs the app in Pusher mode; enable Pusher mode first \
             (PATCH /v1/apps/{0} with {{\"pusher\": {{\"enabled\": true}}}}, or `herald apps update {0} --pusher`)",
            app.id
        )));
    }
    Ok(())
}

/// A filter as stored.
///
/// # Errors
///
/// `bad_request` naming `filter`, `filter.prefix` or `filter.namespace`.
pub fn check_filter(f: FilterSpec) -> Result<ChannelFilter, ApiError> {
    match (f.prefix, f.namespace) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("`filter` takes `prefix` or `namespace`, not both")),
        (None, None) => Err(ApiError::bad_request(
            "`filter` must hold `prefix` or `namespace` (leave it out, or null, for every channel)",
        )),
        (Some(prefix), None) => {
            if prefix.is_empty() || prefix.len() > MAX_PREFIX_BYTES {
                return Err(ApiError::bad_request(format!(
                    "`filter.prefix` is {} bytes; it must be 1-{MAX_PREFIX_BYTES}",
                    prefix.len()
                )));
            }
            herald_proto::channel::validate(&prefix).map_err(|e| {
                ApiError::bad_request(format!("`filter.prefix` must be the start of a valid channel name: {e}"))
            })?;
            Ok(ChannelFilter::Prefix(prefix))
        }
        (None, Some(ns)) => NamespaceName::new(&ns)
            .map(ChannelFilter::Namespace)
            .map_err(|e| ApiError::bad_request(format!("`filter.namespace`: {e}"))),
    }
}

// ----- URLs -----------------------------------------------------------------------

fn bad_url(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("`url` {why}"))
}

/// Checks an endpoint URL (see the module's documentation); with
/// `allow_private` false, also where its host is or resolves to.
///
/// # Errors
///
/// `bad_request` naming `url` and the broken rule.
pub async fn check_url(url: &str, allow_private: bool) -> Result<http::Uri, ApiError> {
    let uri = parse_url(url)?;
    if !allow_private {
        check_host(&uri).await?;
    }
    Ok(uri)
}

/// The rules that need no lookup.
fn parse_url(url: &str) -> Result<http::Uri, ApiError> {
    if url.is_empty() {
        return Err(bad_url("is empty; give the endpoint's absolute http:// or https:// URL"));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(bad_url(format_args!("is {} bytes; the limit is {MAX_URL_BYTES}", url.len())));
    }
    if url.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err(bad_url("holds whitespace, control or non-ASCII characters; percent-encode them"));
    }
    let scheme_ok = url
        .split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"));
    if !scheme_ok {
        return Err(bad_url("must be an absolute http:// or https:// URL"));
    }
    if url.contains('#') {
        return Err(bad_url("must not have a fragment (#…)"));
    }
    let uri: http::Uri = url.parse().map_err(|e| bad_url(format_args!("is not a valid URL: {e}")))?;
    let Some(authority) = uri.authority() else { return Err(bad_url("has no host")) };
    if authority.as_str().contains('@') {
        return Err(bad_url("must not hold credentials (user:password@)"));
    }
    if authority.host().is_empty() {
        return Err(bad_url("has no host"));
    }
    Ok(uri)
}

/// Refuses a host that is, or resolves to, an address that is not public.
async fn check_host(uri: &http::Uri) -> Result<(), ApiError> {
    let host = uri.host().unwrap_or_default();
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if is_public_ip(ip) { Ok(()) } else { Err(not_public(host, None)) };
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Err(not_public(host, None));
    }
    // `2130706433`, `0x7f.1`, `127.1`: resolvers read these as IPv4
    // addresses; no host name has a numeric last label.
    let last = name.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        return Err(bad_url(format_args!(
            "host {host:?} looks like an IPv4 address in a non-standard form; write it as a.b.c.d"
        )));
    }
    let https = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"));
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), port))).await {
        Ok(Ok(addrs)) => {
            for addr in addrs {
                if !is_public_ip(addr.ip()) {
                    return Err(not_public(host, Some(addr.ip())));
                }
            }
            Ok(())
        }
        // Checked again at delivery, against the addresses then.
        Ok(Err(e)) => {
            tracing::debug!(host = %name, error = %e, "webhook host does not resolve; accepted");
            Ok(())
        }
        Err(_) => {
            tracing::debug!(host = %name, "webhook host lookup timed out; accepted");
            Ok(())
        }
    }
}

fn not_public(host: &str, resolved: Option<IpAddr>) -> ApiError {
    let via = resolved.map(|ip| format!(" (it resolves to {ip})")).unwrap_or_default();
    bad_url(format_args!(
        "host {host}{via} is a loopback, private, link-local or reserved address; webhook endpoints must be \
         reachable on the public internet (the server setting webhook_allow_private_urls allows them)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let refused = |url: &str| parse_url(url).expect_err(url).message.to_string();
        assert!(refused("ftp://example.com/x").contains("`url`"));
        assert!(refused("javascript:alert(1)").contains("http"));
        assert!(refused("").contains("empty"));
        assert!(refused(&format!("https://example.com/{}", "a".repeat(3000))).contains("2048"));
        assert!(refused("https://user:pw@example.com/").contains("credentials"));
        assert!(refused("https://example.com/#top").contains("fragment"));
        assert!(refused("https://exa mple.com/").contains("whitespace"));
        assert!(refused("https://ex\u{e4}mple.com/").contains("non-ASCII"));
        assert!(refused("http:///path").contains("`url`"));
        let uri = parse_url("HTTPS://Hooks.Example.com:8443/in?x=1").expect("valid");
        assert_eq!((uri.host(), uri.port_u16()), (Some("Hooks.Example.com"), Some(8443)));
    }

    #[tokio::test]
    async fn hosts_must_be_public_unless_allowed() {
        for url in [
            "http://127.0.0.1/x",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://app.localhost:3000/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
        ] {
            let e = check_url(url, false).await.expect_err(url);
            assert!(e.message.contains("`url`"), "{url}: {}", e.message);
            check_url(url, true).await.expect(url);
        }
        check_url("https://8.8.8.8/hook", false).await.expect("a public address");
        check_url("https://[2606:4700:4700::1111]/hook", false).await.expect("a public IPv6 address");
    }

    #[test]
    fn events_formats_and_filters_are_checked() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let kinds = check_events(&names(&["member_added", "channel_occupied", "member_added"])).expect("valid");
        assert_eq!(kinds, vec![EventKind::ChannelOccupied, EventKind::MemberAdded]);
        assert!(check_events(&[]).expect_err("empty").message.contains("`events`"));
        assert!(check_events(&names(&["channel_exploded"])).expect_err("unknown").message.contains("`events`"));
        assert_eq!(check_format("pusher").expect("valid"), Format::Pusher);
        assert!(check_format("xml").expect_err("unknown").message.contains("`format`"));

        let prefix = |p: &str| FilterSpec { prefix: Some(p.to_owned()), namespace: None };
        assert_eq!(check_filter(prefix("presence-")).expect("valid"), ChannelFilter::Prefix("presence-".into()));
        assert!(check_filter(prefix(&"a".repeat(201))).expect_err("long").message.contains("`filter.prefix`"));
        assert!(check_filter(prefix("")).expect_err("empty").message.contains("`filter.prefix`"));
        assert!(check_filter(prefix("a*")).expect_err("bad char").message.contains("`filter.prefix`"));
        let both = FilterSpec { prefix: Some("a".into()), namespace: Some("b".into()) };
        assert!(check_filter(both).expect_err("both").message.contains("`filter`"));
        assert!(check_filter(FilterSpec::default()).expect_err("neither").message.contains("`filter`"));
        let ns = FilterSpec { prefix: None, namespace: Some("chat".into()) };
        assert!(matches!(check_filter(ns).expect("valid"), ChannelFilter::Namespace(n) if n.as_str() == "chat"));
        let bad_ns = FilterSpec { prefix: None, namespace: Some("a:b".into()) };
        assert!(check_filter(bad_ns).expect_err("bad").message.contains("`filter.namespace`"));
    }
}
