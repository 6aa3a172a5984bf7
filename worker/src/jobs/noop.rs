//! `noop`: a job with no work, so what it costs is the queue's own cost (row, message,
//! delivery, status write, ack). `bench/queue.sh` measures Kiln's throughput with it.

use kiln_core::db::jobs::Job;

use super::{Classify, JobError};
use crate::Context;

pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    // A superseded attempt has nothing to undo: the newer one records the outcome.
    ctx.writes
        .mark_succeeded(job.id, job.attempts)
        .await
        .retry()?;
    Ok(())
}
