//! The `workers` table: who is alive, what it consumes, and so which running jobs are held and
//! which were abandoned by a worker that died.
//!
//! A running job is **held** while its worker has not stopped, has heartbeaten within the
//! time-out, and either lists the job among those it runs or started it too recently (half a
//! time-out) for a heartbeat to list it. A job running on no registered worker (started before
//! this table existed, or before its worker's first heartbeat landed) is held for one time-out
//! after its start. A held job is never taken over: a second message for it is dropped. One that
//! is not held is abandoned: the next message for it starts a new attempt, and the rescuer sends
//! one. The same condition is written out in `jobs::start_attempt`, the batched start of
//! `job_writes`, `rescue::claim_abandoned` and `jobs::bury_dead_lettered`.

use std::time::Duration;

use sqlx::PgExecutor;
use uuid::Uuid;

/// The worker that starts an attempt, and how old a heartbeat may be before the jobs of its
/// holder count as abandoned. Every start names one, so a running job records who holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Starter {
    /// This process's `workers.id`.
    pub worker: Uuid,
    /// `KILN_HEARTBEAT_TIMEOUT`.
    pub heartbeat_timeout: Duration,
}

/// What a worker says about itself when it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: Uuid,
    pub host: String,
    pub pid: i32,
    /// Queue names without the namespace.
    pub queues: Vec<String>,
}

/// What a heartbeat reports.
#[derive(Debug, Clone, Default)]
pub struct Beat {
    /// Deliveries waiting for a slot, per queue: `{"media": 3}`.
    pub waiting: serde_json::Value,
    /// The jobs the worker runs now (taken before the write, so a job that started since is
    /// covered by the "too recent to list" rule instead).
    pub running: Vec<Uuid>,
}

/// Records a heartbeat, registering the worker with its first one: a worker that started while
/// Postgres was down registers as soon as it is back.
pub async fn heartbeat(
    db: impl PgExecutor<'_>,
    worker: &Registration,
    beat: &Beat,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO workers (id, host, pid, queues, waiting, running)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE
         SET heartbeat_at = now(), waiting = excluded.waiting, running = excluded.running",
        worker.id,
        worker.host,
        worker.pid,
        &worker.queues,
        beat.waiting,
        &beat.running,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks the worker gone: it exited, so whatever it still held may be taken over at once.
pub async fn stop(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE workers SET stopped_at = now() WHERE id = $1 AND stopped_at IS NULL",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A queue's live workers: how many, and the deliveries they hold waiting for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueWorkers {
    pub queue: String,
    pub workers: i64,
    pub waiting: i64,
}

/// Live workers (heartbeat younger than `timeout`, not stopped) per queue they consume.
pub async fn alive_by_queue(
    db: impl PgExecutor<'_>,
    timeout: Duration,
) -> Result<Vec<QueueWorkers>, sqlx::Error> {
    sqlx::query_as!(
        QueueWorkers,
        r#"SELECT queue AS "queue!", count(*) AS "workers!",
                  coalesce(sum((waiting ->> queue)::int8), 0)::int8 AS "waiting!"
           FROM workers, unnest(queues) AS queue
           WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => $1)
           GROUP BY queue
           ORDER BY queue"#,
        timeout.as_secs_f64(),
    )
    .fetch_all(db)
    .await
}

/// A worker as the dashboard lists it.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: Uuid,
    pub host: String,
    pub pid: i32,
    pub queues: Vec<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    /// Jobs it is running now.
    pub running: i64,
}

/// Every live worker, oldest first, with the jobs each runs now.
pub async fn list_alive(
    db: impl PgExecutor<'_>,
    timeout: Duration,
) -> Result<Vec<Worker>, sqlx::Error> {
    sqlx::query_as!(
        Worker,
        // What each one ran at its last heartbeat: no pass over the jobs at all.
        r#"SELECT w.id, w.host, w.pid, w.queues, w.started_at, w.heartbeat_at,
                  cardinality(w.running)::int8 AS "running!"
           FROM workers w
           WHERE w.stopped_at IS NULL AND w.heartbeat_at > now() - make_interval(secs => $1)
           ORDER BY w.started_at"#,
        timeout.as_secs_f64(),
    )
    .fetch_all(db)
    .await
}

/// Forgets workers that have not been heard of for `older_than`; returns how many.
pub async fn prune(db: impl PgExecutor<'_>, older_than: Duration) -> Result<u64, sqlx::Error> {
    let pruned = sqlx::query!(
        "DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => $1)",
        older_than.as_secs_f64(),
    )
    .execute(db)
    .await?;
    Ok(pruned.rows_affected())
}
