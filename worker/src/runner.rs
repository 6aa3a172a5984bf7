//! One delivery, start to finish.
//!
//! The row decides, not the message: a message for a finished job is acked without running
//! anything (duplicates are harmless), a running job whose worker died is taken over as a new
//! attempt, and the outcome is recorded in Postgres before the message is settled.

use std::{panic::AssertUnwindSafe, time::Duration};

use futures::FutureExt;
use kiln_core::{
    db::{self, jobs::Job},
    jobs::{Envelope, JobKind},
};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Context,
    jobs::{self, JobError},
};

/// Publishes of a retry message tried (1 s, 2 s, 4 s … apart) before it is left to the rescuer.
const RETRY_PUBLISH_TRIES: i32 = 6;

/// What to do with the message once the job's fate is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done (or a duplicate of a finished job).
    Ack,
    /// Give up: the broker moves the message to the dead queue.
    DeadLetter,
    /// Put it back for another attempt.
    Requeue,
}

/// Runs the job a message announces and says how to settle the message.
pub async fn handle(
    ctx: &Context,
    body: &[u8],
    routing_key: &str,
    shutdown: &CancellationToken,
) -> Settle {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => {
            // Garbage or an unknown kind: dead-letter it once, with the reason, instead of
            // looping forever.
            tracing::warn!(%error, bytes = body.len(), "undecodable message dead-lettered");
            metrics::counter!("kiln_messages_rejected_total", "reason" => "undecodable")
                .increment(1);
            let reason = format!("undecodable job message: {error}");
            return to_dead_queue(ctx, body, routing_key, &reason).await;
        }
    };
    // The job continues the trace of the request (or tick) that enqueued it.
    let parent = envelope
        .traceparent
        .as_deref()
        .and_then(kiln_core::trace_context::TraceContext::parse);
    let trace_id = parent.as_ref().map_or_else(
        || kiln_core::trace_context::TraceContext::root().trace_id,
        |p| p.trace_id.clone(),
    );
    let span = tracing::info_span!(
        "job",
        job.id = %envelope.id,
        job.kind = envelope.kind.as_str(),
        attempt = tracing::field::Empty,
        trace_id,
    );
    if let Some(parent) = &parent {
        kiln_core::telemetry::adopt_parent(&span, parent);
    }
    run(ctx, &envelope, shutdown).instrument(span).await
}

async fn run(ctx: &Context, envelope: &Envelope, shutdown: &CancellationToken) -> Settle {
    let kind = envelope.kind;
    // Listed in this worker's heartbeats from before the start until the outcome is recorded.
    let _holding = ctx.held.hold(envelope.id);
    // While Postgres is unreachable the delivery is held, not requeued: on RabbitMQ 3.x every
    // return spends one of the message's deliveries, and an outage must not bury jobs.
    let started = until_recorded(shutdown, || {
        ctx.writes.start_attempt(envelope.id, &ctx.starter)
    });
    let job = match started.await {
        Some(Some(job)) => job,
        Some(None) => return settle_unstartable(ctx, envelope, shutdown).await,
        None => {
            tracing::warn!("the attempt was not recorded; requeueing");
            pause(Duration::from_secs(1), shutdown).await;
            return Settle::Requeue;
        }
    };
    tracing::Span::current().record("attempt", job.attempts);
    if job.attempts > job.max_attempts {
        // Earlier attempts started but never reported back: the worker running them died
        // (killed, out of memory, aborted). Running it again could crash this worker too.
        // The rescuer records on the row why it republished the job.
        let error = match &job.last_error {
            Some(last) => format!(
                "out of attempts ({}): the worker died during the previous attempts; last error: {last}",
                job.max_attempts
            ),
            None => format!(
                "out of attempts ({}): the worker died during the previous attempts",
                job.max_attempts
            ),
        };
        return bury(ctx, kind, &job, &error, shutdown).await;
    }
    let wait = (chrono::Utc::now() - job.created_at)
        .to_std()
        .unwrap_or_default();
    metrics::histogram!("kiln_job_queue_wait_seconds", "kind" => kind.as_str())
        .record(wait.as_secs_f64());
    metrics::counter!("kiln_jobs_started_total", "kind" => kind.as_str()).increment(1);
    let started = std::time::Instant::now();
    let _in_flight = InFlight::start(kind);

    let limit = ctx.config.job_timeout.unwrap_or_else(|| match kind {
        JobKind::Video => jobs::video_job_timeout(ctx.config.video.timeout),
        _ => jobs::timeout(kind),
    });
    let result = match tokio::time::timeout(
        limit,
        AssertUnwindSafe(dispatch(ctx, kind, &job)).catch_unwind(),
    )
    .await
    {
        Err(_) => Err(JobError::Retry(format!(
            "timed out after {}s",
            limit.as_secs()
        ))),
        // A panic is a bug that the same input will hit again: fail the job, not the worker.
        Ok(Err(panic)) => Err(JobError::Abort(format!(
            "handler panicked: {}",
            panic_message(&panic)
        ))),
        Ok(Ok(result)) => result,
    };
    metrics::histogram!("kiln_job_duration_seconds", "kind" => kind.as_str())
        .record(started.elapsed().as_secs_f64());
    if let Some(tenant) = &job.tenant {
        let added = kiln_core::db::usage::Added {
            processing_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            emails_sent: i64::from(kind == JobKind::Email && result.is_ok()),
            ..Default::default()
        };
        ctx.usage.add(tenant, added).await;
    }

    match result {
        Ok(()) => {
            metrics::counter!("kiln_jobs_succeeded_total", "kind" => kind.as_str()).increment(1);
            tracing::info!(
                duration_ms = started.elapsed().as_millis() as u64,
                "job succeeded"
            );
            Settle::Ack
        }
        Err(JobError::Abort(error)) => bury(ctx, kind, &job, &error, shutdown).await,
        Err(JobError::Retry(error) | JobError::RetryIn { error, .. })
            if job.attempts >= job.max_attempts =>
        {
            let error = format!("out of attempts ({}): {error}", job.attempts);
            bury(ctx, kind, &job, &error, shutdown).await
        }
        Err(JobError::Defer { reason, wait }) if kind.retries_in_postgres() => {
            let refund = Refund::Yes;
            retry_from_postgres(ctx, &job, &reason, wait, refund, shutdown).await
        }
        Err(JobError::RetryIn { error, wait }) if kind.retries_in_postgres() => {
            retry_from_postgres(ctx, &job, &error, wait, Refund::No, shutdown).await
        }
        Err(JobError::Retry(error)) if kind.retries_in_postgres() => {
            let wait = ctx.config.webhooks.wait_after(job.attempts, None);
            retry_from_postgres(ctx, &job, &error, wait, Refund::No, shutdown).await
        }
        Err(
            JobError::Retry(error)
            | JobError::RetryIn { error, .. }
            | JobError::Defer { reason: error, .. },
        ) => retry_later(ctx, &job, &error, shutdown).await,
    }
}

/// Counts a job in `kiln_jobs_in_flight` for as long as it lives, however its attempt ends.
struct InFlight(JobKind);

impl InFlight {
    fn start(kind: JobKind) -> Self {
        metrics::gauge!("kiln_jobs_in_flight", "kind" => kind.as_str()).increment(1.0);
        Self(kind)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("kiln_jobs_in_flight", "kind" => self.0.as_str()).decrement(1.0);
    }
}

/// Whether a failed attempt is given back (it never reached its endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refund {
    Yes,
    No,
}

/// Records the failed attempt with its retry due in `wait`, kept in Postgres: the outbox relay
/// sends the job's next message when it is due, so nothing is published now.
async fn retry_from_postgres(
    ctx: &Context,
    job: &Job,
    error: &str,
    wait: Duration,
    refund: Refund,
    shutdown: &CancellationToken,
) -> Settle {
    metrics::counter!("kiln_jobs_retried_total", "kind" => job.kind.clone()).increment(1);
    let refund = refund == Refund::Yes;
    // A task's retry goes back to its queue (whose limits apply to it); a delivery's is due
    // on its own.
    let task = job.kind == JobKind::Task.as_str();
    let recorded = until_recorded(shutdown, || async {
        if task {
            db::tasks::park_for_retry(&ctx.db, job.id, job.attempts, error, wait).await
        } else {
            db::jobs::mark_failed_until(&ctx.db, job.id, job.attempts, error, wait, refund).await
        }
    })
    .await;
    match recorded {
        Some(true) => {
            tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "attempt failed; retrying later");
            Settle::Ack
        }
        Some(false) => {
            tracing::info!(%error, "attempt superseded by a newer one; no retry scheduled");
            Settle::Ack
        }
        None => Settle::Requeue,
    }
}

/// Records the failed attempt and sends the job's next message through the delay ladder; the
/// current message is acked only once the next one is confirmed.
async fn retry_later(
    ctx: &Context,
    job: &Job,
    error: &str,
    shutdown: &CancellationToken,
) -> Settle {
    metrics::counter!("kiln_jobs_retried_total", "kind" => job.kind.clone()).increment(1);
    let delay = ctx.publisher.retry_delay(job.attempts);
    // Due when the step is over, not the jittered delay: a message can wait behind the head
    // of its delay queue for the whole step.
    let (_, step) = ctx.publisher.topology().delay_for_attempt(job.attempts);
    let recorded = until_recorded(shutdown, || {
        db::jobs::mark_failed(&ctx.db, job.id, job.attempts, error, step)
    })
    .await;
    match recorded {
        Some(true) => {}
        Some(false) => {
            tracing::info!(%error, "attempt superseded by a newer one; no retry scheduled");
            return Settle::Ack;
        }
        // Shutting down first: the job is abandoned with this worker, and taken over.
        None => return Settle::Requeue,
    }
    let next = match job.envelope() {
        Ok(envelope) => envelope,
        Err(unknown) => return to_dead_queue(ctx, &[], &job.kind, &unknown.to_string()).await,
    };
    match ctx
        .publisher
        .publish_retry(&next, job.attempts, delay)
        .await
    {
        Ok(()) => {
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "attempt failed; retrying later");
            Settle::Ack
        }
        Err(publish_error) => {
            // The broker is struggling: keep this delivery and try again with backoff (a
            // requeue would spend one of its deliveries). Not for ever: the row already says
            // when the retry is due, so once the tries are spent the delivery is acked and the
            // rescuer sends the overdue retry, instead of this slot staying taken.
            tracing::warn!(%error, %publish_error, "attempt failed and the retry could not be scheduled yet");
            for tries in 1..=RETRY_PUBLISH_TRIES {
                pause(fallback_backoff(tries), shutdown).await;
                if shutdown.is_cancelled() {
                    return Settle::Requeue;
                }
                match ctx
                    .publisher
                    .publish_retry(&next, job.attempts, delay)
                    .await
                {
                    Ok(()) => return Settle::Ack,
                    Err(publish_error) => {
                        tracing::warn!(%publish_error, tries, "the retry still cannot be scheduled");
                    }
                }
            }
            tracing::warn!("leaving the retry to the rescuer");
            Settle::Ack
        }
    }
}

/// Puts a message in the dead queue with its reason, then acks the original. If the broker will
/// not take it, the original is rejected instead (the queue dead-letters it without a reason).
pub(crate) async fn to_dead_queue(
    ctx: &Context,
    body: &[u8],
    routing_key: &str,
    reason: &str,
) -> Settle {
    match ctx.publisher.publish_dead(body, routing_key, reason).await {
        Ok(()) => Settle::Ack,
        Err(error) => {
            tracing::warn!(%error, "could not publish to the dead queue; rejecting instead");
            Settle::DeadLetter
        }
    }
}

async fn dispatch(ctx: &Context, kind: JobKind, job: &Job) -> Result<(), JobError> {
    match kind {
        JobKind::Media => jobs::media::run(ctx, job).await,
        JobKind::Video => jobs::video::run(ctx, job).await,
        JobKind::Email => jobs::email::run(ctx, job).await,
        JobKind::Backup => jobs::backup::run(ctx, job).await,
        JobKind::Cleanup => jobs::cleanup::run(ctx, job).await,
        JobKind::Digest => jobs::digest::run(ctx, job).await,
        JobKind::Prune => jobs::prune::run(ctx, job).await,
        JobKind::Noop => jobs::noop::run(ctx, job).await,
        JobKind::Webhook => jobs::http::run(ctx, job).await,
        JobKind::Task => jobs::task::run(ctx, job).await,
    }
}

/// Who buries a job, which says what the row must still be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Burial {
    /// The worker running the attempt: the row says `running` with this attempt.
    Attempt,
    /// The reconciler, for a message the broker dead-lettered: the row is live with this
    /// attempt and no live worker holds it.
    DeadLettered,
}

/// Marks the job dead (and its subject failed) in one transaction, then dead-letters the message.
async fn bury(
    ctx: &Context,
    kind: JobKind,
    job: &Job,
    error: &str,
    shutdown: &CancellationToken,
) -> Settle {
    bury_as(ctx, kind, job, error, shutdown, Burial::Attempt)
        .await
        .0
}

/// [`bury`], for either burier; also says whether the job was buried now.
pub(crate) async fn bury_as(
    ctx: &Context,
    kind: JobKind,
    job: &Job,
    error: &str,
    shutdown: &CancellationToken,
    burial: Burial,
) -> (Settle, bool) {
    tracing::warn!(error, "job is dead");
    let recorded = until_recorded(shutdown, || async {
        let mut tx = ctx.db.begin().await?;
        let buried = match burial {
            Burial::Attempt => db::jobs::mark_dead(&mut *tx, job.id, job.attempts, error).await?,
            Burial::DeadLettered => {
                db::jobs::bury_dead_lettered(
                    &mut *tx,
                    job.id,
                    job.attempts,
                    error,
                    ctx.config.heartbeat_timeout,
                )
                .await?
            }
        };
        if !buried {
            return Ok(None);
        }
        let mut after = match kind {
            JobKind::Media | JobKind::Video => {
                jobs::media::on_dead(ctx, &mut tx, job, error).await?
            }
            JobKind::Webhook => jobs::http::on_dead(&mut tx, job, error).await?,
            JobKind::Task => jobs::task::on_dead(&mut tx, job, error).await?,
            _ => jobs::media::AfterCommit::default(),
        };
        let events = crate::events::job_died(ctx, &mut tx, kind, job, error).await?;
        after.publish.extend(events);
        tx.commit().await?;
        Ok::<_, sqlx::Error>(Some(after))
    })
    .await;
    match recorded {
        Some(None) => {
            tracing::info!(error, "attempt superseded by a newer one; not buried");
            (Settle::Ack, false)
        }
        Some(Some(after)) => {
            for key in &after.stale_cache_keys {
                ctx.cache.invalidate(key).await;
            }
            for enqueued in &after.publish {
                kiln_core::queue::publish_committed(&ctx.writes, &ctx.publisher, enqueued).await;
            }
            metrics::counter!("kiln_jobs_dead_total", "kind" => kind.as_str()).increment(1);
            let body = job
                .envelope()
                .ok()
                .and_then(|e| serde_json::to_vec(&e).ok())
                .unwrap_or_default();
            (to_dead_queue(ctx, &body, kind.as_str(), error).await, true)
        }
        // Shutting down first: the verdict is reached again by whoever takes the job over.
        None => (Settle::Requeue, false),
    }
}

/// Writes an attempt's outcome, retrying with backoff (1 s doubling to 30 s) while Postgres
/// cannot take it, and keeping the delivery meanwhile. Requeueing instead would spend the
/// message's delivery count on an outage, and hand the job to a worker that must leave it
/// alone while this one still lists it. `None` means shutdown came first, or the write can
/// never succeed.
pub(crate) async fn until_recorded<T, E, F, Fut>(
    shutdown: &CancellationToken,
    mut write: F,
) -> Option<T>
where
    E: Unavailable + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_secs(1);
    loop {
        match write().await {
            Ok(recorded) => return Some(recorded),
            // Postgres refused the write itself: waiting will not change its mind. The job
            // stops being listed as this worker's, so it is taken over (and likely buried).
            Err(error) if !error.unavailable() => {
                tracing::error!(%error, "the outcome cannot be recorded; leaving the job");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "postgres unavailable; holding the delivery");
                if shutdown.is_cancelled() {
                    return None;
                }
                pause(delay, shutdown).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// A database error that waiting may cure (see [`db::is_unavailable`]).
pub(crate) trait Unavailable {
    fn unavailable(&self) -> bool;
}

impl Unavailable for sqlx::Error {
    fn unavailable(&self) -> bool {
        db::is_unavailable(self)
    }
}

impl Unavailable for db::job_writes::WriteError {
    fn unavailable(&self) -> bool {
        db::is_unavailable(self.database_error())
    }
}

/// The job could not start: finished already or running on a live worker (a duplicate
/// message), or unknown.
async fn settle_unstartable(
    ctx: &Context,
    envelope: &Envelope,
    shutdown: &CancellationToken,
) -> Settle {
    match until_recorded(shutdown, || db::jobs::find(&ctx.db, envelope.id)).await {
        Some(Some(job)) => {
            tracing::info!(
                status = job.status,
                "job finished or held by a live worker; duplicate message acked"
            );
            metrics::counter!("kiln_duplicate_messages_total", "kind" => job.kind).increment(1);
            Settle::Ack
        }
        Some(None) => {
            tracing::warn!("message for an unknown job dead-lettered");
            let body = serde_json::to_vec(envelope).unwrap_or_default();
            to_dead_queue(ctx, &body, envelope.kind.as_str(), "no such job").await
        }
        None => {
            tracing::warn!("cannot read the job; requeueing");
            Settle::Requeue
        }
    }
}

/// In-process backoff for when the delay ladder itself is unreachable: exponential with ±25%
/// jitter, 1 s, 2 s, 4 s … capped at 60 s.
fn fallback_backoff(attempts: i32) -> Duration {
    let base = 2f64.powi(attempts.clamp(1, 7) - 1).min(60.0);
    let jitter = rand::rng().random_range(0.75..1.25);
    Duration::from_secs_f64(base * jitter)
}

async fn pause(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = shutdown.cancelled() => {}
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
