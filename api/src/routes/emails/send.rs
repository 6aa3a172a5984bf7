//! `POST /v1/emails`: validates a message and enqueues its `email` job.

use axum::{
    Json,
    extract::{State, rejection::JsonRejection},
    http::StatusCode,
    response::Response,
};
use kiln_core::{db, jobs::JobKind, telemetry::mask_email};
use serde_json::json;
use uuid::Uuid;

use super::validate::{EmailRequest, validate};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    state::AppState,
    trace_layer::JobTrace,
};

/// Accepts an email (202 with the job) for the worker to send over SMTP.
#[utoipa::path(post, path = "/v1/emails", tag = "emails", security(("bearer" = [])),
    request_body(content = super::validate::EmailRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: the email's job is queued", body = crate::openapi::schemas::JobAccepted,
            headers(("Location" = String, description = "/v1/jobs/{job_id}"))),
        (status = 403, description = "`forbidden`: the key lacks the email scope", body = crate::openapi::ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 7 MiB", body = crate::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with error.fields), `invalid_body`: not the expected JSON", body = crate::openapi::ErrorBody),
        (status = 429, description = "`rate_limited`; `quota_exceeded`: the tenant's daily email quota is used up", body = crate::openapi::ErrorBody),
    ))]
pub async fn send_email(
    State(state): State<AppState>,
    caller: Caller,
    JobTrace(trace): JobTrace,
    body: Result<Json<EmailRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(scope::EMAIL)?;
    let Json(request) = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is over {} bytes", super::BODY_LIMIT),
            );
        }
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            rejection.body_text(),
        )
    })?;
    let payload = validate(request, &state.templates).map_err(ApiError::invalid_fields)?;
    let recipients = payload.to.len() + payload.cc.len() + payload.bcc.len();
    let first = payload
        .to
        .first()
        .map(|a| mask_email(a))
        .unwrap_or_default();

    // Counted, one per recipient, before it is accepted, so no two processes both take the
    // last one of the day.
    let limit = state.config.limits.emails_per_day;
    let counted = i64::try_from(recipients).unwrap_or(i64::MAX);
    if !db::usage::take_emails(&state.usage_db, &caller.tenant, counted, limit).await? {
        return Err(crate::limits::quota_exceeded("emails", limit));
    }
    // Alone in its transaction: group-committed with other emails accepted meanwhile.
    let inserted = state
        .writes
        .insert(&db::jobs::NewJob {
            id: Uuid::now_v7(),
            tenant: Some(&caller.tenant),
            kind: JobKind::Email,
            payload: json!(payload),
            max_attempts: state.config.max_attempts(JobKind::Email),
            traceparent: trace,
        })
        .await;
    let job = match inserted {
        Ok(job) => job,
        Err(error) => {
            db::usage::give_back_emails(&state.usage_db, &caller.tenant, counted)
                .await
                .ok();
            return Err(error.into());
        }
    };
    // Committed: from here the email will be sent, by this publish or by the relay.
    kiln_core::queue::publish_committed(&state.writes, &state.publisher, &job).await;
    metrics::counter!("kiln_jobs_enqueued_total", "kind" => JobKind::Email.as_str()).increment(1);
    tracing::info!(job.id = %job.id, to = first, recipients, "email accepted");

    super::super::jobs::accepted(job.id, json!({ "job_id": job.id, "status": job.status }))
}
