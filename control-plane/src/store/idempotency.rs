//! The `idempotency` table: publish idempotency ids shared by every
//! replica. A publish that carries an id claims `(app, channel, id)` here
//! before it goes to the bus, and marks it accepted after.

use sqlx::Row;

use super::{Store, StoreError};

/// What [`Store::claim_idempotency`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The caller owns the attempt.
    Claimed,
    /// Another attempt is in flight (on this or another replica).
    Pending,
    /// The message was accepted within the window.
    Accepted,
}

impl Store {
    /// Claims `(app, channel, id)` for a publish attempt that stays pending
    /// until `pending_until_ms`. A row that expired before `now_ms` is taken
    /// over.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn claim_idempotency(
        &self,
        app: &str,
        channel: &str,
        id: &str,
        now_ms: i64,
        pending_until_ms: i64,
    ) -> Result<IdempotencyClaim, StoreError> {
        let claim = "INSERT INTO idempotency (app_id, channel, idem_id, state, expires_at_ms) VALUES ($1, $2, $3, 0, $4) \
                     ON CONFLICT (app_id, channel, idem_id) DO UPDATE SET state = 0, expires_at_ms = $4 \
                     WHERE idempotency.expires_at_ms <= $5 RETURNING state";
        let existing =
            "SELECT state FROM idempotency WHERE app_id = $1 AND channel = $2 AND idem_id = $3 AND expires_at_ms > $4";
        with_pool!(self, pool => {
            let claimed = sqlx::query(claim)
                .bind(app)
                .bind(channel)
                .bind(id)
                .bind(pending_until_ms)
                .bind(now_ms)
                .fetch_optional(pool)
                .await?;
            if claimed.is_some() {
                return Ok(IdempotencyClaim::Claimed);
            }
            let row = sqlx::query(existing).bind(app).bind(channel).bind(id).bind(now_ms).fetch_optional(pool).await?;
            Ok(match row {
                Some(row) if row.try_get::<i32, _>("state")? == 1 => IdempotencyClaim::Accepted,
                Some(_) => IdempotencyClaim::Pending,
                // Expired between the two statements: the caller retries.
                None => IdempotencyClaim::Pending,
            })
        })
    }

    /// Marks a claim accepted until `expires_at_ms`.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn accept_idempotency(
        &self,
        app: &str,
        channel: &str,
        id: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let sql =
            "UPDATE idempotency SET state = 1, expires_at_ms = $4 WHERE app_id = $1 AND channel = $2 AND idem_id = $3";
        with_pool!(self, pool => {
            sqlx::query(sql).bind(app).bind(channel).bind(id).bind(expires_at_ms).execute(pool).await?;
        });
        Ok(())
    }

    /// Drops a pending claim (the attempt failed), so a retry can claim it.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn release_idempotency(&self, app: &str, channel: &str, id: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM idempotency WHERE app_id = $1 AND channel = $2 AND idem_id = $3 AND state = 0";
        with_pool!(self, pool => {
            sqlx::query(sql).bind(app).bind(channel).bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// Deletes expired idempotency rows; returns how many.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn purge_idempotency(&self, now_ms: i64) -> Result<u64, StoreError> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM idempotency WHERE expires_at_ms <= $1").bind(now_ms).execute(pool).await?.rows_affected()
        });
        Ok(n)
    }
}
