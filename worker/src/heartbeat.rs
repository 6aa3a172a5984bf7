//! The worker's heartbeat: the `workers` row that says this process is alive, written every
//! sixth of `KILN_HEARTBEAT_TIMEOUT` on a connection of its own (a busy job pool must never
//! delay it into looking dead). The rescuer republishes the running jobs of a worker whose
//! heartbeat lapsed; a worker that exits marks itself stopped so that what it abandoned is
//! taken over at once.

use std::time::Duration;

use kiln_core::{
    Config,
    db::{
        self,
        workers::{Beat, Registration},
    },
    jobs::QueueKind,
};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{held::Held, slots::Slots};

/// What this worker reports: deliveries waiting for a slot and jobs running.
#[derive(Clone)]
pub struct Reporter {
    pub slots: Slots,
    pub held: Held,
}

impl Reporter {
    fn beat(&self) -> Beat {
        Beat {
            waiting: self.slots.waiting(),
            running: self.held.snapshot(),
        }
    }
}

/// A running heartbeat; [`Heartbeat::stop`] ends it.
pub struct Heartbeat {
    db: PgPool,
    id: uuid::Uuid,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What this process registers as.
pub fn registration(id: uuid::Uuid, queues: &[QueueKind]) -> Registration {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    Registration {
        id,
        host,
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        queues: queues.iter().map(|q| q.as_str().to_owned()).collect(),
    }
}

/// How often to heartbeat: six beats fit in the time-out, so a few slow ones are no loss.
pub fn interval(timeout: Duration) -> Duration {
    (timeout / 6).max(Duration::from_millis(100))
}

impl Heartbeat {
    /// Registers the worker (waiting for the first beat a few seconds at most: Postgres may be
    /// down, and the beat loop keeps trying) and heartbeats until stopped.
    pub async fn start(
        config: &Config,
        worker: Registration,
        report: Reporter,
    ) -> anyhow::Result<Self> {
        let db = db::connect_lazy(&config.database_url, 1)?;
        let every = interval(config.heartbeat_timeout);
        let first_beat = report.beat();
        let first = tokio::time::timeout(
            Duration::from_secs(3),
            db::workers::heartbeat(&db, &worker, &first_beat),
        );
        match first.await {
            Ok(Ok(())) => {
                tracing::info!(worker.id = %worker.id, host = worker.host, "worker registered")
            }
            Ok(Err(error)) => tracing::warn!(%error, "could not register the worker yet"),
            Err(_) => tracing::warn!("registering the worker timed out; retrying"),
        }
        let stop = CancellationToken::new();
        let id = worker.id;
        let task = tokio::spawn(beat(db.clone(), worker, report, every, stop.clone()));
        Ok(Self { db, id, stop, task })
    }

    /// Stops beating and marks the worker stopped.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.ok();
        if let Err(error) = db::workers::stop(&self.db, self.id).await {
            tracing::warn!(%error, "could not mark the worker stopped; its jobs wait for the heartbeat time-out");
        }
    }
}

async fn beat(
    db: PgPool,
    worker: Registration,
    report: Reporter,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        // Bounded: a beat stuck on a half-open connection must not hold up the next one.
        let report_now = report.beat();
        let beat = tokio::time::timeout(every, db::workers::heartbeat(&db, &worker, &report_now));
        let failed = match beat.await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("timed out".to_owned()),
        };
        if let Some(error) = failed {
            metrics::counter!("kiln_worker_heartbeat_failures_total").increment(1);
            tracing::warn!(error, "heartbeat failed");
        }
    }
}
