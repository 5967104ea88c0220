//! The `webhooks` table: the webhook endpoints of apps.
//!
//! An endpoint's signing secret (Herald format) is stored as it is: the
//! signature is an HMAC keyed with it. It is shown once, when created or
//! rotated, and never listed.
//!
//! Creating one checks the app's count in the same statement; disabling one
//! drops what its outbox held, counted in `dropped`, in one transaction.

use std::fmt;

use herald_proto::AppId;
use herald_proto::webhook::{EventKind, Format};
use sqlx::Row;

use super::{Store, StoreError, parse_app_id};

/// Which channels an endpoint hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelFilter {
    /// Channels whose name starts with the text.
    Prefix(String),
    /// Channels of the namespace (`ns:…`).
    Namespace(herald_proto::NamespaceName),
}

impl ChannelFilter {
    /// Whether `channel` passes the filter.
    #[must_use]
    pub fn matches(&self, channel: &str) -> bool {
        match self {
            Self::Prefix(p) => channel.starts_with(p.as_str()),
            Self::Namespace(ns) => {
                channel.split_once(':').is_some_and(|(head, rest)| head == ns.as_str() && !rest.is_empty())
            }
        }
    }

    /// The filter's kind and value as stored.
    #[must_use]
    pub fn to_parts(&self) -> (&'static str, &str) {
        match self {
            Self::Prefix(p) => ("prefix", p.as_str()),
            Self::Namespace(ns) => ("namespace", ns.as_str()),
        }
    }
}

/// Where an endpoint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookStatus {
    /// Delivering; no failure since the last success.
    Active,
    /// Its last attempts failed (`status_reason` says how); still tried.
    Failing,
    /// Not delivered to (by an operator, or after failing for
    /// `webhook_disable_after`); nothing is queued for it.
    Disabled,
}

impl WebhookStatus {
    /// The status's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Failing => "failing",
            Self::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(Self::Active),
            "failing" => Ok(Self::Failing),
            "disabled" => Ok(Self::Disabled),
            other => Err(StoreError::Corrupt(format!("webhook status {other:?}"))),
        }
    }
}

/// A webhook endpoint of an app.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    /// `wh_` and 16 characters of `[a-z0-9]`.
    pub id: String,
    /// The app.
    pub app_id: AppId,
    /// Where events are POSTed.
    pub url: String,
    /// The kinds it wants, sorted, without duplicates.
    pub events: Vec<EventKind>,
    /// Body format and signature.
    pub format: Format,
    /// Which channels; `None` for every channel.
    pub filter: Option<ChannelFilter>,
    /// The Herald format's signing secret.
    pub secret: String,
    /// After a rotation: the previous secret and until when (Unix ms)
    /// requests are also signed with it.
    pub previous_secret: Option<(String, i64)>,
    /// Where it stands, and why (for failing and disabled).
    pub status: WebhookStatus,
    /// Why it is failing or disabled.
    pub status_reason: Option<String>,
    /// Since when it fails without a success, Unix ms.
    pub failing_since_ms: Option<i64>,
    /// Events dropped for it (outbox full, or pending when disabled).
    pub dropped: i64,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
}

impl Webhook {
    /// Whether it wants events of `kind` on `channel`.
    #[must_use]
    pub fn wants(&self, kind: EventKind, channel: &str) -> bool {
        self.status != WebhookStatus::Disabled
            && self.events.contains(&kind)
            && self.filter.as_ref().is_none_or(|f| f.matches(channel))
    }

    /// Until when (Unix ms) requests are also signed with the previous
    /// secret, if that is still after `now_ms`.
    #[must_use]
    pub fn previous_secret_until(&self, now_ms: i64) -> Option<i64> {
        self.previous_secret.as_ref().map(|(_, until)| *until).filter(|u| *u > now_ms)
    }

    /// The secrets a Herald-format request is signed with at `now_ms`: the
    /// current one, and the previous one during a rotation's overlap.
    #[must_use]
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some((previous, until)) = &self.previous_secret
            && *until > now_ms
        {
            secrets.push(previous.as_str());
        }
        secrets
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("format", &self.format)
            .field("filter", &self.filter)
            .field("status", &self.status)
            .field("status_reason", &self.status_reason)
            .finish_non_exhaustive()
    }
}

/// The reason an endpoint disabled through the API gives.
pub const DISABLED_BY_OPERATOR: &str = "disabled by an operator";

/// What [`Store::update_webhook`] changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookChange {
    /// A new URL.
    pub url: Option<String>,
    /// New kinds (sorted, without duplicates).
    pub events: Option<Vec<EventKind>>,
    /// A new format.
    pub format: Option<Format>,
    /// A new filter; `Some(None)` removes it (every channel).
    pub filter: Option<Option<ChannelFilter>>,
    /// `Some(true)` turns a disabled endpoint on again (active, with no
    /// reason and no failure); `Some(false)` disables it
    /// ([`DISABLED_BY_OPERATOR`]) and drops its pending deliveries. An
    /// endpoint already in the state asked for stays as it is.
    pub enabled: Option<bool>,
}

/// Reads a row of [`webhook_columns!`] into a [`Webhook`].
macro_rules! webhook_from_row {
    ($row:expr) => {{
        let row = $row;
        let id: String = row.try_get("id")?;
        let app_id: String = row.try_get("app_id")?;
        let events: String = row.try_get("events")?;
        let format: String = row.try_get("format")?;
        let filter_kind: Option<String> = row.try_get("filter_kind")?;
        let filter_value: Option<String> = row.try_get("filter_value")?;
        let status: String = row.try_get("status")?;
        let previous: Option<String> = row.try_get("previous_secret")?;
        let previous_until: Option<i64> = row.try_get("previous_secret_until_ms")?;
        Webhook {
            app_id: parse_app_id(&app_id)?,
            url: row.try_get("url")?,
            events: parse_events(&id, &events)?,
            format: format.parse().map_err(|e| StoreError::Corrupt(format!("webhook {id}: {e}")))?,
            filter: parse_filter(&id, filter_kind.as_deref(), filter_value)?,
            secret: row.try_get("secret")?,
            previous_secret: previous.zip(previous_until),
            status: WebhookStatus::parse(&status)?,
            status_reason: row.try_get("status_reason")?,
            failing_since_ms: row.try_get("failing_since_ms")?,
            dropped: row.try_get("dropped")?,
            created_at_ms: row.try_get("created_at_ms")?,
            updated_at_ms: row.try_get("updated_at_ms")?,
            id,
        }
    }};
}

macro_rules! webhook_columns {
    () => {
        "id, app_id, url, events, format, filter_kind, filter_value, secret, previous_secret, \
         previous_secret_until_ms, status, status_reason, failing_since_ms, dropped, created_at_ms, updated_at_ms"
    };
}

fn parse_events(id: &str, json: &str) -> Result<Vec<EventKind>, StoreError> {
    let names: Vec<String> =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("events of webhook {id}: {e}")))?;
    names.iter().map(|n| n.parse().map_err(|e| StoreError::Corrupt(format!("webhook {id}: {e}")))).collect()
}

fn parse_filter(id: &str, kind: Option<&str>, value: Option<String>) -> Result<Option<ChannelFilter>, StoreError> {
    match (kind, value) {
        (None, _) => Ok(None),
        (Some("prefix"), Some(p)) => Ok(Some(ChannelFilter::Prefix(p))),
        (Some("namespace"), Some(ns)) => herald_proto::NamespaceName::new(&ns)
            .map(|n| Some(ChannelFilter::Namespace(n)))
            .map_err(|e| StoreError::Corrupt(format!("filter of webhook {id}: {e}"))),
        (Some(other), _) => Err(StoreError::Corrupt(format!("filter of webhook {id}: {other:?}"))),
    }
}

/// The stored form of an event list: a JSON array of names.
#[must_use]
pub fn events_json(events: &[EventKind]) -> String {
    let names: Vec<&str> = events.iter().map(|k| k.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// Inserts a new endpoint unless its app has `max_per_app` already (the
    /// count is taken in the same statement). Returns false when it was not
    /// inserted for that reason.
    ///
    /// # Errors
    ///
    /// [`StoreError::Missing`] when the app does not exist,
    /// [`StoreError::Conflict`] when the id is taken, database errors.
    pub async fn insert_webhook(&self, hook: &Webhook, max_per_app: u64) -> Result<bool, StoreError> {
        let sql = concat!(
            "INSERT INTO webhooks (",
            webhook_columns!(),
            ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 \
             WHERE (SELECT COUNT(*) FROM webhooks WHERE app_id = $2) < $17"
        );
        let (filter_kind, filter_value) = hook.filter.as_ref().map(ChannelFilter::to_parts).unzip();
        let (previous, previous_until) = hook.previous_secret.clone().unzip();
        let max = i64::try_from(max_per_app).unwrap_or(i64::MAX);
        let n = with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(&hook.id)
                .bind(hook.app_id.as_str())
                .bind(&hook.url)
                .bind(events_json(&hook.events))
                .bind(hook.format.as_str())
                .bind(filter_kind)
                .bind(filter_value)
                .bind(&hook.secret)
                .bind(previous)
                .bind(previous_until)
                .bind(hook.status.as_str())
                .bind(hook.status_reason.as_deref())
                .bind(hook.failing_since_ms)
                .bind(hook.dropped)
                .bind(hook.created_at_ms)
                .bind(hook.updated_at_ms)
                .bind(max)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Changes an endpoint at `now_ms` (see [`WebhookChange`]); disabling
    /// it deletes its rows in `webhook_outbox` and adds their number to
    /// `dropped`, in one transaction. Returns the endpoint as stored, or
    /// `None` when the app has no such endpoint.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn update_webhook(
        &self,
        app: &AppId,
        id: &str,
        change: &WebhookChange,
        now_ms: i64,
    ) -> Result<Option<Webhook>, StoreError> {
        // Every right-hand side reads the row as it was before the
        // statement; PostgreSQL re-reads it after taking the row lock, so a
        // concurrent status change is not overwritten with a stale value.
        let sql = concat!(
            "UPDATE webhooks SET url = COALESCE($3, url), events = COALESCE($4, events), \
             format = COALESCE($5, format), \
             filter_kind = CASE WHEN $6 THEN $7 ELSE filter_kind END, \
             filter_value = CASE WHEN $6 THEN $8 ELSE filter_value END, \
             status = CASE WHEN $9 AND status = 'disabled' THEN 'active' \
                           WHEN $10 THEN 'disabled' ELSE status END, \
             status_reason = CASE WHEN $9 AND status = 'disabled' THEN NULL \
                                  WHEN $10 AND status <> 'disabled' THEN $11 ELSE status_reason END, \
             failing_since_ms = CASE WHEN ($9 AND status = 'disabled') OR $10 THEN NULL \
                                     ELSE failing_since_ms END, \
             updated_at_ms = $12 \
             WHERE app_id = $1 AND id = $2 RETURNING ",
            webhook_columns!()
        );
        let drop_pending = "DELETE FROM webhook_outbox WHERE webhook_id = $1";
        let count_dropped =
            concat!("UPDATE webhooks SET dropped = dropped + $2 WHERE id = $1 RETURNING ", webhook_columns!());
        let filter = change.filter.as_ref().map(|f| f.as_ref().map(ChannelFilter::to_parts));
        let (filter_kind, filter_value) = filter.flatten().unzip();
        let disable = change.enabled == Some(false);
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(sql)
                .bind(app.as_str())
                .bind(id)
                .bind(change.url.as_deref())
                .bind(change.events.as_deref().map(events_json))
                .bind(change.format.map(Format::as_str))
                .bind(filter.is_some())
                .bind(filter_kind)
                .bind(filter_value)
                .bind(change.enabled == Some(true))
                .bind(disable)
                .bind(DISABLED_BY_OPERATOR)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(mut row) = row else { return Ok(None) };
            if disable {
                let n = sqlx::query(drop_pending).bind(id).execute(&mut *tx).await?.rows_affected();
                if n > 0 {
                    let n = i64::try_from(n).unwrap_or(i64::MAX);
                    row = sqlx::query(count_dropped).bind(id).bind(n).fetch_one(&mut *tx).await?;
                }
            }
            let hook = webhook_from_row!(&row);
            tx.commit().await?;
            Ok(Some(hook))
        })
    }

    /// Gives an endpoint a new secret at `now_ms`; the current one stays
    /// valid until `previous_until_ms` (none is kept when that is not after
    /// `now_ms`). Returns the endpoint as stored, or `None` when the app has
    /// no such endpoint.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn rotate_webhook_secret(
        &self,
        app: &AppId,
        id: &str,
        secret: &str,
        previous_until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Webhook>, StoreError> {
        let sql = concat!(
            "UPDATE webhooks SET \
             previous_secret = CASE WHEN $4 > $5 THEN secret ELSE NULL END, \
             previous_secret_until_ms = CASE WHEN $4 > $5 THEN $4 ELSE NULL END, \
             secret = $3, updated_at_ms = $5 \
             WHERE app_id = $1 AND id = $2 RETURNING ",
            webhook_columns!()
        );
        with_pool!(self, pool => {
            let row = sqlx::query(sql)
                .bind(app.as_str())
                .bind(id)
                .bind(secret)
                .bind(previous_until_ms)
                .bind(now_ms)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Some(webhook_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Deletes an endpoint, and with it its pending deliveries and its log.
    /// Returns false when the app has no such endpoint.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn delete_webhook(&self, app: &AppId, id: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM webhooks WHERE app_id = $1 AND id = $2")
                .bind(app.as_str())
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// One endpoint of an app.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn get_webhook(&self, app: &AppId, id: &str) -> Result<Option<Webhook>, StoreError> {
        let sql = concat!("SELECT ", webhook_columns!(), " FROM webhooks WHERE app_id = $1 AND id = $2");
        with_pool!(self, pool => {
            match sqlx::query(sql).bind(app.as_str()).bind(id).fetch_optional(pool).await? {
                Some(row) => Ok(Some(webhook_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// The endpoints of an app, oldest first.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn list_webhooks(&self, app: &AppId) -> Result<Vec<Webhook>, StoreError> {
        let sql = concat!("SELECT ", webhook_columns!(), " FROM webhooks WHERE app_id = $1 ORDER BY created_at_ms, id");
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(app.as_str()).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(webhook_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Every endpoint that is not disabled, of every app.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn enabled_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let sql =
            concat!("SELECT ", webhook_columns!(), " FROM webhooks WHERE status <> 'disabled' ORDER BY app_id, id");
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(webhook_from_row!(row));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_prefixes_and_namespaces() {
        let p = ChannelFilter::Prefix("presence-".into());
        assert!(p.matches("presence-room"));
        assert!(!p.matches("private-room"));
        let ns = ChannelFilter::Namespace(herald_proto::NamespaceName::new("chat").expect("ns"));
        assert!(ns.matches("chat:1"));
        assert!(!ns.matches("chat"));
        assert!(!ns.matches("chatter:1"));
    }
}
