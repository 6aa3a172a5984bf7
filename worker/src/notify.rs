//! Built-in notifications: "your media is ready / failed" to the address set on the uploading
//! key (opt-in), enqueued as ordinary `email` jobs in the transaction that records the outcome,
//! so a notification is sent if and only if the outcome is committed.

use kiln_core::{
    db::{self, jobs::Job, media::Media},
    jobs::{EmailPayload, JobKind},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Context;

/// The traceparent of an email a job enqueues: the next hop of the job's own trace.
pub fn trace_of(job_trace: Option<&str>) -> String {
    kiln_core::telemetry::exported_context(&tracing::Span::current())
        .unwrap_or_else(|| kiln_core::trace_context::TraceContext::continue_from(job_trace))
        .header()
}

/// Which notification.
#[derive(Debug, Clone, Copy)]
pub enum MediaOutcome {
    Ready,
    Failed,
}

impl MediaOutcome {
    fn template(self) -> &'static str {
        match self {
            Self::Ready => "media_ready",
            Self::Failed => "media_failed",
        }
    }
}

/// Enqueues the notification for `media`'s outcome if its key opted in; returns the email job
/// to publish after commit. A template that fails to render is logged, never fails the job.
/// `media` describes the outcome (status, error, dimensions); `variants` are the stored ones.
pub async fn media_outcome(
    ctx: &Context,
    conn: &mut sqlx::PgConnection,
    media: &Media,
    variants: &[db::media::Variant],
    job_id: Uuid,
    job_trace: Option<&str>,
    outcome: MediaOutcome,
) -> Result<Option<Job>, sqlx::Error> {
    let Some(key_id) = media.api_key_id else {
        return Ok(None);
    };
    let Some(address) = db::api_keys::notify_address(&mut *conn, key_id).await? else {
        return Ok(None);
    };
    // Kiln's own emails count against the tenant's daily limit like any other.
    if !db::usage::take_emails(
        &mut *conn,
        &media.tenant,
        1,
        ctx.config.limits.emails_per_day,
    )
    .await?
    {
        metrics::counter!("kiln_notifications_skipped_total", "reason" => "quota").increment(1);
        tracing::warn!(
            tenant = media.tenant,
            "notification not sent: the daily email quota is used up"
        );
        return Ok(None);
    }
    let variants: Vec<Value> = variants
        .iter()
        .map(|v| {
            let extension = kiln_core::views::extension(&v.format);
            json!({
                "name": v.name, "format": v.format, "width": v.width, "height": v.height,
                "bytes": v.bytes,
                "url": format!("/v1/media/{}/variants/{}.{extension}", media.id, v.name),
            })
        })
        .collect();
    let data = json!({
        "base_url": ctx.config.public_url,
        "media": {
            "id": media.id, "status": media.status, "error": media.error,
            "width": media.width, "height": media.height, "variants": variants,
        },
    });
    let template = outcome.template();
    let rendered = match ctx.templates.render(template, &data) {
        Ok(rendered) => rendered,
        Err(error) => {
            tracing::error!(template, %error, "notification not sent: its template failed");
            return Ok(None);
        }
    };
    let payload = EmailPayload {
        to: vec![address],
        cc: Vec::new(),
        bcc: Vec::new(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
    };
    // One notification per job, media and outcome, however often the attempt is retried (a
    // job finishes its duplicate uploads too, each with its own notification).
    let dedupe_key = if media.job_id == Some(job_id) {
        format!("notify:{template}:{job_id}")
    } else {
        format!("notify:{template}:{job_id}:{}", media.id)
    };
    let email = db::jobs::insert_deduplicated(
        &mut *conn,
        &db::jobs::NewJob {
            id: Uuid::now_v7(),
            tenant: Some(&media.tenant),
            kind: JobKind::Email,
            payload: json!(payload),
            max_attempts: ctx.config.max_attempts(JobKind::Email),
            traceparent: Some(trace_of(job_trace)),
        },
        &dedupe_key,
    )
    .await?;
    if email.is_some() {
        metrics::counter!("kiln_notifications_enqueued_total", "template" => template).increment(1);
    } else {
        // Sent by an earlier attempt already: not a second email.
        db::usage::give_back_emails(&mut *conn, &media.tenant, 1).await?;
    }
    Ok(email)
}
