//! The `namespaces` table: the channel namespaces of apps and their
//! options (presence, join/leave events, client publishes, history).

use herald_proto::{AppId, NamespaceName, bus};
use sqlx::Row;

use super::{Store, StoreError, parse_app_id};

/// A channel namespace of an app: the options of every channel `name:…`.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    /// The app.
    pub app_id: AppId,
    /// The namespace name.
    pub name: NamespaceName,
    /// What it turns on.
    pub options: bus::NamespaceOptions,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
}

impl Namespace {
    /// Whether its channels keep history.
    #[must_use]
    pub fn has_history(&self) -> bool {
        self.options.history_size > 0 && self.options.history_ttl_ms > 0
    }
}

macro_rules! namespace_from_row {
    ($row:expr) => {{
        let row = $row;
        let app_id: String = row.try_get("app_id")?;
        let name: String = row.try_get("name")?;
        let size: i64 = row.try_get("history_size")?;
        let ttl: i64 = row.try_get("history_ttl_ms")?;
        Namespace {
            app_id: parse_app_id(&app_id)?,
            name: NamespaceName::new(&name).map_err(|e| StoreError::Corrupt(format!("namespace {name:?}: {e}")))?,
            options: bus::NamespaceOptions {
                presence: row.try_get("presence")?,
                join_leave: row.try_get("join_leave")?,
                client_publish: row.try_get("client_publish")?,
                history_size: u32::try_from(size)
                    .map_err(|_| StoreError::Corrupt(format!("history_size {size} of namespace {name}")))?,
                history_ttl_ms: u64::try_from(ttl)
                    .map_err(|_| StoreError::Corrupt(format!("history_ttl_ms {ttl} of namespace {name}")))?,
            },
            created_at_ms: row.try_get("created_at_ms")?,
            updated_at_ms: row.try_get("updated_at_ms")?,
        }
    }};
}

macro_rules! namespace_columns {
    () => {
        "app_id, name, presence, join_leave, client_publish, history_size, history_ttl_ms, created_at_ms, updated_at_ms"
    };
}

impl Store {
    /// Creates or replaces a namespace (its `created_at_ms` is kept on
    /// replace). Returns the stored row.
    ///
    /// # Errors
    ///
    /// [`StoreError::Missing`] when the app does not exist, database errors.
    pub async fn put_namespace(&self, ns: &Namespace) -> Result<Namespace, StoreError> {
        let sql = concat!(
            "INSERT INTO namespaces (",
            namespace_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (app_id, name) DO UPDATE SET presence = $3, join_leave = $4, client_publish = $5, \
             history_size = $6, history_ttl_ms = $7, updated_at_ms = $8 RETURNING ",
            namespace_columns!()
        );
        let o = &ns.options;
        with_pool!(self, pool => {
            let row = sqlx::query(sql)
                .bind(ns.app_id.as_str())
                .bind(ns.name.as_str())
                .bind(o.presence)
                .bind(o.join_leave)
                .bind(o.client_publish)
                .bind(i64::from(o.history_size))
                .bind(i64::try_from(o.history_ttl_ms).unwrap_or(i64::MAX))
                .bind(ns.updated_at_ms)
                .fetch_one(pool)
                .await?;
            Ok(namespace_from_row!(&row))
        })
    }

    /// One namespace of an app.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn get_namespace(&self, app: &AppId, name: &NamespaceName) -> Result<Option<Namespace>, StoreError> {
        let sql = concat!("SELECT ", namespace_columns!(), " FROM namespaces WHERE app_id = $1 AND name = $2");
        with_pool!(self, pool => {
            match sqlx::query(sql).bind(app.as_str()).bind(name.as_str()).fetch_optional(pool).await? {
                Some(row) => Ok(Some(namespace_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// The namespaces of an app, by name.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn list_namespaces(&self, app: &AppId) -> Result<Vec<Namespace>, StoreError> {
        let sql = concat!("SELECT ", namespace_columns!(), " FROM namespaces WHERE app_id = $1 ORDER BY name");
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(app.as_str()).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(namespace_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Every namespace of every app that keeps history (to re-create their
    /// streams at start).
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn list_history_namespaces(&self) -> Result<Vec<Namespace>, StoreError> {
        let sql = concat!(
            "SELECT ",
            namespace_columns!(),
            " FROM namespaces WHERE history_size > 0 AND history_ttl_ms > 0 ORDER BY app_id, name"
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(namespace_from_row!(row));
            }
            Ok(out)
        })
    }

    /// How many namespaces an app has.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn count_namespaces(&self, app: &AppId) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self, pool => {
            sqlx::query("SELECT COUNT(*) AS n FROM namespaces WHERE app_id = $1")
                .bind(app.as_str())
                .fetch_one(pool)
                .await?
                .try_get("n")?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes a namespace; returns it, or `None` when there was none.
    ///
    /// # Errors
    ///
    /// Database errors; [`StoreError::Corrupt`] for an unreadable row.
    pub async fn delete_namespace(&self, app: &AppId, name: &NamespaceName) -> Result<Option<Namespace>, StoreError> {
        let sql = concat!("DELETE FROM namespaces WHERE app_id = $1 AND name = $2 RETURNING ", namespace_columns!());
        with_pool!(self, pool => {
            match sqlx::query(sql).bind(app.as_str()).bind(name.as_str()).fetch_optional(pool).await? {
                Some(row) => Ok(Some(namespace_from_row!(&row))),
                None => Ok(None),
            }
        })
    }
}
