//! The `email` job: send one message over SMTP.
//!
//! SMTP replies decide the outcome: 4xx (and connection trouble) are transient and retried
//! through the delay ladder; 5xx — a rejected address, a refused message — are permanent and
//! the job goes dead with the server's reply. Every message carries a Message-ID derived from
//! the job, so if a crash between the server's "250 OK" and our commit makes a retry send it
//! again, receivers can recognise the duplicate.

use kiln_core::{db::jobs::Job, jobs::EmailPayload, telemetry::mask_email};
use lettre::{
    AsyncTransport, Message,
    message::{Mailbox, MultiPart, SinglePart, header::ContentType},
};

use super::{Classify, JobError};
use crate::Context;

/// Builds the message; failures here are permanent (the payload was validated on the way in,
/// so this only trips on a bad `KILN_EMAIL_FROM`).
pub fn build(from: &Mailbox, job: &Job, payload: &EmailPayload) -> Result<Message, JobError> {
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(payload.subject.clone())
        .message_id(Some(format!("<{}@{}>", job.id, from.email.domain())));
    for address in &payload.to {
        builder = builder.to(address.parse().abort()?);
    }
    for address in &payload.cc {
        builder = builder.cc(address.parse().abort()?);
    }
    for address in &payload.bcc {
        builder = builder.bcc(address.parse().abort()?);
    }
    let message = match (&payload.text, &payload.html) {
        (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (None, Some(html)) => builder.singlepart(SinglePart::html(html.clone())),
        (text, None) => builder
            .header(ContentType::TEXT_PLAIN)
            .body(text.clone().unwrap_or_default()),
    };
    message.abort()
}

/// Sends the message and records the job's success.
pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    let payload: EmailPayload = serde_json::from_value(job.payload.clone()).abort()?;
    let message = build(&ctx.email_from, job, &payload)?;
    let to = payload
        .to
        .first()
        .map(|a| mask_email(a))
        .unwrap_or_default();
    let started = std::time::Instant::now();
    let sent = ctx.mailer.send(message).await;
    let outcome = match &sent {
        Ok(_) => "sent",
        Err(e) if e.is_permanent() => "rejected",
        Err(_) => "deferred",
    };
    metrics::histogram!("kiln_email_send_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("kiln_emails_total", "outcome" => outcome).increment(1);
    match sent {
        Ok(response) => {
            tracing::info!(to, code = %response.code(), "email sent");
        }
        Err(error) if error.is_permanent() => {
            return Err(JobError::Abort(format!(
                "the SMTP server refused the message: {error}"
            )));
        }
        Err(error) => {
            return Err(JobError::Retry(format!("SMTP: {error}")));
        }
    }
    // The success and its `email.sent` event commit together. Failing here retries the job,
    // which sends the email again: the Message-ID lets receivers see the duplicate.
    let mut tx = ctx.db.begin().await.retry()?;
    if !kiln_core::db::jobs::mark_succeeded(&mut *tx, job.id, job.attempts)
        .await
        .retry()?
    {
        tracing::info!("attempt superseded by a newer one");
        return Ok(());
    }
    let mut data = crate::events::job_data(job, "succeeded", None);
    data["recipients"] = (payload.to.len() + payload.cc.len() + payload.bcc.len()).into();
    let events = crate::events::emit(
        ctx,
        &mut tx,
        job.tenant.as_deref(),
        "email.sent",
        data,
        job.traceparent.as_deref(),
    )
    .await
    .retry()?;
    tx.commit().await.retry()?;
    for event in &events {
        kiln_core::queue::publish_committed(&ctx.writes, &ctx.publisher, event).await;
    }
    // Sent and recorded: the recipients and bodies are personal data Kiln no longer needs.
    // Failing to remove them now is logged, not retried (that would send the email again);
    // the job's retention removes the whole row later.
    if let Err(error) = kiln_core::db::retention::scrub_sent_email(&ctx.db, job.id).await {
        tracing::warn!(%error, "could not remove the sent email's personal data");
    }
    Ok(())
}
