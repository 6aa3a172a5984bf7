//! The `jobs` table: the outbox that makes enqueueing transactional, and the record of every
//! attempt.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::workers::Starter;
use crate::jobs::{Envelope, JobKind};

/// A job row.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub tenant: Option<String>,
    pub kind: String,
    pub payload: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The W3C traceparent of what enqueued it.
    pub traceparent: Option<String>,
}

impl Job {
    /// The message that announces this job's next attempt.
    pub fn envelope(&self) -> Result<Envelope, crate::jobs::UnknownValue> {
        Ok(Envelope {
            id: self.id,
            kind: self.kind.parse::<JobKind>()?,
            attempt: self.attempts + 1,
            enqueued_at: self.created_at,
            payload: self.payload.clone(),
            traceparent: self.traceparent.clone(),
        })
    }
}

/// A job to enqueue.
#[derive(Debug)]
pub struct NewJob<'a> {
    pub id: Uuid,
    pub tenant: Option<&'a str>,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub max_attempts: i32,
    /// The trace this job continues (see [`crate::trace_context`]).
    pub traceparent: Option<String>,
}

/// Inserts a job row; call it inside the transaction of the change that causes the job.
pub async fn insert(db: impl PgExecutor<'_>, job: &NewJob<'_>) -> Result<Job, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "INSERT INTO jobs (id, tenant, kind, payload, max_attempts, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        job.id,
        job.tenant,
        job.kind.as_str(),
        job.payload,
        job.max_attempts,
        job.traceparent,
    )
    .fetch_one(db)
    .await
}

/// Records that the broker confirmed the job's message, on a row the relay would send again: a
/// running or finished job needs no record (its attempt's outcome writes one), and writing it
/// would be an update that cannot be HOT (`published_at` is in the relay's index predicate).
///
/// A failed job whose retry waits in Postgres ([`mark_failed_until`]) until a time still ahead
/// is left alone: this record belongs to the message of an attempt that has ended since, and
/// writing it would keep the relay from sending the retry.
pub async fn mark_published(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE jobs SET published_at = now()
         WHERE id = $1 AND published_at IS NULL AND status IN ('queued', 'failed')
           AND NOT (status = 'failed' AND retry_at > now())",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// [`mark_published`] for the relay, which knows the attempt its message announced: a record
/// for an attempt that has run since (and failed, its retry waiting in Postgres) is dropped.
pub async fn mark_relayed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    attempts: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE jobs SET published_at = now()
         WHERE id = $1 AND attempts = $2 AND published_at IS NULL
           AND status IN ('queued', 'failed')",
        id,
        attempts,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A job as its tenant may see it.
pub async fn find_for_tenant(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "SELECT id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                created_at, published_at, started_at, finished_at, traceparent
         FROM jobs WHERE id = $1 AND tenant = $2",
        id,
        tenant,
    )
    .fetch_optional(db)
    .await
}

/// A tenant's jobs, newest first: at most `limit`, older (smaller id) than `before` if given,
/// of one kind and status if given.
pub async fn list_for_tenant(
    db: impl PgExecutor<'_>,
    tenant: &str,
    kind: Option<&str>,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "SELECT id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                created_at, published_at, started_at, finished_at, traceparent
         FROM jobs
         WHERE tenant = $1
           AND ($2::text IS NULL OR kind = $2)
           AND ($3::text IS NULL OR status = $3)
           AND ($4::uuid IS NULL OR id < $4)
         ORDER BY id DESC
         LIMIT $5",
        tenant,
        kind,
        status,
        before,
        limit,
    )
    .fetch_all(db)
    .await
}

/// A job by id, whoever owns it.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "SELECT id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                created_at, published_at, started_at, finished_at, traceparent
         FROM jobs WHERE id = $1",
        id,
    )
    .fetch_optional(db)
    .await
}

/// Starts an attempt: counts it, marks the job running and records the worker holding it.
/// Returns `None` when the job is finished (succeeded or dead), so a duplicate message changes
/// nothing, and when its worker holds it (see [`super::workers`]): a second message for it (a
/// rescue's, while the original sat in a backlog) is dropped, never taken over. A job still
/// `running` but no longer held was abandoned; its message starts a new attempt.
/// It changes no indexed column, so the update is HOT (see the `hot_job_updates` migration).
/// A started job was evidently published: the producer's record may come later or not at all
/// (see [`super::published_later`]), and the attempt's outcome fills in what is missing.
pub async fn start_attempt(
    db: impl PgExecutor<'_>,
    id: Uuid,
    starter: &Starter,
) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "UPDATE jobs
         SET status = 'running', attempts = attempts + 1, started_at = now(), finished_at = NULL,
             worker_id = $2
         WHERE id = $1
           AND ((status IN ('queued', 'failed')
                 -- A retry kept in Postgres is not due yet: this is a stale copy of an
                 -- earlier attempt's message, not its retry (the relay sends that).
                 AND NOT (status = 'failed' AND published_at IS NULL AND retry_at > now()))
                -- Not held (see `db::workers`): its worker is gone or let it go.
                OR (status = 'running'
                    AND NOT coalesce((SELECT w.stopped_at IS NULL
                                   AND w.heartbeat_at > now() - make_interval(secs => $3)
                                   AND (jobs.id = ANY (w.running)
                                        OR w.heartbeat_at
                                           < jobs.started_at + make_interval(secs => $3 / 2))
                            FROM workers w WHERE w.id = jobs.worker_id),
                           jobs.started_at > now() - make_interval(secs => $3))))
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        id,
        starter.worker,
        starter.heartbeat_timeout.as_secs_f64(),
    )
    .fetch_optional(db)
    .await
}

// The outcome of an attempt is recorded only while that attempt is still the job's current one
// (`status = 'running' AND attempts = $2`). A stale copy of a job — a redelivered message run
// alongside the original after a reconnect — can then never overwrite a newer outcome. Each
// returns whether the row was updated; `false` means the attempt was superseded.

/// Marks the job done.
pub async fn mark_succeeded(
    db: impl PgExecutor<'_>,
    id: Uuid,
    attempt: i32,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE jobs SET status = 'succeeded', last_error = NULL, finished_at = now(),
                         published_at = coalesce(published_at, started_at)
         WHERE id = $1 AND status = 'running' AND attempts = $2",
        id,
        attempt,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed attempt that will be retried in `retry_in` (when its retry message is due
/// back in the work queue; the rescuer republishes it if it is long overdue).
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    attempt: i32,
    error: &str,
    retry_in: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let error = storable(error);
    let done = sqlx::query!(
        "UPDATE jobs SET status = 'failed', last_error = $3,
                         retry_at = now() + make_interval(secs => $4),
                         published_at = coalesce(published_at, started_at)
         WHERE id = $1 AND status = 'running' AND attempts = $2",
        id,
        attempt,
        &*error,
        retry_in.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed attempt whose retry waits in Postgres (kinds whose
/// [`JobKind::retries_in_postgres`]): due in `retry_in`, unpublished, so the outbox relay sends
/// it once `run_after` has come. Unlike [`mark_failed`] this update is not HOT (`published_at`
/// is in the relay's index predicate); it happens a few times in a delivery's life. With
/// `refund` the attempt is given back: it never tried (its endpoint was busy).
pub async fn mark_failed_until(
    db: impl PgExecutor<'_>,
    id: Uuid,
    attempt: i32,
    error: &str,
    retry_in: std::time::Duration,
    refund: bool,
) -> Result<bool, sqlx::Error> {
    let error = storable(error);
    let done = sqlx::query!(
        "UPDATE jobs SET status = 'failed', last_error = $3,
                         retry_at = now() + make_interval(secs => $4),
                         run_after = now() + make_interval(secs => $4),
                         published_at = NULL,
                         attempts = attempts - CASE WHEN $5 THEN 1 ELSE 0 END
         WHERE id = $1 AND status = 'running' AND attempts = $2",
        id,
        attempt,
        &*error,
        retry_in.as_secs_f64(),
        refund,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives up on a job: permanent failure, or out of attempts. The error is kept for operators.
pub async fn mark_dead(
    db: impl PgExecutor<'_>,
    id: Uuid,
    attempt: i32,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let error = storable(error);
    let done = sqlx::query!(
        "UPDATE jobs SET status = 'dead', last_error = $3, finished_at = now(),
                         published_at = coalesce(published_at, started_at)
         WHERE id = $1 AND status = 'running' AND attempts = $2",
        id,
        attempt,
        &*error,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Buries a live job whose message the broker dead-lettered by itself (delivery limit), unless
/// it moved on meanwhile: another attempt started (`attempt` no longer matches), or it runs on a
/// worker that holds it (see [`super::workers`], "held"), whose outcome must not be overwritten.
pub async fn bury_dead_lettered(
    db: impl PgExecutor<'_>,
    id: Uuid,
    attempt: i32,
    error: &str,
    heartbeat_timeout: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let error = storable(error);
    let done = sqlx::query!(
        "UPDATE jobs SET status = 'dead', last_error = $3, finished_at = now(),
                         published_at = coalesce(published_at, started_at, now())
         WHERE id = $1 AND attempts = $2 AND is_live
           -- A retry waiting in Postgres has no message of its own yet: this one is stale.
           AND NOT (status = 'failed' AND published_at IS NULL)
           AND (status <> 'running' OR NOT coalesce(
                 (SELECT w.stopped_at IS NULL
                         AND w.heartbeat_at > now() - make_interval(secs => $4)
                         AND (jobs.id = ANY (w.running)
                              OR w.heartbeat_at
                                 < jobs.started_at + make_interval(secs => $4 / 2))
                  FROM workers w WHERE w.id = jobs.worker_id),
                 jobs.started_at > now() - make_interval(secs => $4)))",
        id,
        attempt,
        &*error,
        heartbeat_timeout.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An error message as Postgres can store it: a NUL (which an SMTP reply or a file name may
/// carry) would make the write of the outcome fail, and retrying it would never succeed.
pub fn storable(error: &str) -> std::borrow::Cow<'_, str> {
    if error.contains('\0') {
        error.replace('\0', "\u{fffd}").into()
    } else {
        error.into()
    }
}

/// Which jobs an operator is looking at.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
}

/// Jobs matching `filter`, newest first; their payloads only `with_payload` (a list that does
/// not show them does not read them: they may be large, and hold personal data).
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &JobFilter,
    limit: i64,
    with_payload: bool,
) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        // No index covers `status` (updates stay HOT), so each status is found through the
        // partial index that holds it, one branch per index; a branch whose status was not
        // asked for is skipped at run time. Succeeded jobs (or all) come newest first off the
        // primary key: job ids are UUIDv7, so their order is their creation's.
        r#"SELECT id, tenant, kind,
                CASE WHEN $4 THEN payload ELSE 'null'::jsonb END AS "payload!",
                status, attempts, max_attempts, last_error,
                created_at, published_at, started_at, finished_at, traceparent
         FROM jobs
         WHERE id = ANY(ARRAY(
             (SELECT id FROM jobs
              WHERE is_live AND $1::text IN ('queued', 'running', 'failed')
                AND status = $1 AND ($2::text IS NULL OR kind = $2)
              ORDER BY created_at DESC LIMIT $3)
             UNION ALL
             (SELECT id FROM jobs
              WHERE is_dead AND $1::text = 'dead' AND ($2::text IS NULL OR kind = $2)
              ORDER BY created_at DESC LIMIT $3)
             UNION ALL
             (SELECT id FROM jobs
              WHERE ($1::text IS NULL OR $1::text = 'succeeded')
                AND ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2)
              ORDER BY id DESC LIMIT $3)))
         ORDER BY created_at DESC
         LIMIT $3"#,
        filter.status,
        filter.kind,
        limit,
        with_payload,
    )
    .fetch_all(db)
    .await
}

/// Gives a dead job a fresh set of attempts; the caller publishes it (or the relay will, since
/// it is unpublished again). Returns `None` unless the job exists and is dead.
pub async fn revive(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "UPDATE jobs
         SET status = 'queued', attempts = 0, last_error = NULL, published_at = NULL,
             started_at = NULL, finished_at = NULL, run_after = now(),
             rescued_at = NULL, retry_at = NULL
         WHERE id = $1 AND is_dead
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        id,
    )
    .fetch_optional(db)
    .await
}

/// Revives up to `limit` dead jobs, optionally of one kind, oldest first.
pub async fn revive_dead(
    db: impl PgExecutor<'_>,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "UPDATE jobs
         SET status = 'queued', attempts = 0, last_error = NULL, published_at = NULL,
             started_at = NULL, finished_at = NULL, run_after = now(),
             rescued_at = NULL, retry_at = NULL
         WHERE id IN (SELECT id FROM jobs
                      WHERE is_dead AND ($1::text IS NULL OR kind = $1)
                      ORDER BY created_at
                      LIMIT $2
                      FOR UPDATE SKIP LOCKED)
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        kind,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Deletes a dead job; returns whether there was one.
pub async fn discard_dead(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!("DELETE FROM jobs WHERE id = $1 AND is_dead", id)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Deletes up to `limit` dead jobs (of `kind`, if given), oldest first; returns their ids.
pub async fn discard_dead_matching(
    db: impl PgExecutor<'_>,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "DELETE FROM jobs
         WHERE id IN (SELECT id FROM jobs
                      WHERE is_dead AND ($1::text IS NULL OR kind = $1)
                      ORDER BY created_at
                      LIMIT $2
                      FOR UPDATE SKIP LOCKED)
         RETURNING id",
        kind,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Inserts a job unless one with the same `dedupe_key` exists; returns it only when inserted.
/// This is what makes a cron tick fire once however many schedulers see it.
pub async fn insert_deduplicated(
    db: impl PgExecutor<'_>,
    job: &NewJob<'_>,
    dedupe_key: &str,
) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "INSERT INTO jobs (id, tenant, kind, payload, max_attempts, dedupe_key, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        job.id,
        job.tenant,
        job.kind.as_str(),
        job.payload,
        job.max_attempts,
        dedupe_key,
        job.traceparent,
    )
    .fetch_optional(db)
    .await
}

/// The latest jobs with an error (retrying or dead), newest failure first, without payloads.
pub async fn recent_failures(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        r#"SELECT id, tenant, kind, 'null'::jsonb AS "payload!", status, attempts, max_attempts,
                last_error,
                created_at, published_at, started_at, finished_at, traceparent
         FROM jobs
         -- Live and dead jobs each have a partial index. A retrying job's failure is dated by
         -- its attempt's start (a failure writes no time of its own, to stay a cheap update).
         WHERE ((is_live AND status = 'failed') OR is_dead)
           AND last_error IS NOT NULL
         ORDER BY coalesce(finished_at, started_at, created_at) DESC
         LIMIT $1"#,
        limit,
    )
    .fetch_all(db)
    .await
}
