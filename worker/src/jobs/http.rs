//! The `webhook` job: one event to one endpoint, signed per Standard Webhooks 1.0.
//!
//! What the endpoint answers decides (see `kiln_core::delivery::Answer`): 2xx is done; 410
//! disables the endpoint; 429, 5xx, redirects, time-outs and network errors are retried on the
//! delivery's own schedule (`KILN_WEBHOOK_RETRY_DELAYS`), never before a `Retry-After`, kept in
//! Postgres; other 4xx are final. An endpoint whose deliveries have all failed for longer than
//! `KILN_WEBHOOK_DISABLE_AFTER` is disabled and its tenant told. Each attempt is written to the
//! delivery's log, with the first KiB of the answer.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use kiln_core::{
    db::{
        self,
        jobs::Job,
        webhooks::{AttemptRecord, Endpoint},
    },
    delivery::{Answer, Attempt, Request, signing},
    jobs::{EmailPayload, JobKind, WebhookPayload},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::{Classify, JobError};
use crate::Context;

/// The log's status for an attempt that ends the delivery: still `pending` here; the burial
/// that follows marks it `failed` in the transaction that makes its job dead, so a delivery the
/// log calls failed can always be replayed.
const ENDING: &str = "pending";

/// How long a delivery waits for a slot of its endpoint before it steps aside.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends the delivery and records what came of it.
pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    let payload: WebhookPayload = serde_json::from_value(job.payload.clone()).abort()?;
    let Some(outgoing) = db::webhooks::outgoing(&ctx.db, payload.delivery_id)
        .await
        .retry()?
    else {
        // The endpoint was deleted (and its log with it): nobody to send to.
        tracing::info!("the delivery's endpoint is gone; nothing to send");
        return succeed(ctx, job).await;
    };
    let endpoint = &outgoing.endpoint;
    if !endpoint.enabled {
        let error = "the endpoint is disabled";
        record(ctx, job, ENDING, None, Some(error), None).await?;
        return Err(JobError::Abort(error.into()));
    }

    // Busy with this endpoint: give the slot to another endpoint's delivery rather than wait
    // long, and come back without spending an attempt.
    let Some(_slot) = ctx
        .endpoint_slots
        .acquire_within(endpoint.id, SLOT_WAIT)
        .await
    else {
        let wait = SLOT_WAIT.mul_f64(rand::Rng::random_range(&mut rand::rng(), 0.2..0.6));
        return Err(JobError::Defer {
            reason: "the endpoint's deliveries in flight are at KILN_WEBHOOK_ENDPOINT_CONCURRENCY"
                .into(),
            wait,
        });
    };
    let id = signing::message_id(outgoing.delivery_id);
    let secrets = endpoint.signing_secrets(chrono::Utc::now());
    let attempt = ctx
        .delivery
        .send(&Request::webhook(
            &endpoint.url,
            &id,
            &secrets,
            &outgoing.body,
        ))
        .await;
    let outcome = match attempt.answer {
        Answer::Delivered => "delivered",
        Answer::Gone => "gone",
        Answer::Retry { .. } => "retry",
        Answer::Final => "refused",
    };
    metrics::counter!("kiln_webhook_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!("kiln_webhook_attempt_seconds", "outcome" => outcome)
        .record(attempt.latency.as_secs_f64());

    let error = attempt.error.clone().unwrap_or_default();
    match attempt.answer {
        Answer::Delivered => delivered(ctx, job, endpoint, &attempt).await,
        Answer::Gone => {
            record(ctx, job, ENDING, Some(&attempt), Some(&error), None).await?;
            let reason = "it answered 410 Gone";
            if db::webhooks::disable_endpoint(&ctx.db, endpoint.id, reason)
                .await
                .retry()?
            {
                endpoint_disabled(ctx, endpoint, reason).await;
            }
            Err(JobError::Abort(format!(
                "{error}: the endpoint is disabled"
            )))
        }
        Answer::Final => {
            record(ctx, job, ENDING, Some(&attempt), Some(&error), None).await?;
            Err(JobError::Abort(error))
        }
        Answer::Retry { after } => {
            failing(ctx, endpoint).await?;
            if job.attempts >= job.max_attempts {
                record(ctx, job, ENDING, Some(&attempt), Some(&error), None).await?;
                return Err(JobError::Retry(error));
            }
            let wait = ctx.config.webhooks.wait_after(job.attempts, after);
            let next = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            record(
                ctx,
                job,
                "pending",
                Some(&attempt),
                Some(&error),
                Some(next),
            )
            .await?;
            Err(JobError::RetryIn { error, wait })
        }
    }
}

/// Records the success of the attempt, the job's and the endpoint's, in one transaction.
async fn delivered(
    ctx: &Context,
    job: &Job,
    endpoint: &Endpoint,
    attempt: &Attempt,
) -> Result<(), JobError> {
    let mut tx = ctx.db.begin().await.retry()?;
    if !db::jobs::mark_succeeded(&mut *tx, job.id, job.attempts)
        .await
        .retry()?
    {
        tracing::info!("attempt superseded by a newer one");
        return Ok(());
    }
    db::webhooks::record_attempt(
        &mut *tx,
        job.id,
        &log_entry(job, "succeeded", Some(attempt), None, None),
    )
    .await
    .retry()?;
    db::webhooks::record_endpoint_success(&mut *tx, endpoint.id)
        .await
        .retry()?;
    tx.commit().await.retry()?;
    tracing::info!(
        endpoint.id = %endpoint.id,
        status = attempt.status,
        latency_ms = attempt.latency.as_millis() as u64,
        "webhook delivered"
    );
    Ok(())
}

/// Ends a delivery that has nothing to send.
async fn succeed(ctx: &Context, job: &Job) -> Result<(), JobError> {
    ctx.writes
        .mark_succeeded(job.id, job.attempts)
        .await
        .retry()?;
    Ok(())
}

/// Counts a failed attempt against the endpoint; disables it when it has failed for too long.
async fn failing(ctx: &Context, endpoint: &Endpoint) -> Result<(), JobError> {
    let mut conn = ctx.db.acquire().await.retry()?;
    let disable_after = ctx.config.webhooks.disable_after;
    if db::webhooks::record_endpoint_failure(&mut conn, endpoint.id, disable_after)
        .await
        .retry()?
    {
        let reason = "its deliveries failed for longer than KILN_WEBHOOK_DISABLE_AFTER";
        endpoint_disabled(ctx, endpoint, reason).await;
    }
    Ok(())
}

/// The log entry of this attempt.
fn log_entry<'a>(
    job: &Job,
    status: &'a str,
    attempt: Option<&'a Attempt>,
    error: Option<&'a str>,
    next: Option<chrono::DateTime<chrono::Utc>>,
) -> AttemptRecord<'a> {
    AttemptRecord {
        attempt: job.attempts,
        status,
        response_status: attempt.and_then(|a| a.status).map(i32::from),
        response_body: attempt.map_or("", |a| a.body_head.as_str()),
        latency_ms: attempt.map_or(0, |a| {
            i32::try_from(a.latency.as_millis()).unwrap_or(i32::MAX)
        }),
        error,
        next_attempt_at: next,
    }
}

/// Writes the attempt into the delivery's log.
async fn record(
    ctx: &Context,
    job: &Job,
    status: &str,
    attempt: Option<&Attempt>,
    error: Option<&str>,
    next: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), JobError> {
    db::webhooks::record_attempt(
        &ctx.db,
        job.id,
        &log_entry(job, status, attempt, error, next),
    )
    .await
    .retry()
}

/// Marks the delivery failed for good inside a burial's transaction (the worker died on it, or
/// it ran out of attempts without its own record).
pub async fn on_dead(
    conn: &mut sqlx::PgConnection,
    job: &Job,
    error: &str,
) -> Result<super::media::AfterCommit, sqlx::Error> {
    if let Ok(payload) = serde_json::from_value::<WebhookPayload>(job.payload.clone()) {
        db::webhooks::mark_failed(&mut *conn, payload.delivery_id, error).await?;
    }
    Ok(super::media::AfterCommit::default())
}

/// Tells the endpoint's tenant that Kiln disabled it: an email to the tenant's notification
/// address, or, with none, only the dashboard's flag and the metric.
async fn endpoint_disabled(ctx: &Context, endpoint: &Endpoint, reason: &str) {
    tracing::warn!(endpoint.id = %endpoint.id, tenant = endpoint.tenant, reason, "webhook endpoint disabled");
    let told = tell_tenant(ctx, endpoint, reason).await;
    let told = match told {
        Ok(Some(job)) => {
            kiln_core::queue::publish_committed(&ctx.writes, &ctx.publisher, &job).await;
            "emailed"
        }
        Ok(None) => "flagged",
        Err(error) => {
            tracing::warn!(%error, "could not enqueue the endpoint's notification");
            "flagged"
        }
    };
    metrics::counter!("kiln_webhook_endpoints_disabled_total", "told" => told).increment(1);
}

async fn tell_tenant(
    ctx: &Context,
    endpoint: &Endpoint,
    reason: &str,
) -> Result<Option<Job>, sqlx::Error> {
    let mut tx = ctx.db.begin().await?;
    let Some(address) = db::api_keys::tenant_notify_address(&mut *tx, &endpoint.tenant).await?
    else {
        return Ok(None);
    };
    if !db::usage::take_emails(
        &mut *tx,
        &endpoint.tenant,
        1,
        ctx.config.limits.emails_per_day,
    )
    .await?
    {
        return Ok(None);
    }
    let text = format!(
        "Kiln disabled your webhook endpoint {url} ({id}) because {reason}.\n\n\
         Deliveries to it have stopped, and events raised while it is disabled are not kept \
         for it; failed deliveries stay in its log. Once it works again, enable it \
         (PATCH /v1/webhooks/{id} with {{\"enabled\": true}}) and replay its failed \
         deliveries (POST /v1/webhooks/{id}/replay).\n\n{base}\n",
        url = endpoint.url,
        id = endpoint.id,
        base = ctx.config.public_url,
    );
    let payload = EmailPayload {
        to: vec![address],
        cc: Vec::new(),
        bcc: Vec::new(),
        subject: "Kiln disabled a webhook endpoint".into(),
        text: Some(text),
        html: None,
    };
    let job = db::jobs::insert_deduplicated(
        &mut *tx,
        &db::jobs::NewJob {
            id: Uuid::now_v7(),
            tenant: Some(&endpoint.tenant),
            kind: JobKind::Email,
            payload: serde_json::json!(payload),
            max_attempts: ctx.config.max_attempts(JobKind::Email),
            traceparent: None,
        },
        // Once per disabling: an endpoint enabled and disabled again is told again.
        &format!(
            "webhook-disabled:{}:{}",
            endpoint.id,
            endpoint.updated_at.timestamp()
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(job)
}

/// Deliveries in flight per endpoint in this worker, so one slow endpoint cannot take every
/// slot of the queue (`KILN_WEBHOOK_ENDPOINT_CONCURRENCY`).
#[derive(Clone)]
pub struct EndpointSlots {
    per_endpoint: usize,
    semaphores: Arc<Mutex<HashMap<Uuid, Arc<Semaphore>>>>,
}

/// A slot for one delivery; its endpoint's entry goes when the last slot does.
pub struct EndpointSlot {
    endpoint: Uuid,
    slots: EndpointSlots,
    permit: Option<OwnedSemaphorePermit>,
}

impl EndpointSlots {
    pub fn new(per_endpoint: usize) -> Self {
        Self {
            per_endpoint,
            semaphores: Arc::default(),
        }
    }

    /// A slot of `endpoint`, waiting at most `wait` for one.
    pub async fn acquire_within(
        &self,
        endpoint: Uuid,
        wait: std::time::Duration,
    ) -> Option<EndpointSlot> {
        let semaphore = {
            let mut map = self.semaphores.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(endpoint)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_endpoint)))
                .clone()
        };
        let acquired = tokio::time::timeout(wait, semaphore.acquire_owned()).await;
        // Holding no permit, the slot still drops its endpoint's idle entry.
        let slot = EndpointSlot {
            endpoint,
            slots: self.clone(),
            permit: acquired.ok().and_then(Result::ok),
        };
        slot.permit.is_some().then_some(slot)
    }
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        self.permit.take();
        let mut map = self
            .slots
            .semaphores
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Only the map holds it, and nobody waits: an idle endpoint keeps no entry.
        if map
            .get(&self.endpoint)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(&self.endpoint);
        }
    }
}
