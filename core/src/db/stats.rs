//! Summaries over a time window, for the daily digest.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// What happened to one tenant's work in a window.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantSummary {
    pub media_uploaded: i64,
    pub media_ready: i64,
    pub media_failed: i64,
    pub emails_sent: i64,
    pub emails_dead: i64,
    pub jobs_dead: i64,
}

/// Counts `tenant`'s uploads, outcomes, emails and dead jobs in `[since, until)`.
pub async fn tenant_summary(
    db: impl PgExecutor<'_>,
    tenant: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<TenantSummary, sqlx::Error> {
    sqlx::query_as!(
        TenantSummary,
        r#"SELECT
             (SELECT count(*) FROM media WHERE tenant = $1
                AND created_at >= $2 AND created_at < $3) AS "media_uploaded!",
             (SELECT count(*) FROM media WHERE tenant = $1 AND status = 'ready'
                AND updated_at >= $2 AND updated_at < $3) AS "media_ready!",
             (SELECT count(*) FROM media WHERE tenant = $1 AND status = 'failed'
                AND updated_at >= $2 AND updated_at < $3) AS "media_failed!",
             (SELECT count(*) FROM jobs WHERE tenant = $1 AND kind = 'email'
                AND status = 'succeeded' AND finished_at >= $2 AND finished_at < $3)
                AS "emails_sent!",
             (SELECT count(*) FROM jobs WHERE tenant = $1 AND kind = 'email'
                AND status = 'dead' AND finished_at >= $2 AND finished_at < $3)
                AS "emails_dead!",
             (SELECT count(*) FROM jobs WHERE tenant = $1 AND status = 'dead'
                AND finished_at >= $2 AND finished_at < $3) AS "jobs_dead!""#,
        tenant,
        since,
        until,
    )
    .fetch_one(db)
    .await
}

/// What one queue's jobs did in a window, from the `jobs` table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueueActivity {
    pub queue: String,
    /// Running now.
    pub in_flight: i64,
    /// Waiting for a retry now.
    pub retrying: i64,
    pub enqueued: i64,
    pub succeeded: i64,
    pub dead: i64,
    pub duration_p50_ms: Option<f64>,
    pub duration_p95_ms: Option<f64>,
    pub wait_p50_ms: Option<f64>,
    pub wait_p95_ms: Option<f64>,
}

/// Each queue's activity since `since` (and until `until`). `kinds` maps job kinds to their
/// queue (`JobKind::queue`), so the mapping lives in one place, in Rust.
pub async fn queue_activity(
    db: impl PgExecutor<'_>,
    kinds: &[(String, String)],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<QueueActivity>, sqlx::Error> {
    let (kind_names, queues): (Vec<String>, Vec<String>) = kinds.iter().cloned().unzip();
    sqlx::query_as!(
        QueueActivity,
        r#"WITH m AS (SELECT * FROM unnest($1::text[], $2::text[]) AS m(kind, queue))
           SELECT m.queue AS "queue!",
             count(*) FILTER (WHERE j.status = 'running') AS "in_flight!",
             count(*) FILTER (WHERE j.status = 'failed') AS "retrying!",
             count(*) FILTER (WHERE j.created_at >= $3 AND j.created_at < $4) AS "enqueued!",
             count(*) FILTER (WHERE j.status = 'succeeded'
                              AND j.finished_at >= $3 AND j.finished_at < $4) AS "succeeded!",
             count(*) FILTER (WHERE j.status = 'dead'
                              AND j.finished_at >= $3 AND j.finished_at < $4) AS "dead!",
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.finished_at - j.started_at) * 1000)
               FILTER (WHERE j.status = 'succeeded' AND j.finished_at >= $3 AND j.finished_at < $4)
               AS duration_p50_ms,
             percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM j.finished_at - j.started_at) * 1000)
               FILTER (WHERE j.status = 'succeeded' AND j.finished_at >= $3 AND j.finished_at < $4)
               AS duration_p95_ms,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.created_at) * 1000)
               FILTER (WHERE j.started_at >= $3 AND j.started_at < $4 AND j.attempts = 1)
               AS wait_p50_ms,
             percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.created_at) * 1000)
               FILTER (WHERE j.started_at >= $3 AND j.started_at < $4 AND j.attempts = 1)
               AS wait_p95_ms
           FROM m LEFT JOIN (
               -- Only rows that can count: each branch has a partial index. A job created or
               -- started in the window is live now or finished in it.
               SELECT * FROM jobs
               WHERE is_live OR finished_at >= $3
           ) j ON j.kind = m.kind
           GROUP BY m.queue
           ORDER BY m.queue"#,
        &kind_names,
        &queues,
        since,
        until,
    )
    .fetch_all(db)
    .await
}

/// Jobs committed but not yet confirmed by the broker, and how long the oldest has waited.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutboxBacklog {
    pub unpublished: i64,
    pub oldest_age_seconds: Option<f64>,
}

/// The outbox backlog now.
pub async fn outbox_backlog(db: impl PgExecutor<'_>) -> Result<OutboxBacklog, sqlx::Error> {
    sqlx::query_as!(
        OutboxBacklog,
        // A retry kept in Postgres, or a task waiting for its time or its queue, is unpublished
        // until it is due (`retry_at`): it counts from then.
        r#"SELECT count(*) AS "unpublished!",
                  extract(epoch FROM now() - min(coalesce(retry_at, created_at)))::float8
                      AS oldest_age_seconds
           FROM jobs
           WHERE published_at IS NULL AND status IN ('queued', 'failed')
             AND run_after <= now() AND (retry_at IS NULL OR retry_at <= now())"#
    )
    .fetch_one(db)
    .await
}

/// Dead jobs now, by kind.
pub async fn dead_by_kind(db: impl PgExecutor<'_>) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows =
        sqlx::query!(r#"SELECT kind, count(*) AS "count!" FROM jobs WHERE is_dead GROUP BY kind"#)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|r| (r.kind, r.count)).collect())
}

/// One queue's minute.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub queue: String,
    pub ready: Option<i32>,
    pub consumers: Option<i32>,
    pub in_flight: i32,
    pub enqueued: i32,
    pub succeeded: i32,
    pub dead: i32,
    pub duration_p50_ms: Option<f64>,
    pub duration_p95_ms: Option<f64>,
    pub wait_p50_ms: Option<f64>,
    pub wait_p95_ms: Option<f64>,
}

/// Stores a sample; a minute another scheduler already wrote is left as it is.
pub async fn record_sample(db: impl PgExecutor<'_>, s: &Sample) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO stats_samples (at, queue, ready, consumers, in_flight, enqueued, succeeded,
                                    dead, duration_p50_ms, duration_p95_ms, wait_p50_ms,
                                    wait_p95_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (at, queue) DO NOTHING",
        s.at,
        s.queue,
        s.ready,
        s.consumers,
        s.in_flight,
        s.enqueued,
        s.succeeded,
        s.dead,
        s.duration_p50_ms,
        s.duration_p95_ms,
        s.wait_p50_ms,
        s.wait_p95_ms,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Samples since `since`, oldest first.
pub async fn samples(
    db: impl PgExecutor<'_>,
    since: DateTime<Utc>,
) -> Result<Vec<Sample>, sqlx::Error> {
    sqlx::query_as!(
        Sample,
        "SELECT at, queue, ready, consumers, in_flight, enqueued, succeeded, dead,
                duration_p50_ms, duration_p95_ms, wait_p50_ms, wait_p95_ms
         FROM stats_samples WHERE at >= $1 ORDER BY at, queue",
        since,
    )
    .fetch_all(db)
    .await
}

/// Drops samples older than `before`.
pub async fn prune_samples(
    db: impl PgExecutor<'_>,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!("DELETE FROM stats_samples WHERE at < $1", before)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Records a finished transcode (and forgets those older than an hour: the table holds an
/// hour of transcodes at most).
pub async fn record_transcode(
    db: impl PgExecutor<'_>,
    job_id: uuid::Uuid,
    media_seconds: f64,
    cpu_seconds: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "WITH old AS (DELETE FROM video_transcodes WHERE finished_at < now() - interval '1 hour')
         INSERT INTO video_transcodes (job_id, media_seconds, cpu_seconds) VALUES ($1, $2, $3)
         ON CONFLICT (job_id) DO NOTHING",
        job_id,
        media_seconds,
        cpu_seconds,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Video seconds transcoded per ffmpeg CPU second since `since`; `None` without transcodes.
pub async fn video_realtime_factor(
    db: impl PgExecutor<'_>,
    since: DateTime<Utc>,
) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT sum(media_seconds) / nullif(sum(cpu_seconds), 0) FROM video_transcodes
         WHERE finished_at >= $1",
        since,
    )
    .fetch_one(db)
    .await
}
