//! The rescuer: every live job is either moving or visibly dead.
//!
//! The outbox relay resends only what was never confirmed. Once a confirmed message is gone (a
//! queue purged or redeclared, a retry lost on its way out of a delay queue, a node lost), or
//! the worker holding it died, the job's row would stay live forever. Each pass republishes:
//!
//! - running jobs whose worker stopped, vanished or stopped heartbeating for
//!   `KILN_HEARTBEAT_TIMEOUT` — but only once this rescuer has itself seen Postgres reachable
//!   for that long, so a database outage (which stops every heartbeat) never makes every
//!   running job look abandoned;
//! - queued jobs published more than `KILN_RESCUE_AFTER` ago and failed jobs whose retry is
//!   that overdue, in a queue that holds fewer messages (ready, plus those live workers hold
//!   waiting for a slot) than it has jobs that should have one: some message is missing. A long but intact backlog is left
//!   alone rather than doubled every window; once it drains, a job still without its message
//!   is found.
//!
//! A republished job whose original message turns up after all is harmless: the worker that
//! gets the second copy finds it finished, or running on a live worker, and drops it. Each job
//! is republished at most once per `KILN_RESCUE_AFTER` (`rescued_at`); a job whose attempts are
//! used up is buried by the worker that receives it, with the reason recorded here. Several
//! schedulers may run this at once: claims are `FOR UPDATE SKIP LOCKED`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kiln_core::{
    db::{self, jobs::Job},
    jobs::{JobKind, QueueKind},
    queue::Publisher,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows claimed per query; the next pass takes the rest.
const BATCH: i64 = 500;
/// Workers not heard of for this long are forgotten.
const FORGET_WORKERS_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How the rescuer judges a job lost.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `KILN_RESCUE_AFTER`.
    pub rescue_after: Duration,
    /// `KILN_HEARTBEAT_TIMEOUT`.
    pub heartbeat_timeout: Duration,
}

impl Settings {
    /// A few passes per shortest period, so a lost job waits little beyond its period.
    pub fn interval(&self) -> Duration {
        (self.rescue_after.min(self.heartbeat_timeout) / 4)
            .clamp(Duration::from_millis(200), Duration::from_secs(10))
    }
}

/// One rescuer's memory between passes.
#[derive(Debug, Default)]
pub struct Rescuer {
    /// Since when (Postgres' clock) every pass reached Postgres; `None` after a failed one.
    reachable_since: Option<DateTime<Utc>>,
    /// When the last pass reached Postgres: a long gap since (a pass that hung, a paused
    /// process) may hide an outage, so watching starts over.
    last_seen: Option<DateTime<Utc>>,
}

/// Runs until `cancel` fires.
pub async fn run(db: PgPool, publisher: Publisher, settings: Settings, cancel: CancellationToken) {
    let mut rescuer = Rescuer::default();
    loop {
        match rescuer.pass(&db, &publisher, &settings).await {
            Ok(0) => {}
            Ok(rescued) => tracing::info!(rescued, "rescued jobs whose message was gone"),
            Err(error) => tracing::warn!(%error, "rescue pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval()) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

impl Rescuer {
    /// One pass; returns how many jobs were republished.
    pub async fn pass(
        &mut self,
        db: &PgPool,
        publisher: &Publisher,
        settings: &Settings,
    ) -> anyhow::Result<usize> {
        let result = self.try_pass(db, publisher, settings).await;
        if result
            .as_ref()
            .is_err_and(|e| e.downcast_ref::<sqlx::Error>().is_some())
        {
            self.reachable_since = None;
        }
        result
    }

    async fn try_pass(
        &mut self,
        db: &PgPool,
        publisher: &Publisher,
        settings: &Settings,
    ) -> anyhow::Result<usize> {
        let now = db::rescue::database_now(db).await?;
        let gap = self
            .last_seen
            .replace(now)
            .and_then(|last| (now - last).to_std().ok());
        if gap.is_none_or(|gap| gap > settings.heartbeat_timeout / 2) {
            self.reachable_since = Some(now);
        }
        let since = *self.reachable_since.get_or_insert(now);
        let mut rescued = 0;
        let watched = (now - since).to_std().unwrap_or_default();
        if watched >= settings.heartbeat_timeout {
            let abandoned = db::rescue::claim_abandoned(
                db,
                settings.heartbeat_timeout,
                settings.rescue_after,
                BATCH,
            )
            .await?;
            rescued += republish(db, publisher, abandoned).await?;
        }
        for (queue, missing) in queues_missing_messages(db, publisher, settings).await? {
            let kinds: Vec<String> = kinds_of(queue).map(|k| k.as_str().to_owned()).collect();
            // No more than the queue is missing: the rest may have their message after all.
            let limit = missing.min(BATCH);
            let overdue =
                db::rescue::claim_overdue(db, &kinds, settings.rescue_after, limit).await?;
            rescued += republish(db, publisher, overdue).await?;
        }
        db::workers::prune(db, FORGET_WORKERS_AFTER).await?;
        Ok(rescued)
    }
}

fn kinds_of(queue: QueueKind) -> impl Iterator<Item = JobKind> {
    JobKind::ALL.into_iter().filter(move |k| k.queue() == queue)
}

/// The work queues that hold fewer messages than they have jobs waiting for one, with how many
/// they lack.
async fn queues_missing_messages(
    db: &PgPool,
    publisher: &Publisher,
    settings: &Settings,
) -> anyhow::Result<Vec<(QueueKind, i64)>> {
    let expected = db::rescue::expected_in_queues(db).await?;
    if expected.is_empty() {
        return Ok(Vec::new());
    }
    let workers = db::workers::alive_by_queue(db, settings.heartbeat_timeout).await?;
    // Without the broker nothing could be republished anyway.
    let depths = publisher.queue_stats().await?;
    let mut missing = Vec::new();
    for queue in QueueKind::ALL {
        let waiting: i64 = kinds_of(queue)
            .filter_map(|k| expected.iter().find(|e| e.kind == k.as_str()))
            .map(|e| e.jobs)
            .sum();
        let ready = depths
            .iter()
            .find(|d| d.queue == queue.as_str())
            .map_or(0, |d| i64::from(d.ready));
        let held = workers
            .iter()
            .find(|w| w.queue == queue.as_str())
            .map_or(0, |w| w.waiting);
        if waiting > ready + held {
            tracing::debug!(
                queue = queue.as_str(),
                waiting,
                ready,
                held,
                "queue is missing messages"
            );
            missing.push((queue, waiting - ready - held));
        }
    }
    Ok(missing)
}

/// Publishes claimed jobs; stops at the first failure (the broker is probably down) and
/// releases the claims of the rest so the next pass can try them again.
async fn republish(db: &PgPool, publisher: &Publisher, jobs: Vec<Job>) -> anyhow::Result<usize> {
    let mut sent = 0;
    for (n, job) in jobs.iter().enumerate() {
        let envelope = match job.envelope() {
            Ok(envelope) => envelope,
            // A kind this version does not know: a newer process's job, left to it.
            Err(unknown) => {
                tracing::warn!(job.id = %job.id, %unknown, "cannot rescue a job of this kind");
                continue;
            }
        };
        if let Err(error) = publisher.publish(&envelope).await {
            let rest: Vec<_> = jobs[n..].iter().map(|j| j.id).collect();
            db::rescue::release(db, &rest).await?;
            return Err(anyhow::Error::from(error).context(format!("republishing job {}", job.id)));
        }
        tracing::info!(job.id = %job.id, job.kind = job.kind, from = job.status, attempts = job.attempts, "job rescued");
        metrics::counter!("kiln_jobs_rescued_total", "kind" => job.kind.clone(), "from" => job.status.clone())
            .increment(1);
        sent += 1;
    }
    Ok(sent)
}
