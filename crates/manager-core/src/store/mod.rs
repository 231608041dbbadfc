//! The [`Store`]: one type, two sqlx backends.
//!
//! Every query is written once, with `$1` placeholders that both PostgreSQL
//! and SQLite accept, and run on whichever pool the store holds through the
//! [`on_pool!`] and [`write_transaction!`] macros: their body is expanded once
//! per backend, so sqlx checks it against both drivers at compile time.

mod accounts;
mod apps;
mod audit;
pub use audit::MAX_AUDIT_PAGE;
mod invocations;
pub use invocations::{
    InvocationBucket, InvocationFilter, InvocationId, InvocationSeries, MAX_INVOCATION_PAGE,
    NewInvocation, OutputLine, PruneOutcome, StatusFilter, StoredInvocation,
};
mod health;
mod route_changes;
pub use route_changes::{RouteChange, RouteChanges};
mod runtime;
pub use runtime::{
    AppVar, HttpAllowPattern, InvalidSecretKey, KvEntry, KvPage, KvQuota, KvUsage,
    MAX_HTTP_ALLOW_HOSTS, MAX_KV_PAGE, MAX_SECRET_VALUE_BYTES, MAX_VAR_VALUE_BYTES, SecretInfo,
    SecretKey, validate_config_name, validate_kv_key,
};
mod scripts;
mod triggers;
pub use triggers::{
    AsyncFailure, AsyncInvocation, AsyncJob, AsyncResult, AsyncStatus, CronSchedule,
    DEFAULT_TIMEZONE, MAX_ASYNC_ATTEMPTS, NewAsyncInvocation, NewSchedule, Schedule, ScheduleId,
    ScheduleTick, ScheduleUpdate,
};
mod users;

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{StoreError, StoreResult};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Runs `$body` with `$pool` bound to the store's pool, whichever backend it is.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$transaction` and
/// commits it; an early return (`?`) drops the transaction, which rolls it
/// back. On SQLite the transaction starts with `BEGIN IMMEDIATE`, taking the
/// write lock up front: a deferred transaction that reads first and writes
/// later can fail with `SQLITE_BUSY` instead of waiting for the lock. On
/// PostgreSQL, bodies take row locks (`FOR UPDATE`) where they read what they
/// are about to change; [`Store::lock_clause`] gives the clause.
macro_rules! write_transaction {
    ($store:expr, $transaction:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(pool) => {
                let mut $transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
                let output = $body;
                $transaction.commit().await?;
                output
            }
            $crate::store::Pool::Postgres(pool) => {
                let mut $transaction = pool.begin().await?;
                let output = $body;
                $transaction.commit().await?;
                output
            }
        }
    };
}

pub(crate) use on_pool;
pub(crate) use write_transaction;

/// Which database a [`Store`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An embedded SQLite file (the default for a single node).
    Sqlite,
    /// A PostgreSQL server (production and cluster mode).
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// How to size the connection pool; the defaults suit a small instance.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The most connections the pool opens. Default: 4 for SQLite (writes are
    /// serialised by the file lock anyway; idle ones close after 30 s), 10
    /// for PostgreSQL.
    pub max_connections: Option<u32>,
    /// How long a query waits for a free connection before failing. Default: 10 s.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for another writer's lock before
    /// failing with "database is locked". Default: 10 s.
    pub sqlite_busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(10),
            sqlite_busy_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The control plane's database: the only code in PiCloud that speaks SQL.
///
/// Cheap to clone (the clones share one connection pool). Open it with
/// [`Store::connect`], then bring the schema up to date with
/// [`Store::migrate`] before any other call.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: Pool,
}

impl Store {
    /// Opens a connection pool for `url` with default [`StoreOptions`].
    ///
    /// `sqlite://PATH` (or `sqlite:PATH`) opens the SQLite file at `PATH`,
    /// creating it and its directory if missing, in WAL mode with foreign keys
    /// on, `synchronous = FULL` and a busy timeout. `postgres://...` (or
    /// `postgresql://...`) connects to PostgreSQL. The schema is not touched:
    /// call [`Store::migrate`] next.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Opens a connection pool for `url` (see [`Store::connect`]) sized by `options`.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        let pool = match scheme {
            "sqlite" => Pool::Sqlite(connect_sqlite(url, options).await?),
            "postgres" | "postgresql" => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(options.max_connections.unwrap_or(10))
                    .acquire_timeout(options.acquire_timeout)
                    .connect(url)
                    .await?,
            ),
            other => {
                return Err(StoreError::UnsupportedUrl {
                    scheme: other.to_owned(),
                });
            }
        };
        let store = Self { pool };
        tracing::debug!(backend = %store.backend(), "database pool opened");
        Ok(store)
    }

    /// The backend this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection, waiting for queries in flight to finish. Call
    /// it on shutdown so SQLite checkpoints its WAL and PostgreSQL sees clean
    /// disconnects.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    /// Applies the migrations this binary embeds that the database lacks.
    ///
    /// Safe to call on every start, and from several processes at once on
    /// PostgreSQL (sqlx serialises them with an advisory lock). Refuses with
    /// [`StoreError::DatabaseNewerThanBinary`] a database that has applied a
    /// migration this binary does not know, before changing anything.
    pub async fn migrate(&self) -> StoreResult<()> {
        let pending = self.pending_migrations().await?;
        if pending > 0 {
            tracing::info!(backend = %self.backend(), pending, "applying database migrations");
        }
        match &self.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await?,
            Pool::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// How many of this binary's migrations the database has not applied yet;
    /// 0 means the schema is current (a readiness check). Fails with
    /// [`StoreError::DatabaseNewerThanBinary`] if the database is ahead.
    pub async fn pending_migrations(&self) -> StoreResult<usize> {
        let known: BTreeSet<i64> = self
            .migrator()
            .iter()
            .filter(|migration| migration.migration_type.is_up_migration())
            .map(|migration| migration.version)
            .collect();
        let applied = self.applied_migrations().await?;
        if let Some(&database_version) = applied.difference(&known).last() {
            return Err(StoreError::DatabaseNewerThanBinary {
                database_version,
                binary_version: known.last().copied().unwrap_or(0),
            });
        }
        Ok(known.difference(&applied).count())
    }

    /// The newest migration version this binary embeds.
    pub fn binary_schema_version(&self) -> i64 {
        self.migrator()
            .iter()
            .map(|migration| migration.version)
            .max()
            .unwrap_or(0)
    }

    fn migrator(&self) -> &'static Migrator {
        match self.pool {
            Pool::Sqlite(_) => &SQLITE_MIGRATOR,
            Pool::Postgres(_) => &POSTGRES_MIGRATOR,
        }
    }

    /// The versions recorded in sqlx's bookkeeping table, or none if the
    /// table does not exist yet (a fresh database).
    async fn applied_migrations(&self) -> StoreResult<BTreeSet<i64>> {
        let table_exists_sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables \
                 WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'"
            }
        };
        let table_count: i64 =
            on_pool!(self, pool => sqlx::query_scalar(table_exists_sql).fetch_one(pool).await?);
        if table_count == 0 {
            return Ok(BTreeSet::new());
        }
        let versions: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(pool)
                .await?
        });
        Ok(versions.into_iter().collect())
    }

    /// ` FOR UPDATE` on PostgreSQL, nothing on SQLite (where the write
    /// transaction already holds the database lock): append it to a SELECT
    /// that reads a row the transaction is about to change.
    pub(crate) fn lock_clause(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }
}

async fn connect_sqlite(url: &str, options: &StoreOptions) -> StoreResult<SqlitePool> {
    let connect_options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(options.sqlite_busy_timeout)
        // 1 MiB of page cache per connection instead of SQLite's 2 MiB: the
        // working set of a small instance fits, and memory stays low on a Pi.
        .pragma("cache_size", "-1024")
        // Statement journals (a multi-row INSERT inside a transaction needs
        // one) stay in memory instead of a temporary file per statement.
        .pragma("temp_store", "memory")
        // The write-ahead log grows while checkpoints cannot keep up (a burst
        // of record batches, a large prune); once a checkpoint has caught up
        // it is cut back to this size instead of keeping its peak on disk.
        .pragma("journal_size_limit", "8388608");
    // SQLite creates a missing file but not a missing directory (`./data`).
    if let Some(directory) = Path::new(connect_options.get_filename()).parent()
        && !directory.as_os_str().is_empty()
    {
        tokio::fs::create_dir_all(directory)
            .await
            .map_err(|source| StoreError::CreateDirectory {
                path: directory.display().to_string(),
                source,
            })?;
    }
    Ok(SqlitePoolOptions::new()
        // SQLite has one writer at a time; four connections let reads run
        // beside it. Idle ones close after a while, with their caches.
        .max_connections(options.max_connections.unwrap_or(4))
        .idle_timeout(Duration::from_secs(30))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect_options)
        .await?)
}
