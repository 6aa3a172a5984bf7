//! Postgres: the pool, the migrations and one repository module per aggregate.
//!
//! Repository functions take any executor (`&PgPool` or `&mut *tx`), so callers decide what
//! shares a transaction. SQL is written out and checked at compile time by `sqlx::query!`
//! (offline data in `.sqlx/`).

pub mod api_keys;
pub mod backups;
pub mod broker_queues;
pub mod job_writes;
pub mod jobs;
pub mod media;
mod published_later;
pub mod rescue;
pub mod retention;
pub mod schedules;
pub mod sessions;
pub mod stats;
pub mod task_schedules;
pub mod tasks;
pub mod tenant_settings;
pub mod tus;
pub mod usage;
pub mod webhooks;
pub mod workers;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgPool, postgres::PgPoolOptions};

/// Connects lazily: the pool opens connections on first use, so a process starts (and can say
/// "not ready") while Postgres is down, and reconnects by itself once it is back.
pub fn connect_lazy(url: &SecretString, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // Fail a request quickly instead of queueing it behind a dead database.
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(url.expose_secret())
}

/// Like [`connect_lazy`], for counters whose last fraction of a second may be lost in a
/// Postgres crash (usage): commits do not wait for the WAL flush, so a hot counter row's lock
/// is held for microseconds rather than a disk sync.
pub fn connect_lazy_async_commit(
    url: &SecretString,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    let options: sqlx::postgres::PgConnectOptions = url.expose_secret().parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options.options([("synchronous_commit", "off")])))
}

/// Whether `error` means Postgres could not be reached or could not serve the statement right
/// now (connection lost, pool exhausted, server shutting down or overloaded, a serialization
/// conflict), so the same statement may succeed later; anything else is the statement's fault.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08 connection exception, 57P0x admin or crash shutdown, 53 insufficient
            // resources (too many connections), 40001/40P01 serialization failure or deadlock.
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

/// Creates the database named in `url` unless it exists (for first runs and `kiln-api migrate`).
pub async fn create_database_if_missing(url: &SecretString) -> Result<(), sqlx::Error> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(url.expose_secret()).await? {
        sqlx::Postgres::create_database(url.expose_secret()).await?;
        tracing::info!("database created");
    }
    Ok(())
}

/// Applies pending migrations (embedded at build time from `migrations/`).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../migrations").run(pool).await
}
