//! The `api_keys` table: API keys of apps, stored without their secrets
//! (only the SHA-256 of the secret part), and the Pusher secrets of the keys
//! that have one.
//!
//! A Pusher secret is stored in the clear, unlike the key's own secret:
//! Pusher's request and channel signatures are HMAC-SHA256 keyed with it,
//! so checking one needs the secret itself, not a hash. It is never logged
//! and never listed; it reaches edges only inside the app's Pusher settings
//! (`bus::PusherApp`), to check channel authorizations.

use std::fmt;

use herald_proto::{AppId, Capabilities, KeyId};
use sqlx::Row;

use super::{Store, StoreError, parse_app_id, parse_key_id};

/// An API key, without its secret.
#[derive(Clone, PartialEq)]
pub struct ApiKey {
    /// Its id (also embedded in the secret).
    pub id: KeyId,
    /// The app it belongs to.
    pub app_id: AppId,
    /// Display name.
    pub name: String,
    /// What it allows, and the ceiling of the tokens it mints.
    pub capabilities: Capabilities,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Revocation time, Unix ms; `None` while active.
    pub revoked_at_ms: Option<i64>,
    /// The key's Pusher secret, when it has one.
    pub pusher_secret: Option<String>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("capabilities", &self.capabilities)
            .field("created_at_ms", &self.created_at_ms)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .field("pusher", &self.pusher_secret.is_some())
            .finish_non_exhaustive()
    }
}

macro_rules! key_from_row {
    ($row:expr) => {{
        let row = $row;
        let id: String = row.try_get("id")?;
        let app_id: String = row.try_get("app_id")?;
        let caps: String = row.try_get("capabilities")?;
        ApiKey {
            id: parse_key_id(&id)?,
            app_id: parse_app_id(&app_id)?,
            name: row.try_get("name")?,
            capabilities: serde_json::from_str(&caps)
                .map_err(|e| StoreError::Corrupt(format!("capabilities of key {id}: {e}")))?,
            secret_hash: row.try_get("secret_hash")?,
            created_at_ms: row.try_get("created_at_ms")?,
            revoked_at_ms: row.try_get("revoked_at_ms")?,
            pusher_secret: row.try_get("pusher_secret")?,
        }
    }};
}

macro_rules! key_columns {
    () => {
        "id, app_id, name, capabilities, secret_hash, created_at_ms, revoked_at_ms, pusher_secret"
    };
}

fn caps_json(caps: &Capabilities) -> String {
    serde_json::to_string(caps).unwrap_or_else(|_| "{}".to_owned())
}

impl Store {
    /// Inserts a new API key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Missing`] when the app does not exist,
    /// [`StoreError::Conflict`] when the id is taken.
    pub async fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let sql = concat!("INSERT INTO api_keys (", key_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
        with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(key.id.as_str())
                .bind(key.app_id.as_str())
                .bind(&key.name)
                .bind(caps_json(&key.capabilities))
                .bind(&key.secret_hash)
                .bind(key.created_at_ms)
                .bind(key.revoked_at_ms)
                .bind(key.pusher_secret.as_deref())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// How many keys an app has, revoked ones included.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn count_keys(&self, app: &AppId) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self, pool => {
            sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE app_id = $1")
                .bind(app.as_str())
                .fetch_one(pool)
                .await?
                .try_get("n")?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The keys of an app, oldest first, revoked ones included.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn list_keys(&self, app: &AppId) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE app_id = $1 ORDER BY created_at_ms, id");
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(app.as_str()).fetch_all(pool).await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                keys.push(key_from_row!(row));
            }
            Ok(keys)
        })
    }

    /// The active keys of an app that have a Pusher secret, oldest first.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn list_pusher_keys(&self, app: &AppId) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE app_id = $1 AND revoked_at_ms IS NULL AND pusher_secret IS NOT NULL \
             ORDER BY created_at_ms, id"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(app.as_str()).fetch_all(pool).await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                keys.push(key_from_row!(row));
            }
            Ok(keys)
        })
    }

    /// One key, by id (of any app).
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1");
        with_pool!(self, pool => {
            match sqlx::query(sql).bind(id.as_str()).fetch_optional(pool).await? {
                Some(row) => Ok(Some(key_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Revokes a key of `app` at `now_ms`; revoking twice keeps the first
    /// time. Returns the revocation time, or `None` when the app has no such
    /// key.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn revoke_key(&self, app: &AppId, id: &KeyId, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let sql = "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $3) \
                   WHERE app_id = $1 AND id = $2 RETURNING revoked_at_ms";
        with_pool!(self, pool => {
            match sqlx::query(sql).bind(app.as_str()).bind(id.as_str()).bind(now_ms).fetch_optional(pool).await? {
                Some(row) => Ok(Some(row.try_get::<i64, _>("revoked_at_ms")?)),
                None => Ok(None),
            }
        })
    }
}
