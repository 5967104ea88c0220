//! The `apps` table: apps (tenants), their limits and Origin allowlists.
//!
//! Deleting an app takes its rows in `api_keys` and `namespaces` with it and
//! leaves a tombstone in `deleted_apps`, in one transaction.

use herald_proto::AppId;
use sqlx::Row;

use super::{Store, StoreError, parse_app_id, to_u32};

/// Per-app limits; `None` means the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// Most concurrent connections of the app across edges.
    pub max_connections: Option<u32>,
    /// Largest message payload, in bytes.
    pub max_message_bytes: Option<u32>,
    /// Publishes per second through the API (per control-plane replica).
    pub publish_rate_per_sec: Option<u32>,
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
            },
            allowed_origins: serde_json::from_str(&origins)
                .map_err(|e| StoreError::Corrupt(format!("allowed_origins of app {id}: {e}")))?,
            created_at_ms: row.try_get("created_at_ms")?,
        }
    }};
}

macro_rules! app_columns {
    () => {
        "id, name, max_connections, max_message_bytes, publish_rate_per_sec, allowed_origins, created_at_ms"
    };
}

fn origins_json(origins: &[String]) -> String {
    serde_json::to_string(origins).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// Inserts a new app.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the id is taken.
    pub async fn insert_app(&self, app: &App) -> Result<(), StoreError> {
        let sql = "INSERT INTO apps (id, name, max_connections, max_message_bytes, publish_rate_per_sec, \
                   allowed_origins, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(app.id.as_str())
                .bind(&app.name)
                .bind(app.limits.max_connections.map(i64::from))
                .bind(app.limits.max_message_bytes.map(i64::from))
                .bind(app.limits.publish_rate_per_sec.map(i64::from))
                .bind(origins_json(&app.allowed_origins))
                .bind(app.created_at_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Replaces an app's name, limits and Origin allowlist. Returns false
    /// when no such app exists.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn update_app(&self, app: &App) -> Result<bool, StoreError> {
        let sql = "UPDATE apps SET name = $2, max_connections = $3, max_message_bytes = $4, \
                   publish_rate_per_sec = $5, allowed_origins = $6 WHERE id = $1";
        let n = with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(app.id.as_str())
                .bind(&app.name)
                .bind(app.limits.max_connections.map(i64::from))
                .bind(app.limits.max_message_bytes.map(i64::from))
                .bind(app.limits.publish_rate_per_sec.map(i64::from))
                .bind(origins_json(&app.allowed_origins))
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

    /// Deletes an app and, with it, its API keys and namespaces, and keeps
    /// when it was deleted (`now_ms`; tombstones older than
    /// `forget_before_ms` go). Returns false when no such app exists.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn delete_app(&self, id: &AppId, now_ms: i64, forget_before_ms: i64) -> Result<bool, StoreError> {
        let tombstone = "INSERT INTO deleted_apps (app_id, deleted_at_ms) VALUES ($1, $2) \
                         ON CONFLICT (app_id) DO UPDATE SET deleted_at_ms = $2";
        let n = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM api_keys WHERE app_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM namespaces WHERE app_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
            let n = sqlx::query("DELETE FROM apps WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                sqlx::query(tombstone).bind(id.as_str()).bind(now_ms).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM deleted_apps WHERE deleted_at_ms < $1")
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
