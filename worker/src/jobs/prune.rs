//! The `prune` job: deletes finished jobs past their retention (`KILN_RETAIN_SUCCEEDED`,
//! `KILN_RETAIN_DEAD`), in batches of short statements so it never holds many locks or a long
//! transaction, and stops after a time budget (the next run, a minute later by default, goes on).

use std::time::{Duration, Instant};

use kiln_core::db::{self, jobs::Job};

use super::{Classify, JobError};
use crate::Context;

/// Rows per statement.
const BATCH: i64 = 1_000;
/// Time one run spends deleting, at most.
const BUDGET: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    let started = Instant::now();
    for (status, retention) in [
        ("succeeded", ctx.config.retain_succeeded),
        ("dead", ctx.config.retain_dead),
    ] {
        let mut pruned = 0;
        loop {
            let deleted = db::retention::prune_finished(&ctx.db, status, retention, BATCH)
                .await
                .retry()?;
            pruned += deleted;
            if deleted < BATCH as u64 || started.elapsed() > BUDGET {
                break;
            }
        }
        metrics::counter!("kiln_jobs_pruned_total", "status" => status).increment(pruned);
        if pruned > 0 {
            tracing::info!(status, pruned, "pruned finished jobs");
        }
    }
    db::jobs::mark_succeeded(&ctx.db, job.id, job.attempts)
        .await
        .retry()?;
    Ok(())
}
