//! Webhook events the workers raise, each written as deliveries in the transaction that records
//! the outcome it reports (see `kiln_core::db::webhooks::emit`): an event is sent if and only if
//! its change committed. Email events carry metadata, never addresses or bodies.

use kiln_core::{
    db::{self, jobs::Job, webhooks::Event},
    jobs::JobKind,
    views::MediaView,
};
use serde_json::{Value, json};

use crate::{Context, notify::trace_of};

/// Enqueues `event_type` for `tenant` (or, with none, for the operators' endpoints); returns the
/// deliveries to publish once the transaction commits.
pub async fn emit(
    ctx: &Context,
    conn: &mut sqlx::PgConnection,
    tenant: Option<&str>,
    event_type: &'static str,
    data: Value,
    job_trace: Option<&str>,
) -> Result<Vec<Job>, sqlx::Error> {
    let event = Event {
        tenant,
        event_type,
        data,
        traceparent: Some(trace_of(job_trace)),
    };
    db::webhooks::emit(conn, &event, ctx.config.max_attempts(JobKind::Webhook)).await
}

/// `media.ready` or `media.failed`: the media resource, as `GET /v1/media/{id}` answers it.
pub async fn media_outcome(
    ctx: &Context,
    conn: &mut sqlx::PgConnection,
    media: &db::media::Media,
    variants: &[db::media::Variant],
    job_trace: Option<&str>,
) -> Result<Vec<Job>, sqlx::Error> {
    let event_type = if media.status == "ready" {
        "media.ready"
    } else {
        "media.failed"
    };
    let data = json!(MediaView::build(media, variants));
    emit(ctx, conn, Some(&media.tenant), event_type, data, job_trace).await
}

/// The job as `GET /v1/jobs/{id}` shows it, in the state this event reports.
pub fn job_data(job: &Job, status: &str, error: Option<&str>) -> Value {
    json!({
        "id": job.id,
        "kind": job.kind,
        "status": status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": error.map(|e| e.chars().take(2000).collect::<String>()),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": chrono::Utc::now(),
    })
}

/// The events of a job that just died: `job.dead` for a tenant's job, and the kind's own
/// failure event (`email.failed`, `backup.failed`). A delivery's own death raises none: an
/// endpoint that is down must not be sent news of itself being down.
pub async fn job_died(
    ctx: &Context,
    conn: &mut sqlx::PgConnection,
    kind: JobKind,
    job: &Job,
    error: &str,
) -> Result<Vec<Job>, sqlx::Error> {
    let data = job_data(job, "dead", Some(error));
    let trace = job.traceparent.as_deref();
    let mut jobs = Vec::new();
    match kind {
        JobKind::Webhook => return Ok(jobs),
        JobKind::Email => {
            let failed = emit(
                ctx,
                conn,
                job.tenant.as_deref(),
                "email.failed",
                data.clone(),
                trace,
            );
            jobs.extend(failed.await?);
        }
        JobKind::Backup => {
            jobs.extend(emit(ctx, conn, None, "backup.failed", data.clone(), trace).await?);
        }
        _ => {}
    }
    if job.tenant.is_some() {
        jobs.extend(emit(ctx, conn, job.tenant.as_deref(), "job.dead", data, trace).await?);
    }
    Ok(jobs)
}
