//! The `signing_keys` table: the Ed25519 keys that sign tokens — one
//! current key (a unique index keeps it one, even when replicas rotate at
//! once) and the retired keys still listed in the JWKS.

use std::fmt;

use sqlx::Row;

use super::{Store, StoreError};

/// A token signing key.
#[derive(Clone, PartialEq)]
pub struct SigningKey {
    /// Key id, the JWT header's `kid`.
    pub kid: String,
    /// Ed25519 private key, PKCS#8 DER.
    pub private_key: Vec<u8>,
    /// Ed25519 public key, 32 bytes.
    pub public_key: Vec<u8>,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// When it stopped signing; `None` for the current key.
    pub retired_at_ms: Option<i64>,
    /// When a retired key leaves the JWKS.
    pub expires_at_ms: Option<i64>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at_ms", &self.created_at_ms)
            .field("retired_at_ms", &self.retired_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

macro_rules! signing_key_from_row {
    ($row:expr) => {{
        let row = $row;
        SigningKey {
            kid: row.try_get("kid")?,
            private_key: row.try_get("private_key")?,
            public_key: row.try_get("public_key")?,
            created_at_ms: row.try_get("created_at_ms")?,
            retired_at_ms: row.try_get("retired_at_ms")?,
            expires_at_ms: row.try_get("expires_at_ms")?,
        }
    }};
}

macro_rules! signing_columns {
    () => {
        "kid, private_key, public_key, created_at_ms, retired_at_ms, expires_at_ms"
    };
}

impl Store {
    /// The current signing key first, then the retired keys that have not
    /// expired at `now_ms`, newest first.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn signing_keys(&self, now_ms: i64) -> Result<Vec<SigningKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            signing_columns!(),
            " FROM signing_keys WHERE retired_at_ms IS NULL OR expires_at_ms > $1 \
             ORDER BY (retired_at_ms IS NULL) DESC, created_at_ms DESC, kid DESC"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(now_ms).fetch_all(pool).await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                keys.push(signing_key_from_row!(row));
            }
            Ok(keys)
        })
    }

    /// Inserts `key` as the current signing key unless there already is
    /// one. Returns whether it was inserted.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn insert_first_signing_key(&self, key: &SigningKey) -> Result<bool, StoreError> {
        let sql = concat!(
            "INSERT INTO signing_keys (",
            signing_columns!(),
            ") VALUES ($1, $2, $3, $4, NULL, NULL) ON CONFLICT DO NOTHING"
        );
        let n = with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(&key.kid)
                .bind(&key.private_key)
                .bind(&key.public_key)
                .bind(key.created_at_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Makes `key` the current signing key: the current one retires at
    /// `now_ms` and stays in the JWKS until `previous_expires_at_ms`; keys
    /// that expired before `now_ms` are deleted. Returns the kid of the key
    /// that retired, if there was one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when another replica rotated at the same
    /// moment (retry), database errors.
    pub async fn rotate_signing_key(
        &self,
        key: &SigningKey,
        now_ms: i64,
        previous_expires_at_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let insert = concat!("INSERT INTO signing_keys (", signing_columns!(), ") VALUES ($1, $2, $3, $4, NULL, NULL)");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM signing_keys WHERE retired_at_ms IS NOT NULL AND expires_at_ms <= $1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            let previous = sqlx::query(
                "UPDATE signing_keys SET retired_at_ms = $1, expires_at_ms = $2 WHERE retired_at_ms IS NULL RETURNING kid",
            )
            .bind(now_ms)
            .bind(previous_expires_at_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let previous: Option<String> = match previous {
                Some(row) => Some(row.try_get("kid")?),
                None => None,
            };
            sqlx::query(insert)
                .bind(&key.kid)
                .bind(&key.private_key)
                .bind(&key.public_key)
                .bind(key.created_at_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(previous)
        })
    }
}
