//! The task dispatcher: makes the tasks of tenants' recurring schedules whose tick came, and
//! sends the app's HTTP tasks that are due, as fast as their queues'
//! rates and concurrency allow, and never a paused queue's (see `kiln_core::db::tasks`). The
//! limits are decided in Postgres under each queue's row lock, so any number of schedulers can
//! run it at once and together stay within them.

use std::time::Duration;

use kiln_core::queue::Publisher;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often the dispatcher looks: a due task, or a token of its queue's rate, waits at most
/// this long.
const INTERVAL: Duration = Duration::from_millis(250);
/// Tasks sent per queue and pass, at most.
const PER_QUEUE: i64 = 500;

/// Runs until `cancel` fires.
pub async fn run(db: PgPool, publisher: Publisher, cancel: CancellationToken) {
    loop {
        // Recurring tasks first: a tick's task may be due at once.
        match kiln_core::db::task_schedules::fire_due(&db).await {
            Ok(0) => {}
            Ok(made) => tracing::info!(made, "recurring tasks made"),
            Err(error) => tracing::warn!(%error, "recurring tasks pass failed"),
        }
        match kiln_core::db::tasks::dispatch(&db, PER_QUEUE).await {
            Ok(due) => {
                for job in &due {
                    // A failed publish leaves the row due and unpublished: the relay sends it.
                    kiln_core::queue::publish_committed(&db, &publisher, job).await;
                }
                if !due.is_empty() {
                    metrics::counter!("kiln_tasks_dispatched_total").increment(due.len() as u64);
                    tracing::debug!(sent = due.len(), "tasks dispatched");
                }
            }
            Err(error) => tracing::warn!(%error, "task dispatch pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
