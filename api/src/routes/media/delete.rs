//! `DELETE /v1/media/{id}`: the media disappears from the API at once; its files are removed by
//! a `cleanup` job enqueued in the same transaction, so a crash cannot forget them.

use axum::{extract::State, response::Response};
use kiln_core::{db, jobs::JobKind};
use serde_json::json;
use uuid::Uuid;

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiPath,
    state::AppState,
    trace_layer::JobTrace,
};

/// Marks the media deleted and answers 202 with the cleanup job.
#[utoipa::path(delete, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])), params(("id" = Uuid, Path, description = "The media's id")),
    responses(
        (status = 202, description = "Deleted; its files are removed by the job", body = crate::openapi::schemas::MediaDeleted,
            headers(("Location" = String, description = "/v1/jobs/{job_id}"))),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such media in this tenant (or deleted already)", body = crate::openapi::ErrorBody),
    ))]
pub async fn delete_media(
    State(state): State<AppState>,
    caller: Caller,
    JobTrace(trace): JobTrace,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    caller.require(scope::MEDIA)?;
    let mut tx = state.db.begin().await?;
    if !db::media::mark_deleted(&mut *tx, id, &caller.tenant).await? {
        return Err(ApiError::not_found("media"));
    }
    let job = db::jobs::insert(
        &mut *tx,
        &db::jobs::NewJob {
            id: Uuid::now_v7(),
            tenant: Some(&caller.tenant),
            kind: JobKind::Cleanup,
            payload: json!({ "media_id": id }),
            max_attempts: state.config.max_attempts(JobKind::Cleanup),
            traceparent: trace,
        },
    )
    .await?;
    let event = db::webhooks::Event {
        tenant: Some(&caller.tenant),
        event_type: "media.deleted",
        data: json!({ "id": id, "status": "deleted", "deleted_at": chrono::Utc::now() }),
        traceparent: job.traceparent.clone(),
    };
    let deliveries =
        db::webhooks::emit(&mut tx, &event, state.config.max_attempts(JobKind::Webhook)).await?;
    tx.commit().await?;
    state.cache.invalidate(&state.cache.key("media", id)).await;
    for enqueued in std::iter::once(&job).chain(&deliveries) {
        kiln_core::queue::publish_committed(&state.writes, &state.publisher, enqueued).await;
    }
    metrics::counter!("kiln_jobs_enqueued_total", "kind" => JobKind::Cleanup.as_str()).increment(1);
    tracing::info!(media.id = %id, job.id = %job.id, "media deleted; file removal enqueued");

    super::super::jobs::accepted(
        job.id,
        json!({ "id": id, "status": "deleted", "job_id": job.id }),
    )
}
