//! Operators' numbers that no single job produces: queue depths and consumers (from the
//! broker), the outbox backlog and dead jobs (from Postgres), as Prometheus gauges every few
//! seconds; and once a minute a per-queue sample of the last minute's activity, kept in
//! `stats_samples` for the dashboard's charts.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use kiln_core::{
    db::{self, stats::Sample},
    jobs::{JobKind, QueueKind},
    queue::{Publisher, QueueStats},
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often the gauges are refreshed.
const INTERVAL: Duration = Duration::from_secs(5);
/// How long samples are kept.
const RETENTION_DAYS: i64 = 7;

/// Runs until `cancel` fires; a worker counts as alive while its heartbeat is younger than
/// `heartbeat_timeout`.
pub async fn run(
    db: PgPool,
    publisher: Publisher,
    heartbeat_timeout: Duration,
    cancel: CancellationToken,
) {
    let mut last_sampled: Option<DateTime<Utc>> = None;
    loop {
        let queues = match publisher.queue_stats().await {
            Ok(queues) => {
                export_queues(&queues);
                Some(queues)
            }
            Err(error) => {
                tracing::debug!(%error, "queue depths unavailable");
                None
            }
        };
        if let Err(error) = export_postgres(&db, heartbeat_timeout).await {
            tracing::debug!(%error, "outbox and dead-job gauges unavailable");
        }
        let minute = Utc::now().duration_trunc(chrono::Duration::minutes(1)).ok();
        if let Some(minute) = minute
            && last_sampled != Some(minute)
        {
            match sample(&db, queues.as_deref(), minute).await {
                Ok(()) => last_sampled = Some(minute),
                Err(error) => tracing::warn!(%error, "could not record the minute's sample"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

fn export_queues(queues: &[QueueStats]) {
    for q in queues {
        if q.queue == "dead" {
            metrics::gauge!("kiln_queue_dead_messages").set(f64::from(q.ready));
        } else {
            let queue = q.queue.clone();
            metrics::gauge!("kiln_queue_ready_messages", "queue" => queue.clone())
                .set(f64::from(q.ready));
            metrics::gauge!("kiln_queue_consumers", "queue" => queue).set(f64::from(q.consumers));
        }
    }
}

async fn export_postgres(db: &PgPool, heartbeat_timeout: Duration) -> Result<(), sqlx::Error> {
    let backlog = db::stats::outbox_backlog(db).await?;
    metrics::gauge!("kiln_outbox_unpublished_jobs").set(backlog.unpublished as f64);
    metrics::gauge!("kiln_outbox_oldest_age_seconds")
        .set(backlog.oldest_age_seconds.unwrap_or(0.0));
    let dead = db::stats::dead_by_kind(db).await?;
    for kind in JobKind::ALL {
        let count = dead
            .iter()
            .find(|(k, _)| k == kind.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("kiln_dead_jobs", "kind" => kind.as_str()).set(count as f64);
    }
    let oldest = db::rescue::oldest_live_by_kind(db).await?;
    for kind in JobKind::ALL {
        let age = oldest
            .iter()
            .find(|(k, _)| k == kind.as_str())
            .map_or(0.0, |(_, age)| *age);
        metrics::gauge!("kiln_oldest_live_job_age_seconds", "kind" => kind.as_str()).set(age);
    }
    let alive = db::workers::alive_by_queue(db, heartbeat_timeout).await?;
    for queue in QueueKind::ALL {
        let workers = alive
            .iter()
            .find(|w| w.queue == queue.as_str())
            .map_or(0, |w| w.workers);
        metrics::gauge!("kiln_workers_alive", "queue" => queue.as_str()).set(workers as f64);
    }
    // The worker sets this when it takes a backup; from the table it survives restarts.
    if let Some(last) = db::backups::list(db).await?.first() {
        metrics::gauge!("kiln_backup_last_success_timestamp_seconds")
            .set(last.created_at.timestamp() as f64);
    }
    Ok(())
}

/// Records the minute before `minute`, per queue, then prunes old samples.
async fn sample(
    db: &PgPool,
    queues: Option<&[QueueStats]>,
    minute: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let start = minute - chrono::Duration::minutes(1);
    let activity =
        db::stats::queue_activity(db, &kiln_core::jobs::kind_queue_names(), start, minute).await?;
    for a in activity {
        let broker = queues.and_then(|qs| qs.iter().find(|q| q.queue == a.queue));
        let sample = Sample {
            at: start,
            ready: broker.map(|q| q.ready as i32),
            consumers: broker.map(|q| q.consumers as i32),
            in_flight: a.in_flight as i32,
            enqueued: a.enqueued as i32,
            succeeded: a.succeeded as i32,
            dead: a.dead as i32,
            duration_p50_ms: a.duration_p50_ms,
            duration_p95_ms: a.duration_p95_ms,
            wait_p50_ms: a.wait_p50_ms,
            wait_p95_ms: a.wait_p95_ms,
            queue: a.queue,
        };
        db::stats::record_sample(db, &sample).await?;
    }
    db::stats::prune_samples(db, minute - chrono::Duration::days(RETENTION_DAYS)).await?;
    Ok(())
}
