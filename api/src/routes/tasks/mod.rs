//! `/v1/tasks` and `/v1/task-queues` (scope `tasks`): the app's own HTTP work, which Kiln sends
//! signed, retried, delayed, deduplicated and within its queue's limits. The sending is the
//! worker's `task` job; when, the scheduler's dispatcher (see `kiln_core::db::tasks`).

pub mod create;
pub mod manage;
pub mod queues;
pub mod schedules;
pub mod validate;

use kiln_core::{db, delivery::signing, jobs::JobKind};

use crate::{auth::Caller, error::ApiError, state::AppState};
use validate::CheckedTask;

/// Writes checked tasks in the caller's transaction (creating their queues as needed); each
/// comes back with whether it is new (`false`: a repeat of its `dedupe_key`).
async fn insert_all(
    state: &AppState,
    caller: &Caller,
    trace: Option<String>,
    tasks: Vec<CheckedTask>,
) -> Result<Vec<(db::tasks::Task, bool)>, ApiError> {
    let mut tx = state.db.begin().await?;
    let mut queues: Vec<&str> = tasks.iter().map(|t| t.queue.as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    for queue in queues {
        db::tasks::ensure_queue(&mut *tx, &caller.tenant, queue, &signing::new_secret()).await?;
    }
    // Repeats of a dedupe key wait on its lock: taken in key order, two batches sharing keys
    // in other orders cannot deadlock. Answered in the request's order.
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by(|a, b| tasks[*a].dedupe_key.cmp(&tasks[*b].dedupe_key));
    let mut made = vec![None; tasks.len()];
    for index in order {
        let task = &tasks[index];
        let new = db::tasks::NewTask {
            tenant: &caller.tenant,
            queue: &task.queue,
            url: &task.url,
            method: &task.method,
            headers: task.headers.clone(),
            body: &task.body,
            run_at: task.run_at,
            dedupe_key: task.dedupe_key.as_deref(),
            max_attempts: task.max_attempts,
            timeout_secs: task.timeout_secs,
            min_backoff_ms: task.min_backoff_ms,
            max_backoff_ms: task.max_backoff_ms,
            traceparent: trace.clone(),
        };
        made[index] = Some(db::tasks::insert(&mut tx, &new).await?);
    }
    tx.commit().await?;
    let made: Vec<_> = made.into_iter().flatten().collect();
    let new = made.iter().filter(|(_, new)| *new).count();
    metrics::counter!("kiln_jobs_enqueued_total", "kind" => JobKind::Task.as_str())
        .increment(new as u64);
    Ok(made)
}
