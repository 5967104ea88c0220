//! The `console_sessions` and `console_links` tables: the web console's
//! sessions (a hash of the session id, its CSRF token, its expiry) and its
//! one-time login links (a hash of the token, its expiry). Callers hash;
//! this module never sees a session id or a link token. And
//! `api_key_usage`: when each API key was last used, as the console shows.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Stores a session.
    ///
    /// # Errors
    ///
    /// Database errors; `Conflict` should two ids collide.
    pub async fn insert_console_session(
        &self,
        id_hash: &str,
        csrf_token: &str,
        created_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO console_sessions (id_hash, csrf_token, created_at_ms, expires_at_ms) \
                   VALUES ($1, $2, $3, $4)";
        with_pool!(self, pool => {
            sqlx::query(sql).bind(id_hash).bind(csrf_token).bind(created_at_ms).bind(expires_at_ms)
                .execute(pool).await?;
            Ok(())
        })
    }

    /// The CSRF token of the session whose id hashes to `id_hash`, unless
    /// it does not exist or expired by `now_ms`.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn console_session(&self, id_hash: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        let sql = "SELECT csrf_token FROM console_sessions WHERE id_hash = $1 AND expires_at_ms > $2";
        with_pool!(self, pool => {
            let row = sqlx::query(sql).bind(id_hash).bind(now_ms).fetch_optional(pool).await?;
            Ok(match row {
                Some(row) => Some(row.try_get::<String, _>("csrf_token")?),
                None => None,
            })
        })
    }

    /// Deletes a session (sign-out).
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn delete_console_session(&self, id_hash: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1").bind(id_hash).execute(pool).await?;
            Ok(())
        })
    }

    /// Stores a one-time login link.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn insert_console_link(
        &self,
        token_hash: &str,
        created_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO console_links (token_hash, created_at_ms, expires_at_ms) VALUES ($1, $2, $3)";
        with_pool!(self, pool => {
            sqlx::query(sql).bind(token_hash).bind(created_at_ms).bind(expires_at_ms).execute(pool).await?;
            Ok(())
        })
    }

    /// Uses a login link: deletes it and says whether it existed unexpired.
    /// Of two concurrent uses, one wins.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn take_console_link(&self, token_hash: &str, now_ms: i64) -> Result<bool, StoreError> {
        let sql = "DELETE FROM console_links WHERE token_hash = $1 RETURNING expires_at_ms";
        with_pool!(self, pool => {
            let row = sqlx::query(sql).bind(token_hash).fetch_optional(pool).await?;
            Ok(match row {
                Some(row) => row.try_get::<i64, _>("expires_at_ms")? > now_ms,
                None => false,
            })
        })
    }

    /// Deletes the sessions and links expired by `now_ms`; returns how many.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn purge_console(&self, now_ms: i64) -> Result<u64, StoreError> {
        with_pool!(self, pool => {
            let a = sqlx::query("DELETE FROM console_sessions WHERE expires_at_ms <= $1").bind(now_ms)
                .execute(pool).await?.rows_affected();
            let b = sqlx::query("DELETE FROM console_links WHERE expires_at_ms <= $1").bind(now_ms)
                .execute(pool).await?.rows_affected();
            Ok(a + b)
        })
    }
}

impl Store {
    /// Records that keys were used: `(key id, when)`; a key deleted
    /// meanwhile is skipped, and an older time never replaces a newer one.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn record_key_usage(&self, uses: &[(String, i64)]) -> Result<(), StoreError> {
        let sql = "INSERT INTO api_key_usage (key_id, last_used_at_ms) SELECT id, $2 FROM api_keys WHERE id = $1 \
                   ON CONFLICT (key_id) DO UPDATE SET last_used_at_ms = excluded.last_used_at_ms \
                   WHERE api_key_usage.last_used_at_ms < excluded.last_used_at_ms";
        with_pool!(self, pool => {
            for (id, at) in uses {
                sqlx::query(sql).bind(id).bind(*at).execute(pool).await?;
            }
            Ok(())
        })
    }

    /// When each key of `app` was last used (keys never used are absent).
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn key_usage(&self, app: &herald_proto::AppId) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = "SELECT u.key_id, u.last_used_at_ms FROM api_key_usage u JOIN api_keys k ON k.id = u.key_id \
                   WHERE k.app_id = $1";
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(app.as_str()).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((row.try_get::<String, _>("key_id")?, row.try_get::<i64, _>("last_used_at_ms")?));
            }
            Ok(out)
        })
    }
}
