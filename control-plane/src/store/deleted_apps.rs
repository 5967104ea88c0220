//! The `deleted_apps` table and the revocation list it feeds: edges must
//! refuse tokens minted before an app was deleted or a key revoked, so the
//! JWKS lists both until those tokens have expired. The tombstones are
//! written by [`Store::delete_app`] and [`Store::set_app_disabled`].

use herald_proto::{AppId, KeyId};
use sqlx::Row;

use super::{Store, StoreError, parse_app_id, parse_key_id};

impl Store {
    /// Keys revoked and apps deleted or disabled after `since_ms`, newest
    /// first, at most `limit`: `(app, key — none for a whole app, when in
    /// ms, whether the app was disabled rather than deleted)`.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn revocations(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(AppId, Option<KeyId>, i64, bool)>, StoreError> {
        let sql = "SELECT app_id, id AS key_id, revoked_at_ms AS at_ms, FALSE AS disabled FROM api_keys \
                   WHERE revoked_at_ms > $1 \
                   UNION ALL SELECT app_id, NULL AS key_id, deleted_at_ms AS at_ms, disabled FROM deleted_apps \
                   WHERE deleted_at_ms > $1 ORDER BY at_ms DESC LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(since_ms).bind(limit).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let app_id: String = row.try_get("app_id")?;
                let app = parse_app_id(&app_id)?;
                let key = match row.try_get::<Option<String>, _>("key_id")? {
                    Some(id) => Some(parse_key_id(&id)?),
                    None => None,
                };
                out.push((app, key, row.try_get::<i64, _>("at_ms")?, row.try_get::<bool, _>("disabled")?));
            }
            Ok(out)
        })
    }
}
