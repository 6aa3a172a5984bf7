//! What the scheduler's rescuer reads and claims: live jobs whose message is gone.
//!
//! Every query here reads through `jobs_live_idx` (live jobs only), never an index of its own:
//! the columns it filters on are written by starts and failures, which must stay HOT updates.
//! A claim stamps `rescued_at`, so a job is republished at most once per `rescue_after` unless
//! an attempt started since (the rescue's message was used: a job whose worker dies on every
//! attempt is rescued after each), and `FOR UPDATE SKIP LOCKED` gives each row to one of
//! several schedulers.

use std::time::Duration;

use sqlx::PgExecutor;

use super::jobs::Job;

/// Jobs of one kind that should each have a message in their work queue now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub kind: String,
    pub jobs: i64,
}

/// Per kind, the live jobs whose message should be in the work queue (ready or held by a
/// worker): queued and published, or failed with the retry due. Unpublished ones are the outbox
/// relay's (a retry kept in Postgres is unpublished until the relay sends it); failed ones not
/// yet due are in a delay queue.
pub async fn expected_in_queues(db: impl PgExecutor<'_>) -> Result<Vec<Expected>, sqlx::Error> {
    sqlx::query_as!(
        Expected,
        r#"SELECT kind AS "kind!", count(*) AS "jobs!"
           FROM jobs
           WHERE is_live
             AND published_at IS NOT NULL
             AND (status = 'queued'
                  OR (status = 'failed' AND coalesce(retry_at, started_at) <= now()))
           GROUP BY kind"#,
    )
    .fetch_all(db)
    .await
}

/// Claims up to `limit` queued jobs of `kinds` published more than `after` ago, and failed ones
/// whose retry is overdue by that long (a failure recorded before retries had a due time counts
/// from its attempt's start).
pub async fn claim_overdue(
    db: impl PgExecutor<'_>,
    kinds: &[String],
    after: Duration,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "UPDATE jobs SET rescued_at = now()
         WHERE id IN (SELECT id FROM jobs
                      WHERE is_live AND kind = ANY($1)
                        AND ((status = 'queued'
                              AND published_at < now() - make_interval(secs => $2))
                             OR (status = 'failed' AND published_at IS NOT NULL
                                 AND coalesce(retry_at, started_at)
                                     < now() - make_interval(secs => $2)))
                        AND (rescued_at IS NULL OR rescued_at < started_at
                             OR rescued_at < now() - make_interval(secs => $2))
                      ORDER BY created_at
                      LIMIT $3
                      FOR UPDATE SKIP LOCKED)
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        kinds,
        after.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}

/// Claims up to `limit` running jobs that their worker no longer holds (see
/// [`super::workers`], "held": it stopped, its heartbeat lapsed, or its heartbeats stopped
/// listing the job), and records why on the job: if its attempts are used up, the worker that
/// receives it buries it with that reason.
/// The caller must have seen Postgres reachable for the whole `heartbeat_timeout`, or a
/// database outage would make every live worker look dead.
pub async fn claim_abandoned(
    db: impl PgExecutor<'_>,
    heartbeat_timeout: Duration,
    after: Duration,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "UPDATE jobs
         SET rescued_at = now(),
             last_error = format('the worker running attempt %s stopped or let it go', attempts)
         WHERE id IN (SELECT id FROM jobs
                      WHERE is_live AND status = 'running'
                        AND NOT coalesce(
                            (SELECT w.stopped_at IS NULL
                                    AND w.heartbeat_at > now() - make_interval(secs => $1)
                                    AND (jobs.id = ANY (w.running)
                                         OR w.heartbeat_at
                                            < jobs.started_at + make_interval(secs => $1 / 2))
                             FROM workers w WHERE w.id = jobs.worker_id),
                            jobs.started_at > now() - make_interval(secs => $1))
                        AND (rescued_at IS NULL OR rescued_at < started_at
                             OR rescued_at < now() - make_interval(secs => $2))
                      ORDER BY created_at
                      LIMIT $3
                      FOR UPDATE SKIP LOCKED)
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        heartbeat_timeout.as_secs_f64(),
        after.as_secs_f64(),
        limit,
    )
    .fetch_all(db)
    .await
}

/// Undoes the claims of jobs that could not be republished, so the next pass tries them.
pub async fn release(db: impl PgExecutor<'_>, ids: &[uuid::Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE jobs SET rescued_at = NULL WHERE id = ANY($1)", ids)
        .execute(db)
        .await?;
    Ok(())
}

/// The age of the oldest live job of each kind, in seconds.
pub async fn oldest_live_by_kind(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(String, f64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT kind AS "kind!",
                  extract(epoch FROM now() - min(created_at))::float8 AS "age_seconds!"
           FROM jobs WHERE is_live GROUP BY kind"#,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.kind, r.age_seconds)).collect())
}

/// Postgres' clock now: the rescuer measures every age on it, as the heartbeats are written.
pub async fn database_now(
    db: impl PgExecutor<'_>,
) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(db)
        .await
}
