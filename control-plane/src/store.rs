//! The store: apps, API keys and signing keys in PostgreSQL (cluster) or
//! SQLite (embedded).
//!
//! [`Store`] is one enum over the two pools. The SQL is the same text on
//! both backends (numbered `$N` parameters, `RETURNING`, `ON CONFLICT`), so
//! every query appears once, below, where it is used; only the migrations
//! differ (`migrations/postgres`, `migrations/sqlite`), by column types.
//! Several replicas may share one PostgreSQL database: migrations take
//! sqlx's advisory lock, and the one invariant that concurrent replicas
//! could break — a single current signing key — is a unique index.
//!
//! Timestamps are Unix milliseconds. Capabilities and Origin lists are JSON
//! text. API key secrets are never stored, only their SHA-256.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use herald_proto::{AppId, Capabilities, KeyId, NamespaceName, bus};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A row with the same key exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row the operation refers to does not exist (e.g. the app of a new
    /// key was deleted meanwhile).
    #[error("missing: {0}")]
    Missing(String),
    /// The database URL is not `postgres://…` or `sqlite:…`.
    #[error("unsupported database url (expected postgres://… or sqlite:…)")]
    UnsupportedUrl,
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(db.message().to_owned()),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::Missing(db.message().to_owned()),
            _ => Self::Database(e),
        }
    }
}

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
            .finish_non_exhaustive()
    }
}

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

/// The control plane's database.
#[derive(Clone)]
pub enum Store {
    /// PostgreSQL: the cluster mode; several replicas may share it.
    Postgres(PgPool),
    /// SQLite: the embedded mode; one process.
    Sqlite(SqlitePool),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres(_) => "Store::Postgres",
            Self::Sqlite(_) => "Store::Sqlite",
        })
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool: the query text is
/// shared, the types differ per backend.
macro_rules! with_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match $self {
            Store::Postgres($pool) => $body,
            Store::Sqlite($pool) => $body,
        }
    };
}

macro_rules! app_from_row {
    ($row:expr) => {{
        let row = $row;
        let id: String = row.try_get("id")?;
        let origins: String = row.try_get("allowed_origins")?;
        App {
            id: AppId::new(&id).map_err(|e| StoreError::Corrupt(format!("app id {id:?}: {e}")))?,
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

macro_rules! key_from_row {
    ($row:expr) => {{
        let row = $row;
        let id: String = row.try_get("id")?;
        let app_id: String = row.try_get("app_id")?;
        let caps: String = row.try_get("capabilities")?;
        ApiKey {
            id: KeyId::new(&id).map_err(|e| StoreError::Corrupt(format!("key id {id:?}: {e}")))?,
            app_id: AppId::new(&app_id).map_err(|e| StoreError::Corrupt(format!("app id {app_id:?}: {e}")))?,
            name: row.try_get("name")?,
            capabilities: serde_json::from_str(&caps)
                .map_err(|e| StoreError::Corrupt(format!("capabilities of key {id}: {e}")))?,
            secret_hash: row.try_get("secret_hash")?,
            created_at_ms: row.try_get("created_at_ms")?,
            revoked_at_ms: row.try_get("revoked_at_ms")?,
        }
    }};
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

macro_rules! namespace_from_row {
    ($row:expr) => {{
        let row = $row;
        let app_id: String = row.try_get("app_id")?;
        let name: String = row.try_get("name")?;
        let size: i64 = row.try_get("history_size")?;
        let ttl: i64 = row.try_get("history_ttl_ms")?;
        Namespace {
            app_id: AppId::new(&app_id).map_err(|e| StoreError::Corrupt(format!("app id {app_id:?}: {e}")))?,
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

fn to_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn origins_json(origins: &[String]) -> String {
    serde_json::to_string(origins).unwrap_or_else(|_| "[]".to_owned())
}

fn caps_json(caps: &Capabilities) -> String {
    serde_json::to_string(caps).unwrap_or_else(|_| "{}".to_owned())
}

macro_rules! app_columns {
    () => {
        "id, name, max_connections, max_message_bytes, publish_rate_per_sec, allowed_origins, created_at_ms"
    };
}
macro_rules! key_columns {
    () => {
        "id, app_id, name, capabilities, secret_hash, created_at_ms, revoked_at_ms"
    };
}
macro_rules! namespace_columns {
    () => {
        "app_id, name, presence, join_leave, client_publish, history_size, history_ttl_ms, created_at_ms, updated_at_ms"
    };
}
macro_rules! signing_columns {
    () => {
        "kid, private_key, public_key, created_at_ms, retired_at_ms, expires_at_ms"
    };
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite:…`) and applies the
    /// migrations. A SQLite file (and its folder) is created when missing.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnsupportedUrl`] for another scheme,
    /// [`StoreError::Unavailable`] when the database cannot be reached,
    /// [`StoreError::Migrate`] when the schema cannot be brought up to date.
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(acquire_timeout)
                .connect(url)
                .await?;
            Self::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let mut options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(acquire_timeout);
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if !in_memory {
                options = options.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal);
                if let Some(parent) = options.get_filename().parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
                }
            }
            // An in-memory database lives in its one connection: keep it.
            let pool_options = if in_memory {
                SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
            } else {
                SqlitePoolOptions::new().max_connections(max_connections.max(1))
            }
            .acquire_timeout(acquire_timeout);
            // Two processes opening a new file at once may meet "database is
            // locked" while one switches it to WAL: try again briefly.
            let mut attempt = 0;
            let pool = loop {
                attempt += 1;
                match pool_options.clone().connect_with(options.clone()).await {
                    Ok(pool) => break pool,
                    Err(e) if attempt >= 5 => return Err(e.into()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50 * attempt)).await,
                }
            };
            Self::Sqlite(pool)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
            Self::Sqlite(pool) => {
                // SQLite has no advisory lock: when two processes open a new
                // file at once, one migration fails; it then finds the
                // schema applied by the other.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match sqlx::migrate!("./migrations/sqlite").run(pool).await {
                        Ok(()) => break,
                        Err(e) if attempt >= 5 => return Err(e.into()),
                        Err(_) => tokio::time::sleep(Duration::from_millis(50 * attempt)).await,
                    }
                }
            }
        }
        Ok(())
    }

    /// Which backend this is: `"postgres"` or `"sqlite"`.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }

    // ----- apps -------------------------------------------------------------

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

    /// Keys revoked and apps deleted after `since_ms`, newest first, at most
    /// `limit`: `(app, key — none for a deleted app, when in ms)`.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn revocations(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(AppId, Option<KeyId>, i64)>, StoreError> {
        let sql = "SELECT app_id, id AS key_id, revoked_at_ms AS at_ms FROM api_keys WHERE revoked_at_ms > $1 \
                   UNION ALL SELECT app_id, NULL AS key_id, deleted_at_ms AS at_ms FROM deleted_apps \
                   WHERE deleted_at_ms > $1 ORDER BY at_ms DESC LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(since_ms).bind(limit).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let app_id: String = row.try_get("app_id")?;
                let app = AppId::new(&app_id).map_err(|e| StoreError::Corrupt(format!("app id {app_id:?}: {e}")))?;
                let key = match row.try_get::<Option<String>, _>("key_id")? {
                    Some(id) => Some(KeyId::new(&id).map_err(|e| StoreError::Corrupt(format!("key id {id:?}: {e}")))?),
                    None => None,
                };
                out.push((app, key, row.try_get::<i64, _>("at_ms")?));
            }
            Ok(out)
        })
    }

    // ----- API keys ---------------------------------------------------------

    /// Inserts a new API key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Missing`] when the app does not exist,
    /// [`StoreError::Conflict`] when the id is taken.
    pub async fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let sql = "INSERT INTO api_keys (id, app_id, name, capabilities, secret_hash, created_at_ms, revoked_at_ms) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(key.id.as_str())
                .bind(key.app_id.as_str())
                .bind(&key.name)
                .bind(caps_json(&key.capabilities))
                .bind(&key.secret_hash)
                .bind(key.created_at_ms)
                .bind(key.revoked_at_ms)
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

    // ----- namespaces -------------------------------------------------------

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

    // ----- signing keys -----------------------------------------------------

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

    // ----- shared idempotency ---------------------------------------------------

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
