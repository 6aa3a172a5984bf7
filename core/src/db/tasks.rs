//! The `tasks` and `task_queues` tables: the app's own HTTP work, and the named queues whose
//! limits decide when it is sent (see the `tasks` migration). A task is a `task` job with the
//! same id; [`dispatch`] is the only way its job becomes due.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::jobs::Job;
use crate::jobs::{JobKind, TaskPayload};

/// A task queue's settings and state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskQueue {
    pub name: String,
    /// Tasks sent per second at most; absent: no rate limit.
    pub rate_per_sec: Option<f64>,
    /// How many may be sent at once after a quiet spell.
    pub burst: i32,
    /// Tasks sent and not yet finished at most; absent: no limit.
    pub max_concurrent: Option<i32>,
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `PUT /v1/task-queues/{name}` sets.
pub struct QueueSettings {
    pub rate_per_sec: Option<f64>,
    pub burst: i32,
    pub max_concurrent: Option<i32>,
    pub paused: bool,
}

/// Creates the queue with no limits unless it exists; `secret` signs its requests.
pub async fn ensure_queue(
    db: impl PgExecutor<'_>,
    tenant: &str,
    name: &str,
    secret: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO task_queues (tenant, name, secret) VALUES ($1, $2, $3)
         ON CONFLICT (tenant, name) DO NOTHING",
        tenant,
        name,
        secret,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Creates or changes a queue. A new rate starts with a full bucket; a lower burst trims it.
pub async fn put_queue(
    db: impl PgExecutor<'_>,
    tenant: &str,
    name: &str,
    settings: &QueueSettings,
    secret: &str,
) -> Result<TaskQueue, sqlx::Error> {
    sqlx::query_as!(
        TaskQueue,
        "INSERT INTO task_queues (tenant, name, rate_per_sec, burst, max_concurrent, paused,
                                  tokens, secret)
         VALUES ($1, $2, $3, $4, $5, $6, $4::int4::float8, $7)
         ON CONFLICT (tenant, name) DO UPDATE
         SET rate_per_sec = $3, burst = $4, max_concurrent = $5, paused = $6,
             tokens = least(task_queues.tokens, $4::int4::float8), updated_at = now()
         RETURNING name, rate_per_sec, burst, max_concurrent, paused, created_at, updated_at",
        tenant,
        name,
        settings.rate_per_sec,
        settings.burst,
        settings.max_concurrent,
        settings.paused,
        secret,
    )
    .fetch_one(db)
    .await
}

/// A tenant's queues, by name.
pub async fn list_queues(
    db: impl PgExecutor<'_>,
    tenant: &str,
) -> Result<Vec<TaskQueue>, sqlx::Error> {
    sqlx::query_as!(
        TaskQueue,
        "SELECT name, rate_per_sec, burst, max_concurrent, paused, created_at, updated_at
         FROM task_queues WHERE tenant = $1 ORDER BY name LIMIT 1000",
        tenant,
    )
    .fetch_all(db)
    .await
}

/// The secret that signs a queue's requests.
pub async fn queue_secret(
    db: impl PgExecutor<'_>,
    tenant: &str,
    name: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT secret FROM task_queues WHERE tenant = $1 AND name = $2",
        tenant,
        name
    )
    .fetch_optional(db)
    .await
}

/// A queue of any tenant, with its tasks waiting and in flight, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStats {
    pub tenant: String,
    pub name: String,
    pub rate_per_sec: Option<f64>,
    pub burst: i32,
    pub max_concurrent: Option<i32>,
    pub paused: bool,
    pub waiting: i64,
    pub sent: i64,
}

/// Every tenant's task queues (500 at most, paused first) with their waiting and in-flight
/// counts, each read off its partial index.
pub async fn queue_stats(db: impl PgExecutor<'_>) -> Result<Vec<QueueStats>, sqlx::Error> {
    sqlx::query_as!(
        QueueStats,
        r#"SELECT q.tenant, q.name, q.rate_per_sec, q.burst, q.max_concurrent, q.paused,
                  (SELECT count(*) FROM tasks t
                   WHERE t.tenant = q.tenant AND t.queue = q.name AND t.status = 'waiting')
                      AS "waiting!",
                  (SELECT count(*) FROM tasks t
                   WHERE t.tenant = q.tenant AND t.queue = q.name AND t.status = 'sent')
                      AS "sent!"
           FROM task_queues q
           ORDER BY q.paused DESC, q.tenant, q.name
           LIMIT 500"#,
    )
    .fetch_all(db)
    .await
}

/// A task as its tenant sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub queue: String,
    pub url: String,
    pub method: String,
    /// `waiting` (for its time or its queue), `sent`, `succeeded`, `failed` (for good) or
    /// `cancelled`.
    pub status: String,
    pub attempts: i32,
    /// When the next attempt may be sent.
    pub run_at: DateTime<Utc>,
    pub dedupe_key: Option<String>,
    /// The last answer's status code.
    pub response_status: Option<i32>,
    /// The first 1 KB of the last answer.
    pub response_body: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a task is apart from its tenant, time and dedupe key: as a recurring schedule keeps it
/// (checked once, when the schedule was made), to make one task per tick.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TaskTemplate {
    pub queue: String,
    pub url: String,
    pub method: String,
    pub headers: serde_json::Value,
    /// The body, base64.
    pub body: String,
    pub max_attempts: i32,
    pub timeout_secs: i32,
    pub min_backoff_ms: i64,
    pub max_backoff_ms: i64,
}

/// A task to enqueue.
pub struct NewTask<'a> {
    pub tenant: &'a str,
    pub queue: &'a str,
    pub url: &'a str,
    pub method: &'a str,
    pub headers: serde_json::Value,
    pub body: &'a [u8],
    pub run_at: DateTime<Utc>,
    pub dedupe_key: Option<&'a str>,
    pub max_attempts: i32,
    pub timeout_secs: i32,
    pub min_backoff_ms: i64,
    pub max_backoff_ms: i64,
    pub traceparent: Option<String>,
}

/// Inserts a task and its (not yet due) job, unless the tenant has a task with the same
/// `dedupe_key`: then that one is returned, with `false`. Concurrent repeats of one key wait
/// for each other (a transaction-scoped advisory lock), so exactly one task is made.
pub async fn insert(
    conn: &mut PgConnection,
    task: &NewTask<'_>,
) -> Result<(Task, bool), sqlx::Error> {
    if let Some(key) = task.dedupe_key {
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0))",
            task.tenant,
            key
        )
        .execute(&mut *conn)
        .await?;
        let existing = sqlx::query_as!(
            Task,
            "SELECT id, queue, url, method, status, attempts, run_at, dedupe_key,
                    response_status, response_body, last_error, created_at, updated_at
             FROM tasks WHERE tenant = $1 AND dedupe_key = $2",
            task.tenant,
            key,
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(existing) = existing {
            return Ok((existing, false));
        }
    }
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO jobs (id, tenant, kind, payload, max_attempts, traceparent, run_after,
                           retry_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'infinity', 'infinity')",
        id,
        task.tenant,
        JobKind::Task.as_str(),
        serde_json::json!(TaskPayload { task_id: id }),
        task.max_attempts,
        task.traceparent,
    )
    .execute(&mut *conn)
    .await?;
    let inserted = sqlx::query_as!(
        Task,
        "INSERT INTO tasks (id, tenant, queue, url, method, headers, body, timeout_secs,
                            min_backoff_ms, max_backoff_ms, dedupe_key, run_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING id, queue, url, method, status, attempts, run_at, dedupe_key,
                   response_status, response_body, last_error, created_at, updated_at",
        id,
        task.tenant,
        task.queue,
        task.url,
        task.method,
        task.headers,
        task.body,
        task.timeout_secs,
        task.min_backoff_ms,
        task.max_backoff_ms,
        task.dedupe_key,
        task.run_at,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((inserted, true))
}

/// A task of `tenant`.
pub async fn find(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
) -> Result<Option<Task>, sqlx::Error> {
    sqlx::query_as!(
        Task,
        "SELECT id, queue, url, method, status, attempts, run_at, dedupe_key, response_status,
                response_body, last_error, created_at, updated_at
         FROM tasks WHERE id = $1 AND tenant = $2",
        id,
        tenant,
    )
    .fetch_optional(db)
    .await
}

/// Cancels a task of `tenant` that has not started: it will never be sent. Its job ends as
/// succeeded (nothing is left to do), so a message already on its way is dropped. Returns the
/// task, or `None` when there is no such task or it has started.
pub async fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
    tenant: &str,
) -> Result<Option<Task>, sqlx::Error> {
    // The task's row first, as the dispatcher locks them (task, then job): no deadlock.
    sqlx::query!(
        "SELECT id FROM tasks WHERE id = $1 AND tenant = $2 FOR UPDATE",
        id,
        tenant
    )
    .fetch_optional(&mut *conn)
    .await?;
    let ended = sqlx::query!(
        "UPDATE jobs SET status = 'succeeded', finished_at = now(), last_error = 'cancelled',
                         published_at = coalesce(published_at, now())
         WHERE id = $1 AND tenant = $2 AND status = 'queued' AND attempts = 0",
        id,
        tenant,
    )
    .execute(&mut *conn)
    .await?;
    if ended.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query_as!(
        Task,
        "UPDATE tasks SET status = 'cancelled', updated_at = now()
         WHERE id = $1 AND tenant = $2
         RETURNING id, queue, url, method, status, attempts, run_at, dedupe_key,
                   response_status, response_body, last_error, created_at, updated_at",
        id,
        tenant,
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Queues with due waiting tasks looked at per pass.
const QUEUES_PER_PASS: i64 = 1000;

/// Sends what may be sent now: for each queue with due waiting tasks, as many as its rate
/// (the bucket, refilled since its last dispatch), its concurrency (tasks sent and not yet
/// finished) and `limit` allow, unless it is paused. Each queue is decided under its row's
/// lock, so any number of schedulers together stay within the limits. Returns the jobs made
/// due, for the caller to publish (the outbox relay sends any it cannot).
pub async fn dispatch(db: &PgPool, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    // Only queues that can send now: not paused, with a due task, a whole token (when rated)
    // and room under their concurrency. However many queues a tenant has that cannot, they
    // never crowd out another's; the longest idle go first. One index probe per queue.
    let queues = sqlx::query!(
        r#"SELECT q.tenant, q.name AS queue FROM task_queues q
           WHERE NOT q.paused
             AND EXISTS (SELECT 1 FROM tasks t
                         WHERE t.tenant = q.tenant AND t.queue = q.name
                           AND t.status = 'waiting' AND t.run_at <= now())
             AND (q.rate_per_sec IS NULL
                  OR least(q.burst::float8,
                           q.tokens + extract(epoch FROM now() - q.refilled_at)::float8
                                      * q.rate_per_sec) >= 1)
             AND (q.max_concurrent IS NULL
                  OR (SELECT count(*) FROM tasks t
                      WHERE t.tenant = q.tenant AND t.queue = q.name AND t.status = 'sent')
                     < q.max_concurrent)
           ORDER BY q.refilled_at
           LIMIT $1"#,
        QUEUES_PER_PASS,
    )
    .fetch_all(db)
    .await?;
    let mut due = Vec::new();
    for queue in queues {
        // One queue's failure (a deadlock, say) costs only that queue's turn.
        let dispatched = async {
            let mut tx = db.begin().await?;
            let jobs = dispatch_queue(&mut tx, &queue.tenant, &queue.queue, limit).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(jobs)
        };
        match dispatched.await {
            Ok(jobs) => due.extend(jobs),
            Err(error) => {
                tracing::warn!(%error, tenant = queue.tenant, queue = queue.queue, "dispatch failed")
            }
        }
    }
    Ok(due)
}

async fn dispatch_queue(
    conn: &mut PgConnection,
    tenant: &str,
    queue: &str,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    let Some(state) = sqlx::query!(
        r#"SELECT paused, max_concurrent, rate_per_sec,
                  CASE WHEN rate_per_sec IS NULL THEN NULL
                       ELSE least(burst::float8,
                                  tokens + extract(epoch FROM now() - refilled_at)::float8
                                           * rate_per_sec)
                  END AS tokens
           FROM task_queues WHERE tenant = $1 AND name = $2
           FOR UPDATE"#,
        tenant,
        queue,
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Vec::new());
    };
    if state.paused {
        return Ok(Vec::new());
    }
    let mut room = limit;
    if let Some(tokens) = state.tokens {
        // Whole tokens only: a fraction is the next task's wait.
        room = room.min(tokens.floor() as i64);
    }
    if let Some(max) = state.max_concurrent {
        let in_flight = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM tasks
               WHERE tenant = $1 AND queue = $2 AND status = 'sent'"#,
            tenant,
            queue,
        )
        .fetch_one(&mut *conn)
        .await?;
        room = room.min(i64::from(max) - in_flight);
    }
    if room <= 0 {
        return Ok(Vec::new());
    }
    let ids = sqlx::query_scalar!(
        "UPDATE tasks SET status = 'sent', updated_at = now()
         WHERE id IN (SELECT id FROM tasks
                      WHERE tenant = $1 AND queue = $2 AND status = 'waiting'
                        AND run_at <= now()
                      ORDER BY run_at LIMIT $3
                      FOR UPDATE SKIP LOCKED)
         RETURNING id",
        tenant,
        queue,
        room,
    )
    .fetch_all(&mut *conn)
    .await?;
    // The bucket as of now (when rated), and the queue's turn taken: `refilled_at` orders the
    // next pass, the longest idle first.
    let sent = ids.len() as f64;
    sqlx::query!(
        "UPDATE task_queues
         SET tokens = CASE WHEN rate_per_sec IS NULL THEN tokens
                           ELSE least(burst::float8,
                                      tokens + extract(epoch FROM now() - refilled_at)::float8
                                               * rate_per_sec) - $3
                      END,
             refilled_at = now()
         WHERE tenant = $1 AND name = $2",
        tenant,
        queue,
        sent,
    )
    .execute(&mut *conn)
    .await?;
    // Due now. The caller publishes them; the relay only if that fails (after 30 s, so it
    // does not send a retry alongside the caller).
    sqlx::query_as!(
        Job,
        "UPDATE jobs SET run_after = now() + interval '30 seconds', retry_at = now()
         WHERE id = ANY($1)
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        &ids,
    )
    .fetch_all(&mut *conn)
    .await
}

/// A task to send, with the secret of its queue.
pub struct Outgoing {
    pub id: Uuid,
    pub tenant: String,
    pub status: String,
    pub url: String,
    pub method: String,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    pub timeout_secs: i32,
    pub min_backoff_ms: i64,
    pub max_backoff_ms: i64,
    pub secret: Option<String>,
}

/// The task behind a `task` job, for the worker.
pub async fn outgoing(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Outgoing>, sqlx::Error> {
    sqlx::query_as!(
        Outgoing,
        r#"SELECT t.id, t.tenant, t.status, t.url, t.method, t.headers, t.body, t.timeout_secs,
                  t.min_backoff_ms, t.max_backoff_ms, q.secret AS "secret?"
           FROM tasks t LEFT JOIN task_queues q ON q.tenant = t.tenant AND q.name = t.queue
           WHERE t.id = $1"#,
        id,
    )
    .fetch_optional(db)
    .await
}

/// What an attempt got, for the task's record.
pub struct Answered<'a> {
    pub attempt: i32,
    pub response_status: Option<i32>,
    pub response_body: &'a str,
    pub error: Option<&'a str>,
}

/// Records an attempt's answer and, with `status`, where the task now is (`succeeded`,
/// `failed`); `None` leaves the status to [`park_for_retry`].
pub async fn record_answer(
    db: impl PgExecutor<'_>,
    id: Uuid,
    answered: &Answered<'_>,
    status: Option<&str>,
) -> Result<(), sqlx::Error> {
    let error = answered.error.map(super::jobs::storable);
    sqlx::query!(
        "UPDATE tasks
         SET attempts = $2, response_status = $3, response_body = $4, last_error = $5,
             status = coalesce($6, status), updated_at = now()
         -- A late copy of an older attempt never overwrites a newer one's record.
         WHERE id = $1 AND attempts <= $2",
        id,
        answered.attempt,
        answered.response_status,
        answered.response_body,
        error.as_deref(),
        status,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records a failed attempt whose retry goes back to the task's queue: the task waits again
/// from `wait` on (its queue's limits apply to the retry too), and its job is parked, not due,
/// until the dispatcher sends it. One transaction, so a crash leaves either both or neither.
/// Returns whether the attempt was still the job's current one.
pub async fn park_for_retry(
    db: &PgPool,
    id: Uuid,
    attempt: i32,
    error: &str,
    wait: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let error = super::jobs::storable(error);
    let mut tx = db.begin().await?;
    let parked = sqlx::query!(
        "UPDATE jobs SET status = 'failed', last_error = $3, published_at = NULL,
                         retry_at = 'infinity', run_after = 'infinity'
         WHERE id = $1 AND status = 'running' AND attempts = $2",
        id,
        attempt,
        &*error,
    )
    .execute(&mut *tx)
    .await?;
    if parked.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE tasks SET status = 'waiting', run_at = now() + make_interval(secs => $2),
                          updated_at = now()
         WHERE id = $1",
        id,
        wait.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Marks a task failed for good inside a burial's transaction.
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    error: &str,
) -> Result<(), sqlx::Error> {
    let error = super::jobs::storable(error);
    sqlx::query!(
        "UPDATE tasks SET status = 'failed', last_error = coalesce(last_error, $2),
                          updated_at = now()
         WHERE id = $1 AND status <> 'cancelled'",
        id,
        &*error,
    )
    .execute(db)
    .await?;
    Ok(())
}
