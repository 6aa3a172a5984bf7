//! The `schedules` table: each cron schedule's last and next tick and its missed-tick count,
//! written by the schedulers and read by `GET /v1/admin/schedules`.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// A schedule's recorded state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleState {
    pub name: String,
    pub cron: String,
    pub kind: String,
    pub missed_policy: String,
    pub last_tick: Option<DateTime<Utc>>,
    pub next_tick: Option<DateTime<Utc>>,
    pub missed_ticks: i64,
    pub updated_at: DateTime<Utc>,
}

/// A schedule as configured, to record at start-up.
#[derive(Debug)]
pub struct Registration<'a> {
    pub name: &'a str,
    pub cron: &'a str,
    pub kind: &'a str,
    pub missed_policy: &'a str,
    pub next_tick: Option<DateTime<Utc>>,
}

/// Records (or updates) a schedule's definition, keeping its history.
pub async fn register(db: impl PgExecutor<'_>, s: &Registration<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO schedules (name, cron, kind, missed_policy, next_tick)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE
         SET cron = EXCLUDED.cron, kind = EXCLUDED.kind, missed_policy = EXCLUDED.missed_policy,
             next_tick = EXCLUDED.next_tick, updated_at = now()",
        s.name,
        s.cron,
        s.kind,
        s.missed_policy,
        s.next_tick,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Locks a schedule's row for the rest of the transaction and returns its last tick, so that
/// schedulers starting together take turns at catching up.
pub async fn lock_last_tick(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let row = sqlx::query_scalar!(
        "SELECT last_tick FROM schedules WHERE name = $1 FOR UPDATE",
        name
    )
    .fetch_optional(db)
    .await?;
    Ok(row.flatten())
}

/// Adds `missed` ticks to the count and moves the last tick to `latest`.
pub async fn record_missed(
    db: impl PgExecutor<'_>,
    name: &str,
    missed: i64,
    latest: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE schedules
         SET missed_ticks = missed_ticks + $2,
             last_tick = GREATEST(COALESCE(last_tick, $3), $3), updated_at = now()
         WHERE name = $1",
        name,
        missed,
        latest,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records a tick (by whichever scheduler saw it) and the one after it. Never moves backwards.
pub async fn record_tick(
    db: impl PgExecutor<'_>,
    name: &str,
    tick: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE schedules
         SET last_tick = GREATEST(COALESCE(last_tick, $2), $2),
             next_tick = CASE WHEN next_tick IS NULL OR next_tick <= $2 THEN $3 ELSE next_tick END,
             updated_at = now()
         WHERE name = $1",
        name,
        tick,
        next,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Every recorded schedule, by name.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<ScheduleState>, sqlx::Error> {
    sqlx::query_as!(
        ScheduleState,
        "SELECT name, cron, kind, missed_policy, last_tick, next_tick, missed_ticks, updated_at
         FROM schedules ORDER BY name"
    )
    .fetch_all(db)
    .await
}
