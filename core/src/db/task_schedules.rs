//! The `task_schedules` table: tenants' recurring tasks. The scheduler fires each due tick once
//! ([`fire_due`]): the row is taken with `FOR UPDATE SKIP LOCKED` and the task it makes carries
//! the dedupe key `schedule:<id>@<tick>`, so any number of schedulers make one task per tick.

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use croner::{Cron, parser::CronParser, parser::Seconds};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::tasks::{NewTask, TaskTemplate};

/// A schedule as its tenant sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskSchedule {
    pub id: Uuid,
    pub name: String,
    /// Five fields, UTC.
    pub cron: String,
    /// The task each tick makes.
    #[schema(value_type = Object)]
    pub task: serde_json::Value,
    pub next_tick: DateTime<Utc>,
    pub last_tick: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Parses a five-field cron expression (minute hour day month weekday): no seconds field, so
/// a schedule fires at most once a minute.
pub fn parse(expression: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        .map_err(|error| error.to_string())
}

/// The first tick of `cron` after `after`.
pub fn next_tick(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

/// Makes a schedule; `None` when the tenant has one of that name already.
pub async fn insert(
    db: impl PgExecutor<'_>,
    tenant: &str,
    name: &str,
    cron: &str,
    task: &TaskTemplate,
    first: DateTime<Utc>,
) -> Result<Option<TaskSchedule>, sqlx::Error> {
    sqlx::query_as!(
        TaskSchedule,
        "INSERT INTO task_schedules (id, tenant, name, cron, task, next_tick)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant, name) DO NOTHING
         RETURNING id, name, cron, task, next_tick, last_tick, created_at",
        Uuid::now_v7(),
        tenant,
        name,
        cron,
        serde_json::json!(task),
        first,
    )
    .fetch_optional(db)
    .await
}

/// A tenant's schedules, by name.
pub async fn list(db: impl PgExecutor<'_>, tenant: &str) -> Result<Vec<TaskSchedule>, sqlx::Error> {
    sqlx::query_as!(
        TaskSchedule,
        "SELECT id, name, cron, task, next_tick, last_tick, created_at
         FROM task_schedules WHERE tenant = $1 ORDER BY name",
        tenant,
    )
    .fetch_all(db)
    .await
}

/// How many schedules a tenant has. It first takes the tenant's schedule lock (for the
/// caller's transaction), so a count and the insert that follows are not raced by another.
pub async fn count(db: &mut sqlx::PgConnection, tenant: &str) -> Result<i64, sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('task_schedules:' || $1, 0))",
        tenant
    )
    .execute(&mut *db)
    .await?;
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM task_schedules WHERE tenant = $1"#,
        tenant
    )
    .fetch_one(db)
    .await
}

/// Deletes a schedule of `tenant`; returns whether there was one.
pub async fn delete(
    db: impl PgExecutor<'_>,
    tenant: &str,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM task_schedules WHERE tenant = $1 AND name = $2",
        tenant,
        name
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Schedules fired per pass, at most.
const BATCH: i64 = 100;

/// Fires every due tick: one task each, due at its tick (a tick missed while no scheduler ran
/// is fired once, late; the ones before it are skipped), and moves each schedule to its next
/// tick after now. Returns how many tasks it made.
pub async fn fire_due(db: &PgPool) -> Result<usize, sqlx::Error> {
    let mut tx = db.begin().await?;
    let due = sqlx::query!(
        "SELECT id, tenant, cron, task, next_tick FROM task_schedules
         WHERE next_tick <= now()
         ORDER BY next_tick LIMIT $1
         FOR UPDATE SKIP LOCKED",
        BATCH,
    )
    .fetch_all(&mut *tx)
    .await?;
    let now = Utc::now();
    let mut made = 0;
    for schedule in due {
        let next = parse(&schedule.cron)
            .ok()
            .and_then(|cron| next_tick(&cron, now.max(schedule.next_tick)));
        match serde_json::from_value::<TaskTemplate>(schedule.task) {
            Ok(template) => {
                let body = STANDARD.decode(&template.body).unwrap_or_default();
                let key = format!(
                    "schedule:{}@{}",
                    schedule.id,
                    schedule.next_tick.to_rfc3339()
                );
                let task = NewTask {
                    tenant: &schedule.tenant,
                    queue: &template.queue,
                    url: &template.url,
                    method: &template.method,
                    headers: template.headers.clone(),
                    body: &body,
                    run_at: schedule.next_tick,
                    dedupe_key: Some(&key),
                    max_attempts: template.max_attempts,
                    timeout_secs: template.timeout_secs,
                    min_backoff_ms: template.min_backoff_ms,
                    max_backoff_ms: template.max_backoff_ms,
                    traceparent: None,
                };
                let secret = crate::delivery::signing::new_secret();
                super::tasks::ensure_queue(&mut *tx, &schedule.tenant, &template.queue, &secret)
                    .await?;
                if super::tasks::insert(&mut tx, &task).await?.1 {
                    made += 1;
                }
            }
            Err(error) => {
                tracing::error!(schedule.id = %schedule.id, %error, "a schedule's task is unreadable");
            }
        }
        // An expression with no next tick (none can be made now) leaves the schedule parked.
        let next = next
            .or_else(|| DateTime::from_timestamp(253_402_214_400, 0))
            .unwrap_or(now);
        sqlx::query!(
            "UPDATE task_schedules SET last_tick = next_tick, next_tick = $2 WHERE id = $1",
            schedule.id,
            next,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_fields_at_most_once_a_minute() {
        assert!(parse("*/5 * * * *").is_ok());
        assert!(parse("* * * * * *").is_err(), "no seconds field");
        assert!(parse("nonsense").is_err());
        let cron = parse("0 3 * * *").expect("valid");
        let after = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let next = next_tick(&cron, after).expect("a next tick");
        assert_eq!(next.to_rfc3339(), "2026-12-05T03:00:00+00:00");
    }
}
