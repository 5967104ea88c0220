//! The `apps` table: apps (tenants), their limits, Origin allowlists and
//! Pusher settings, with the Pusher app id unique across apps (an index).
//!
//! Deleting an app takes its rows in `api_keys` and `namespaces` with it and
//! leaves a tombstone in `deleted_apps`, in one transaction; disabling one
//! marks it and leaves a tombstone marked `disabled` (so edges refuse its
//! older tokens and say why), also in one transaction.

use herald_proto::AppId;
use sqlx::Row;

use super::{Store, StoreError, parse_app_id, to_u32};
use crate::pusher_app_id::PusherAppId;

/// Per-app limits; `None` means the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// Most concurrent connections of the app across edges.
    pub max_connections: Option<u32>,
    /// Largest message payload, in bytes.
    pub max_message_bytes: Option<u32>,
    /// Publishes per second through the API (per control-plane replica).
    pub publish_rate_per_sec: Option<u32>,
    /// Quota: messages published per UTC day (`None`: no quota).
    pub quota_messages_per_day: Option<u64>,
    /// Quota: messages published per UTC calendar month.
    pub quota_messages_per_month: Option<u64>,
    /// Quota: concurrent connections across edges.
    pub quota_connections: Option<u32>,
}

/// `data` bytes a Pusher event may carry unless an app says otherwise
/// (Pusher's own limit).
pub const DEFAULT_PUSHER_MAX_EVENT_BYTES: u32 = 10_240;

/// Events in one Pusher `batch_events` request unless an app says otherwise
/// (Pusher's own limit).
pub const DEFAULT_PUSHER_BATCH_MAX: u32 = 10;

/// How an app speaks Pusher's protocol: clients on edges (Channels protocol
/// 7) and backends on the control plane's Pusher HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PusherSettings {
    /// Pusher mode is on: edges accept Pusher clients at `/app/{app id}` and
    /// the Pusher HTTP API serves the app.
    pub enabled: bool,
    /// Clients may send `client-` events on private and presence channels.
    pub client_events: bool,
    /// Most users in one presence channel; 0: the edge's default.
    pub presence_max_members: u32,
    /// Largest event `data`, in bytes.
    pub max_event_bytes: u32,
    /// Subscribers receive `pusher_internal:subscription_count` events.
    pub subscription_count: bool,
    /// Client events one connection may send per second; 0: the edge's
    /// default.
    pub client_event_rate: u32,
    /// Most events in one `batch_events` request.
    pub batch_max: u32,
    /// The app's Pusher app id (in `/apps/{app_id}/…` of the Pusher HTTP
    /// API); unique across apps. Set whenever Pusher mode is on.
    pub app_id: Option<PusherAppId>,
}

impl Default for PusherSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            client_events: false,
            presence_max_members: 0,
            max_event_bytes: DEFAULT_PUSHER_MAX_EVENT_BYTES,
            subscription_count: false,
            client_event_rate: 0,
            batch_max: DEFAULT_PUSHER_BATCH_MAX,
            app_id: None,
        }
    }
}

/// An app (tenant).
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Display name.
    pub name: String,
    /// Limits set for this app.
    pub limits: LimitOverrides,
    /// Exact `Origin` values allowed to connect; empty allows every origin.
    pub allowed_origins: Vec<String>,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Pusher mode and its settings.
    pub pusher: PusherSettings,
    /// Set while an administrator has the app disabled.
    pub disabled: Option<Disabled>,
}

/// Why and since when an app is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    /// Since when, Unix ms.
    pub at_ms: i64,
    /// The administrator's reason (may be empty).
    pub reason: String,
}

macro_rules! app_from_row {
    ($row:expr) => {{
        let row = $row;
        let id: String = row.try_get("id")?;
        let origins: String = row.try_get("allowed_origins")?;
        App {
            id: parse_app_id(&id)?,
            name: row.try_get("name")?,
            limits: LimitOverrides {
                max_connections: to_u32(row.try_get("max_connections")?),
                max_message_bytes: to_u32(row.try_get("max_message_bytes")?),
                publish_rate_per_sec: to_u32(row.try_get("publish_rate_per_sec")?),
                quota_messages_per_day: to_u64(row.try_get("quota_messages_per_day")?),
                quota_messages_per_month: to_u64(row.try_get("quota_messages_per_month")?),
                quota_connections: to_u32(row.try_get("quota_connections")?),
            },
            allowed_origins: serde_json::from_str(&origins)
                .map_err(|e| StoreError::Corrupt(format!("allowed_origins of app {id}: {e}")))?,
            created_at_ms: row.try_get("created_at_ms")?,
            pusher: PusherSettings {
                enabled: row.try_get("pusher_enabled")?,
                client_events: row.try_get("pusher_client_events")?,
                presence_max_members: stored_u32(
                    &id,
                    "pusher_presence_max_members",
                    row.try_get("pusher_presence_max_members")?,
                )?,
                max_event_bytes: stored_u32(&id, "pusher_max_event_bytes", row.try_get("pusher_max_event_bytes")?)?,
                subscription_count: row.try_get("pusher_subscription_count")?,
                client_event_rate: stored_u32(
                    &id,
                    "pusher_client_event_rate",
                    row.try_get("pusher_client_event_rate")?,
                )?,
                batch_max: stored_u32(&id, "pusher_batch_max", row.try_get("pusher_batch_max")?)?,
                app_id: stored_pusher_app_id(&id, row.try_get("pusher_app_id")?)?,
            },
            disabled: row
                .try_get::<Option<i64>, _>("disabled_at_ms")?
                .map(|at_ms| Ok::<_, sqlx::Error>(Disabled { at_ms, reason: row.try_get("disabled_reason")? }))
                .transpose()?,
        }
    }};
}

macro_rules! app_columns {
    () => {
        "id, name, max_connections, max_message_bytes, publish_rate_per_sec, allowed_origins, created_at_ms, \
         pusher_enabled, pusher_client_events, pusher_presence_max_members, pusher_max_event_bytes, \
         pusher_subscription_count, pusher_client_event_rate, pusher_batch_max, pusher_app_id, \
         quota_messages_per_day, quota_messages_per_month, quota_connections, disabled_at_ms, disabled_reason"
    };
}

/// Writes an app's tombstone (`$1` app, `$2` when, `$3` disabled rather
/// than deleted); a later one replaces an earlier one.
const TOMBSTONE: &str = "INSERT INTO deleted_apps (app_id, deleted_at_ms, disabled) VALUES ($1, $2, $3) \
                         ON CONFLICT (app_id) DO UPDATE SET deleted_at_ms = $2, disabled = $3";

/// Forgets the tombstones older than `$1` (their tokens have expired).
const FORGET_TOMBSTONES: &str = "DELETE FROM deleted_apps WHERE deleted_at_ms < $1";

/// A non-null `BIGINT` setting as `u32`.
fn stored_u32(app: &str, column: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column} {v} of app {app}")))
}

/// A stored Pusher app id.
fn stored_pusher_app_id(app: &str, v: Option<String>) -> Result<Option<PusherAppId>, StoreError> {
    v.map(|v| PusherAppId::parse(&v).map_err(|e| StoreError::Corrupt(format!("pusher_app_id of app {app}: {e}"))))
        .transpose()
}

/// A quota as stored (capped at `i64::MAX`).
fn quota_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// A nullable `BIGINT` quota as `u64`; negative values read as unset.
fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn origins_json(origins: &[String]) -> String {
    serde_json::to_string(origins).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// Inserts a new app.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the id or the Pusher app id is taken
    /// (see [`StoreError::is_pusher_app_id_conflict`]).
    pub async fn insert_app(&self, app: &App) -> Result<(), StoreError> {
        let sql = concat!(
            "INSERT INTO apps (",
            app_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        );
        with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(app.id.as_str())
                .bind(&app.name)
                .bind(app.limits.max_connections.map(i64::from))
                .bind(app.limits.max_message_bytes.map(i64::from))
                .bind(app.limits.publish_rate_per_sec.map(i64::from))
                .bind(origins_json(&app.allowed_origins))
                .bind(app.created_at_ms)
                .bind(app.pusher.enabled)
                .bind(app.pusher.client_events)
                .bind(i64::from(app.pusher.presence_max_members))
                .bind(i64::from(app.pusher.max_event_bytes))
                .bind(app.pusher.subscription_count)
                .bind(i64::from(app.pusher.client_event_rate))
                .bind(i64::from(app.pusher.batch_max))
                .bind(app.pusher.app_id.map(|id| id.to_string()))
                .bind(quota_i64(app.limits.quota_messages_per_day))
                .bind(quota_i64(app.limits.quota_messages_per_month))
                .bind(app.limits.quota_connections.map(i64::from))
                .bind(app.disabled.as_ref().map(|d| d.at_ms))
                .bind(app.disabled.as_ref().map_or("", |d| d.reason.as_str()))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Replaces an app's name, limits, Origin allowlist and Pusher settings
    /// (not whether it is disabled: [`Self::set_app_disabled`]). Returns
    /// false when no such app exists.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Conflict`] when the Pusher app id is
    /// another app's.
    pub async fn update_app(&self, app: &App) -> Result<bool, StoreError> {
        let sql = "UPDATE apps SET name = $2, max_connections = $3, max_message_bytes = $4, \
                   publish_rate_per_sec = $5, allowed_origins = $6, pusher_enabled = $7, pusher_client_events = $8, \
                   pusher_presence_max_members = $9, pusher_max_event_bytes = $10, pusher_subscription_count = $11, \
                   pusher_client_event_rate = $12, pusher_batch_max = $13, pusher_app_id = $14, \
                   quota_messages_per_day = $15, quota_messages_per_month = $16, quota_connections = $17 WHERE id = $1";
        let n = with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(app.id.as_str())
                .bind(&app.name)
                .bind(app.limits.max_connections.map(i64::from))
                .bind(app.limits.max_message_bytes.map(i64::from))
                .bind(app.limits.publish_rate_per_sec.map(i64::from))
                .bind(origins_json(&app.allowed_origins))
                .bind(app.pusher.enabled)
                .bind(app.pusher.client_events)
                .bind(i64::from(app.pusher.presence_max_members))
                .bind(i64::from(app.pusher.max_event_bytes))
                .bind(app.pusher.subscription_count)
                .bind(i64::from(app.pusher.client_event_rate))
                .bind(i64::from(app.pusher.batch_max))
                .bind(app.pusher.app_id.map(|id| id.to_string()))
                .bind(quota_i64(app.limits.quota_messages_per_day))
                .bind(quota_i64(app.limits.quota_messages_per_month))
                .bind(app.limits.quota_connections.map(i64::from))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Every app, by id.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let sql = concat!("SELECT ", app_columns!(), " FROM apps ORDER BY id");
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut apps = Vec::with_capacity(rows.len());
            for row in &rows {
                apps.push(app_from_row!(row));
            }
            Ok(apps)
        })
    }

    /// One app.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn get_app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        let sql = concat!("SELECT ", app_columns!(), " FROM apps WHERE id = $1");
        with_pool!(self, pool => {
            match sqlx::query(sql).bind(id.as_str()).fetch_optional(pool).await? {
                Some(row) => Ok(Some(app_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// The app whose Pusher app id is `id`.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn get_app_by_pusher_id(&self, id: PusherAppId) -> Result<Option<App>, StoreError> {
        let sql = concat!("SELECT ", app_columns!(), " FROM apps WHERE pusher_app_id = $1");
        with_pool!(self, pool => {
            match sqlx::query(sql).bind(id.to_string()).fetch_optional(pool).await? {
                Some(row) => Ok(Some(app_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Sets the Pusher app id of an app that has none. Returns false when
    /// the app does not exist or has one already.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Conflict`] when another app has it.
    pub async fn set_missing_pusher_app_id(&self, app: &AppId, id: PusherAppId) -> Result<bool, StoreError> {
        let sql = "UPDATE apps SET pusher_app_id = $2 WHERE id = $1 AND pusher_app_id IS NULL";
        let n = with_pool!(self, pool => {
            sqlx::query(sql).bind(app.as_str()).bind(id.to_string()).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Deletes an app and, with it, its API keys and namespaces, and keeps
    /// when it was deleted (`now_ms`; tombstones older than
    /// `forget_before_ms` go). Returns false when no such app exists.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn delete_app(&self, id: &AppId, now_ms: i64, forget_before_ms: i64) -> Result<bool, StoreError> {
        let n = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM api_keys WHERE app_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM namespaces WHERE app_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
            let n = sqlx::query("DELETE FROM apps WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                sqlx::query(TOMBSTONE).bind(id.as_str()).bind(now_ms).bind(false).execute(&mut *tx).await?;
                sqlx::query(FORGET_TOMBSTONES)
                    .bind(forget_before_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n
        });
        Ok(n > 0)
    }

    /// Disables an app (`Some`) or enables it again (`None`). Disabling
    /// writes the app's tombstone, marked `disabled`, at `now_ms` (tokens
    /// minted before are refused while it is listed); enabling leaves the
    /// tombstone, so those tokens stay refused. Returns false when no such
    /// app exists.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn set_app_disabled(
        &self,
        id: &AppId,
        disabled: Option<&Disabled>,
        forget_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("UPDATE apps SET disabled_at_ms = $2, disabled_reason = $3 WHERE id = $1")
                .bind(id.as_str())
                .bind(disabled.map(|d| d.at_ms))
                .bind(disabled.map_or("", |d| d.reason.as_str()))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if let (true, Some(d)) = (n > 0, disabled) {
                sqlx::query(TOMBSTONE).bind(id.as_str()).bind(d.at_ms).bind(true).execute(&mut *tx).await?;
                sqlx::query(FORGET_TOMBSTONES)
                    .bind(forget_before_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n
        });
        Ok(n > 0)
    }
}
