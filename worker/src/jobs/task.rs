//! The `task` job: one attempt of an app's HTTP task, signed like a webhook delivery (one
//! Standard Webhooks verifier serves both) with its queue's secret.
//!
//! Answers are read as a webhook's (`kiln_core::delivery::Answer`), except that a 410 ends only
//! this task. A retry goes back to the task's queue (its limits apply to retries too), due after
//! the task's own backoff: doubling from `min_backoff` to `max_backoff`, never before a
//! `Retry-After`.

use std::time::Duration;

use kiln_core::{
    db::{
        self,
        jobs::Job,
        tasks::{Answered, Outgoing},
    },
    delivery::{Answer, Attempt, Request, signing},
    jobs::TaskPayload,
};

use super::{Classify, JobError};
use crate::Context;

/// Sends the task and records what came of it.
pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    let payload: TaskPayload = serde_json::from_value(job.payload.clone()).abort()?;
    let Some(task) = db::tasks::outgoing(&ctx.db, payload.task_id)
        .await
        .retry()?
    else {
        return Err(JobError::Abort("the task no longer exists".into()));
    };
    if task.status == "cancelled" {
        tracing::info!("the task was cancelled; nothing to send");
        ctx.writes
            .mark_succeeded(job.id, job.attempts)
            .await
            .retry()?;
        return Ok(());
    }
    let headers = headers_of(&task);
    let secrets: Vec<&str> = task.secret.as_deref().into_iter().collect();
    let id = signing::message_id(task.id);
    let method = kiln_core::delivery::Method::from_bytes(task.method.as_bytes()).abort()?;
    let timeout = Duration::from_secs(u64::try_from(task.timeout_secs).unwrap_or(30));
    let attempt = ctx
        .delivery
        .send(&Request {
            method,
            url: &task.url,
            id: &id,
            secrets: &secrets,
            headers: &headers,
            body: &task.body,
            timeout: Some(timeout),
        })
        .await;
    let outcome = match attempt.answer {
        Answer::Delivered => "delivered",
        Answer::Gone => "gone",
        Answer::Retry { .. } => "retry",
        Answer::Final => "refused",
    };
    metrics::counter!("kiln_task_attempts_total", "outcome" => outcome).increment(1);
    let error = attempt.error.clone().unwrap_or_default();
    match attempt.answer {
        Answer::Delivered => succeeded(ctx, job, &attempt).await,
        Answer::Gone | Answer::Final => {
            record(ctx, job, &attempt, Some("failed")).await?;
            Err(JobError::Abort(error))
        }
        Answer::Retry { after } => {
            let last = job.attempts >= job.max_attempts;
            record(ctx, job, &attempt, last.then_some("failed")).await?;
            if last {
                return Err(JobError::Retry(error));
            }
            let wait = backoff(&task, job.attempts).max(after.unwrap_or_default());
            Err(JobError::RetryIn { error, wait })
        }
    }
}

/// The task's own headers, as stored (checked when it was accepted).
fn headers_of(task: &Outgoing) -> Vec<(String, String)> {
    task.headers
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The wait after failed attempt `attempt`: `min_backoff` doubled per attempt, at most
/// `max_backoff`.
fn backoff(task: &Outgoing, attempt: i32) -> Duration {
    let min = u64::try_from(task.min_backoff_ms).unwrap_or(0);
    let max = u64::try_from(task.max_backoff_ms).unwrap_or(min).max(min);
    let doublings = u32::try_from(attempt.clamp(1, 40) - 1).unwrap_or(0);
    let wait = min.saturating_mul(1u64 << doublings.min(40)).min(max);
    Duration::from_millis(wait)
}

/// Records the success of the attempt, the job's and the task's, in one transaction.
async fn succeeded(ctx: &Context, job: &Job, attempt: &Attempt) -> Result<(), JobError> {
    let mut tx = ctx.db.begin().await.retry()?;
    if !db::jobs::mark_succeeded(&mut *tx, job.id, job.attempts)
        .await
        .retry()?
    {
        tracing::info!("attempt superseded by a newer one");
        return Ok(());
    }
    db::tasks::record_answer(&mut *tx, job.id, &answered(job, attempt), Some("succeeded"))
        .await
        .retry()?;
    tx.commit().await.retry()?;
    tracing::info!(status = attempt.status, "task sent");
    Ok(())
}

fn answered<'a>(job: &Job, attempt: &'a Attempt) -> Answered<'a> {
    Answered {
        attempt: job.attempts,
        response_status: attempt.status.map(i32::from),
        response_body: &attempt.body_head,
        error: attempt.error.as_deref(),
    }
}

async fn record(
    ctx: &Context,
    job: &Job,
    attempt: &Attempt,
    status: Option<&str>,
) -> Result<(), JobError> {
    db::tasks::record_answer(&ctx.db, job.id, &answered(job, attempt), status)
        .await
        .retry()
}

/// Marks the task failed for good inside a burial's transaction.
pub async fn on_dead(
    conn: &mut sqlx::PgConnection,
    job: &Job,
    error: &str,
) -> Result<super::media::AfterCommit, sqlx::Error> {
    // The task's id is its job's: no payload to read, so no task is left `sent`.
    db::tasks::mark_failed(&mut *conn, job.id, error).await?;
    Ok(super::media::AfterCommit::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(min: i64, max: i64) -> Outgoing {
        Outgoing {
            id: uuid::Uuid::nil(),
            tenant: "t".into(),
            status: "sent".into(),
            url: "https://example.com".into(),
            method: "POST".into(),
            headers: serde_json::json!({"x-a": "1", "x-bad": 2}),
            body: Vec::new(),
            timeout_secs: 30,
            min_backoff_ms: min,
            max_backoff_ms: max,
            secret: None,
        }
    }

    #[test]
    fn backoff_doubles_from_min_to_max() {
        let t = task(1000, 5000);
        let waits: Vec<u64> = (1..=5).map(|a| backoff(&t, a).as_millis() as u64).collect();
        assert_eq!(waits, [1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff(&task(1000, 5000), 99).as_millis(), 5000);
    }

    #[test]
    fn only_string_headers_are_sent() {
        assert_eq!(
            headers_of(&task(1, 1)),
            [("x-a".to_owned(), "1".to_owned())]
        );
    }
}
