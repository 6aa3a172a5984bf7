//! The `digest` job (the `daily-digest` schedule): one summary email per tenant that opted in
//! (a key with `--notify-email`), covering the hours before the tick.

use chrono::{DateTime, Utc};
use kiln_core::{
    db::{self, jobs::Job},
    jobs::{EmailPayload, JobKind},
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{Classify, JobError};
use crate::Context;

#[derive(Debug, Deserialize)]
struct DigestPayload {
    /// The window's length; the schedule's payload may change it.
    #[serde(default = "default_hours")]
    hours: u32,
    /// The tick that enqueued it; a digest fired by hand covers the hours before now.
    tick: Option<DateTime<Utc>>,
}

fn default_hours() -> u32 {
    24
}

/// Enqueues each opted-in tenant's digest email, then records success. Each email's dedupe key
/// names this job and the tenant, so a retried digest never sends one twice.
pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    let payload: DigestPayload = serde_json::from_value(job.payload.clone()).abort()?;
    let until = payload.tick.unwrap_or(job.created_at);
    let since = until - chrono::Duration::hours(i64::from(payload.hours.clamp(1, 24 * 31)));
    let recipients = db::api_keys::digest_recipients(&ctx.db).await.retry()?;
    let mut sent = 0;
    for recipient in &recipients {
        let summary = db::stats::tenant_summary(&ctx.db, &recipient.tenant, since, until)
            .await
            .retry()?;
        let data = json!({
            "tenant": recipient.tenant,
            "hours": payload.hours,
            "since": since.to_rfc3339(),
            "until": until.to_rfc3339(),
            "base_url": ctx.config.public_url,
            "media": {
                "uploaded": summary.media_uploaded,
                "ready": summary.media_ready,
                "failed": summary.media_failed,
            },
            "emails": { "sent": summary.emails_sent, "dead": summary.emails_dead },
            "jobs": { "dead": summary.jobs_dead },
        });
        // The template is the operator's to change; a broken one fails the job visibly.
        let rendered = ctx.templates.render("digest", &data).abort()?;
        let email = EmailPayload {
            to: vec![recipient.address.clone()],
            cc: Vec::new(),
            bcc: Vec::new(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        };
        let limit = ctx.config.limits.emails_per_day;
        if !db::usage::take_emails(&ctx.db, &recipient.tenant, 1, limit)
            .await
            .retry()?
        {
            metrics::counter!("kiln_notifications_skipped_total", "reason" => "quota").increment(1);
            tracing::warn!(
                tenant = recipient.tenant,
                "digest not sent: the daily email quota is used up"
            );
            continue;
        }
        let inserted = db::jobs::insert_deduplicated(
            &ctx.db,
            &db::jobs::NewJob {
                id: Uuid::now_v7(),
                tenant: Some(&recipient.tenant),
                kind: JobKind::Email,
                payload: json!(email),
                max_attempts: ctx.config.max_attempts(JobKind::Email),
                traceparent: Some(crate::notify::trace_of(job.traceparent.as_deref())),
            },
            &format!("digest:{}:{}", job.id, recipient.tenant),
        )
        .await;
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(error) => {
                // Counted but not enqueued: the retry counts it again.
                db::usage::give_back_emails(&ctx.db, &recipient.tenant, 1)
                    .await
                    .ok();
                return Err(error).retry();
            }
        };
        if let Some(email) = inserted {
            kiln_core::queue::publish_committed(&ctx.writes, &ctx.publisher, &email).await;
            sent += 1;
        } else {
            // Enqueued by an earlier attempt: not a second email.
            db::usage::give_back_emails(&ctx.db, &recipient.tenant, 1)
                .await
                .retry()?;
        }
    }
    metrics::counter!("kiln_notifications_enqueued_total", "template" => "digest").increment(sent);
    tracing::info!(tenants = recipients.len(), sent, %since, %until, "digest enqueued");
    ctx.writes
        .mark_succeeded(job.id, job.attempts)
        .await
        .retry()?;
    Ok(())
}
