//! The store: the control plane's tables in PostgreSQL (cluster) or SQLite
//! (embedded).
//!
//! [`Store`] is one enum over the two pools; this module opens it, applies
//! the migrations and defines [`StoreError`]. The SQL is the same text on
//! both backends (numbered `$N` parameters, `RETURNING`, `ON CONFLICT`), so
//! every query appears once, beside the code that runs it, in the module of
//! its table; only the migrations differ (`migrations/postgres`,
//! `migrations/sqlite`), by column types. Several replicas may share one
//! PostgreSQL database: migrations take sqlx's advisory lock, and the one
//! invariant that concurrent replicas could break — a single current signing
//! key — is a unique index.
//!
//! # Layout
//!
//! - `apps`: [`App`], [`LimitOverrides`], [`PusherSettings`] (with the
//!   app's unique Pusher app id); deleting an app.
//! - `api_keys`: [`ApiKey`], stored without its secret (with its Pusher
//!   secret, if any).
//! - `signing_keys`: [`SigningKey`], the current one and those retiring.
//! - `namespaces`: [`Namespace`], channel options per app.
//! - `idempotency`: [`IdempotencyClaim`], publish ids shared by replicas.
//! - `deleted_apps`: tombstones of deleted apps, and the revocation list.
//! - `webhooks`: [`Webhook`], the webhook endpoints of apps.
//! - `webhook_outbox`: webhooks' channel state, outbox and attempt log.
//! - `console`: the web console's sessions and one-time login links
//!   (hashes only), and when each API key was last used.
//! - `usage`: per-app usage per minute, hour and day ([`UsageRow`]), the
//!   usage batches stored, nodes' latest connection figures, quotas' sums.
//!
//! Timestamps are Unix milliseconds. Capabilities and Origin lists are JSON
//! text. API key secrets are never stored, only their SHA-256; a key's
//! Pusher secret, when it has one, is stored as it is (Pusher's signatures
//! are HMACs: checking them needs the secret).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use herald_proto::{AppId, KeyId};
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

impl StoreError {
    /// Whether this is a conflict on an app's Pusher app id (its unique
    /// index: PostgreSQL names the index, SQLite the column).
    #[must_use]
    pub fn is_pusher_app_id_conflict(&self) -> bool {
        matches!(self, Self::Conflict(m) if m.contains("pusher_app_id"))
    }
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

mod api_keys;
mod apps;
mod console;
mod deleted_apps;
mod idempotency;
mod namespaces;
mod signing_keys;
mod usage;
mod webhook_outbox;
mod webhooks;

pub use api_keys::ApiKey;
pub use apps::{
    App, DEFAULT_PUSHER_BATCH_MAX, DEFAULT_PUSHER_MAX_EVENT_BYTES, Disabled, LimitOverrides, PusherSettings,
};
pub use idempotency::IdempotencyClaim;
pub use namespaces::Namespace;
pub use signing_keys::SigningKey;
pub use usage::{AppQuotas, StoredUsage, UsageRow, UsageUnit};
pub use webhook_outbox::{Attempt, ChannelRecord, Delivery, EventDraft, Outcome, Recorded, Transition};
pub use webhooks::{ChannelFilter, DISABLED_BY_OPERATOR, Webhook, WebhookChange, WebhookStatus, events_json};

/// An app id read back from a row.
fn parse_app_id(id: &str) -> Result<AppId, StoreError> {
    AppId::new(id).map_err(|e| StoreError::Corrupt(format!("app id {id:?}: {e}")))
}

/// A key id read back from a row.
fn parse_key_id(id: &str) -> Result<KeyId, StoreError> {
    KeyId::new(id).map_err(|e| StoreError::Corrupt(format!("key id {id:?}: {e}")))
}

/// A nullable `BIGINT` limit as `u32`; out-of-range values read as unset.
fn to_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
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
}
