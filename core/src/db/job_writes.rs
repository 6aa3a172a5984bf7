//! Group commit for the per-job status writes on the hot path.
//!
//! Every job costs a few single-row writes: its insert when nothing else shares its transaction
//! (an email), `running` when a worker starts an attempt, `succeeded` when a handler with nothing
//! else to commit is done, and `published_at` once the broker confirmed its message (deferred
//! and written in bulk, see [`super::published_later`]). Alone, each is a statement and a
//! commit; at thousands of jobs per second those round trips, not the rows, are the limit.
//! [`JobWrites`] hands them to one task that writes everything requested while its rounds in
//! flight ran as one statement per kind of write: under load a round carries many rows, when
//! idle a write goes at once.
//!
//! Batching changes no outcome: a round that Postgres refuses (one row it cannot store) is
//! retried row by row, so the bad row fails only its own request; each row keeps its own condition (the same as
//! [`super::jobs::start_attempt`] and [`super::jobs::mark_succeeded`]) and each caller gets its
//! own row's answer. A round's rows are locked in id order, so concurrent rounds (of one process
//! or several) never deadlock. Each statement finds its rows by primary key, one probe per id,
//! so its cost follows the round's size, never the table's or the backlog's. Inserts of one
//! round commit together: a caller's job is committed when its answer arrives.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::{
    jobs::{Job, NewJob},
    published_later::PublishedLater,
    workers::Starter,
};

/// Rows per statement at most; more requests wait for the next round.
const MAX_ROUND: usize = 512;

/// Rounds running at once. More than one, because a round mostly waits (on its commit's
/// flush, on the network) and the next can be collected and sent meanwhile; few, because each
/// takes up to three pooled connections.
const ROUNDS_IN_FLIGHT: usize = 3;

/// A round's failure, shared by every request in it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct WriteError(Arc<sqlx::Error>);

impl WriteError {
    /// The database's error, for callers that classify it (unavailable or not).
    pub fn database_error(&self) -> &sqlx::Error {
        &self.0
    }
}

impl From<sqlx::Error> for WriteError {
    fn from(error: sqlx::Error) -> Self {
        Self(Arc::new(error))
    }
}

/// A [`NewJob`] that can wait in a round.
struct OwnedNewJob {
    id: Uuid,
    tenant: Option<String>,
    kind: crate::jobs::JobKind,
    payload: serde_json::Value,
    max_attempts: i32,
    traceparent: Option<String>,
}

/// Where one request's answer goes.
type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

enum Request {
    Insert(OwnedNewJob, Reply<Job>),
    Start(Uuid, Starter, Reply<Option<Job>>),
    Succeed(Uuid, i32, Reply<bool>),
}

/// The batching writer; cheap to clone. Its task lives as long as any clone.
#[derive(Clone)]
pub struct JobWrites {
    requests: mpsc::Sender<Request>,
    published: PublishedLater,
}

impl JobWrites {
    /// Starts the writers' tasks on the current runtime.
    pub fn spawn(db: PgPool) -> Self {
        let (requests, receiver) = mpsc::channel(4 * MAX_ROUND);
        let published = PublishedLater::spawn(db.clone());
        tokio::spawn(run(db, receiver));
        Self {
            requests,
            published,
        }
    }

    /// [`super::jobs::insert`] in a transaction of its own, batched: for jobs enqueued alone.
    pub async fn insert(&self, job: &NewJob<'_>) -> Result<Job, WriteError> {
        let job = OwnedNewJob {
            id: job.id,
            tenant: job.tenant.map(str::to_owned),
            kind: job.kind,
            payload: job.payload.clone(),
            max_attempts: job.max_attempts,
            traceparent: job.traceparent.clone(),
        };
        self.ask(|reply| Request::Insert(job, reply)).await
    }

    /// [`super::jobs::start_attempt`], batched.
    pub async fn start_attempt(
        &self,
        id: Uuid,
        starter: &Starter,
    ) -> Result<Option<Job>, WriteError> {
        let starter = *starter;
        self.ask(|reply| Request::Start(id, starter, reply)).await
    }

    /// [`super::jobs::mark_succeeded`], batched.
    pub async fn mark_succeeded(&self, id: Uuid, attempt: i32) -> Result<bool, WriteError> {
        self.ask(|reply| Request::Succeed(id, attempt, reply)).await
    }

    /// [`super::jobs::mark_published`], deferred by about a second and batched; returns at
    /// once. Retried if the write fails; what a record lost anyway costs is in
    /// [`super::published_later`].
    pub async fn record_published(&self, id: Uuid) {
        self.published.note(id).await;
    }

    /// Writes every deferred publish record now; call it before the process exits.
    pub async fn flush_published(&self) {
        self.published.flush().await;
    }

    async fn ask<T>(&self, request: impl FnOnce(Reply<T>) -> Request) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        let gone = || WriteError::from(sqlx::Error::PoolClosed);
        self.requests
            .send(request(reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(db: PgPool, mut receiver: mpsc::Receiver<Request>) {
    let mut round = Vec::with_capacity(MAX_ROUND);
    let mut deferred = Vec::new();
    let slots = Arc::new(Semaphore::new(ROUNDS_IN_FLIGHT));
    loop {
        // Requests pile up while every slot is busy: that is what makes rounds big under load.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        round.append(&mut deferred);
        if round.is_empty() {
            if receiver.recv_many(&mut round, MAX_ROUND).await == 0 {
                return; // every JobWrites is dropped
            }
        } else {
            while round.len() < MAX_ROUND {
                match receiver.try_recv() {
                    Ok(request) => round.push(request),
                    Err(_) => break,
                }
            }
        }
        let (mut inserts, mut succeeds) = (Vec::new(), Vec::new());
        let mut starts: Vec<(Uuid, Starter, Reply<Option<Job>>)> = Vec::new();
        for request in round.drain(..) {
            match request {
                // Two messages of one job in one round: the second waits for the next round,
                // so each start is its own attempt (one statement would count them as one).
                Request::Start(id, starter, reply) if starts.iter().any(|(i, ..)| *i == id) => {
                    deferred.push(Request::Start(id, starter, reply));
                }
                Request::Start(id, starter, reply) => starts.push((id, starter, reply)),
                Request::Insert(job, reply) => inserts.push((job, reply)),
                Request::Succeed(id, attempt, reply) => succeeds.push((id, attempt, reply)),
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            tokio::join!(
                insert_round(&db, inserts),
                start_round(&db, starts),
                succeed_round(&db, succeeds),
            );
            drop(slot);
        });
    }
}

async fn insert_round(db: &PgPool, requests: Vec<(OwnedNewJob, Reply<Job>)>) {
    if requests.is_empty() {
        return;
    }
    let jobs = || requests.iter().map(|(job, _)| job);
    let ids: Vec<Uuid> = jobs().map(|j| j.id).collect();
    let tenants: Vec<Option<String>> = jobs().map(|j| j.tenant.clone()).collect();
    let kinds: Vec<String> = jobs().map(|j| j.kind.as_str().to_owned()).collect();
    let payloads: Vec<serde_json::Value> = jobs().map(|j| j.payload.clone()).collect();
    let max_attempts: Vec<i32> = jobs().map(|j| j.max_attempts).collect();
    let traceparents: Vec<Option<String>> = jobs().map(|j| j.traceparent.clone()).collect();
    let inserted = sqlx::query_as!(
        Job,
        "INSERT INTO jobs (id, tenant, kind, payload, max_attempts, traceparent)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int4[],
                              $6::text[])
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        &ids,
        &tenants as &[Option<String>],
        &kinds,
        &payloads,
        &max_attempts,
        &traceparents as &[Option<String>],
    )
    .fetch_all(db)
    .await;
    match inserted {
        Ok(rows) => {
            let mut rows: HashMap<Uuid, Job> = rows.into_iter().map(|j| (j.id, j)).collect();
            for (job, reply) in requests {
                let answer = rows
                    .remove(&job.id)
                    .ok_or_else(|| WriteError::from(sqlx::Error::RowNotFound));
                let _ = reply.send(answer);
            }
        }
        Err(error) if is_rejected(&error) && requests.len() > 1 => {
            // One bad row fails only its own request: each is tried alone.
            for (job, reply) in requests {
                let new = NewJob {
                    id: job.id,
                    tenant: job.tenant.as_deref(),
                    kind: job.kind,
                    payload: job.payload,
                    max_attempts: job.max_attempts,
                    traceparent: job.traceparent,
                };
                let _ = reply.send(super::jobs::insert(db, &new).await.map_err(Into::into));
            }
        }
        Err(error) => fail_all(requests.into_iter().map(|(_, reply)| reply), error),
    }
}

async fn start_round(db: &PgPool, requests: Vec<(Uuid, Starter, Reply<Option<Job>>)>) {
    if requests.is_empty() {
        return;
    }
    let ids: Vec<Uuid> = requests.iter().map(|(id, ..)| *id).collect();
    let workers: Vec<Uuid> = requests.iter().map(|(_, s, _)| s.worker).collect();
    let timeouts: Vec<f64> = requests
        .iter()
        .map(|(_, s, _)| s.heartbeat_timeout.as_secs_f64())
        .collect();
    let started = sqlx::query_as!(
        Job,
        // Rows are found by key alone and the condition is read off the locked row: any
        // filter in the search lets the planner scan an index of every queued job (or of every
        // row version not yet vacuumed) instead of probing one key per id. `NO KEY UPDATE` is
        // the lock the update takes anyway; `UPDATE` would also block on foreign-key checks.
        // The condition is `jobs::start_attempt`'s: a job running on a live worker stays its.
        r#"WITH locked AS (
             SELECT jobs.id, wanted.worker,
                    (jobs.status IN ('queued', 'failed')
                     AND NOT (jobs.status = 'failed' AND jobs.published_at IS NULL
                              AND jobs.retry_at > now()))
                    OR (jobs.status = 'running'
                        AND NOT coalesce(
                            (SELECT w.stopped_at IS NULL
                                    AND w.heartbeat_at
                                        > now() - make_interval(secs => wanted.timeout)
                                    AND (jobs.id = ANY (w.running)
                                         OR w.heartbeat_at < jobs.started_at
                                            + make_interval(secs => wanted.timeout / 2))
                             FROM workers w WHERE w.id = jobs.worker_id),
                            jobs.started_at > now() - make_interval(secs => wanted.timeout)))
                    AS startable
             FROM unnest($1::uuid[], $2::uuid[], $3::float8[]) AS wanted(id, worker, timeout)
             JOIN jobs USING (id)
             ORDER BY jobs.id FOR NO KEY UPDATE OF jobs)
           UPDATE jobs
           SET status = 'running', attempts = attempts + 1, started_at = now(), finished_at = NULL,
               worker_id = locked.worker
           FROM locked
           WHERE jobs.id = locked.id AND locked.startable
           RETURNING jobs.id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                     created_at, published_at, started_at, finished_at, traceparent"#,
        &ids,
        &workers,
        &timeouts,
    )
    .fetch_all(db)
    .await;
    match started {
        Ok(rows) => {
            let mut rows: HashMap<Uuid, Job> = rows.into_iter().map(|j| (j.id, j)).collect();
            for (id, _, reply) in requests {
                let _ = reply.send(Ok(rows.remove(&id)));
            }
        }
        Err(error) if is_rejected(&error) && requests.len() > 1 => {
            for (id, starter, reply) in requests {
                let started = super::jobs::start_attempt(db, id, &starter).await;
                let _ = reply.send(started.map_err(Into::into));
            }
        }
        Err(error) => fail_all(requests.into_iter().map(|(.., reply)| reply), error),
    }
}

async fn succeed_round(db: &PgPool, requests: Vec<(Uuid, i32, Reply<bool>)>) {
    if requests.is_empty() {
        return;
    }
    let ids: Vec<Uuid> = requests.iter().map(|(id, ..)| *id).collect();
    let attempts: Vec<i32> = requests.iter().map(|(_, attempt, _)| *attempt).collect();
    let done = sqlx::query!(
        // Found by key alone, as in `start_round`. Answers are keyed by (job, attempt): a stale
        // attempt and the one that took over may share a round, and only the current one won.
        r#"WITH locked AS (
             SELECT jobs.id,
                    jobs.status = 'running' AND jobs.attempts = current.attempt AS is_current
             FROM unnest($1::uuid[], $2::int4[]) AS current(id, attempt) JOIN jobs USING (id)
             ORDER BY jobs.id FOR NO KEY UPDATE OF jobs)
           UPDATE jobs SET status = 'succeeded', last_error = NULL, finished_at = now(),
                           published_at = coalesce(jobs.published_at, jobs.started_at)
           FROM locked WHERE jobs.id = locked.id AND locked.is_current
           RETURNING jobs.id AS "id!", jobs.attempts AS "attempt!""#,
        &ids,
        &attempts,
    )
    .fetch_all(db)
    .await;
    match done {
        Ok(done) => {
            let done: HashSet<(Uuid, i32)> = done.into_iter().map(|r| (r.id, r.attempt)).collect();
            for (id, attempt, reply) in requests {
                let _ = reply.send(Ok(done.contains(&(id, attempt))));
            }
        }
        Err(error) if is_rejected(&error) && requests.len() > 1 => {
            for (id, attempt, reply) in requests {
                let done = super::jobs::mark_succeeded(db, id, attempt).await;
                let _ = reply.send(done.map_err(Into::into));
            }
        }
        Err(error) => fail_all(requests.into_iter().map(|(.., reply)| reply), error),
    }
}

/// Whether Postgres refused the statement itself (a row it cannot store, a constraint), as
/// opposed to being unreachable: only then can retrying the rows alone help, and only then
/// is it cheap (an outage would make every row wait for its own time-out).
fn is_rejected(error: &sqlx::Error) -> bool {
    // 22 data exception (a NUL in text, a bad value), 23 integrity constraint violation.
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// Gives every request of a failed statement the same error.
fn fail_all<T>(replies: impl IntoIterator<Item = Reply<T>>, error: sqlx::Error) {
    let error = WriteError::from(error);
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}
