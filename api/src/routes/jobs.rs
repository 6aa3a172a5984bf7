//! `GET /v1/jobs/{id}`.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use kiln_core::db;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiPath,
    state::AppState,
};

/// A job as its tenant sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Any key of the job's tenant may read it; another tenant's job is a 404, not a 403, so ids
/// of other tenants cannot be probed.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "`not_found`: no such job in this tenant", body = crate::openapi::ErrorBody),
    ))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<JobView>, ApiError> {
    // Admin keys see every job, system jobs (cron ticks) included.
    let job = if caller.has(scope::ADMIN) {
        db::jobs::find(&state.db, id).await?
    } else {
        db::jobs::find_for_tenant(&state.db, id, &caller.tenant).await?
    };
    let job = job.ok_or_else(|| ApiError::not_found("job"))?;
    Ok(Json(JobView {
        id: job.id,
        kind: job.kind,
        status: job.status,
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        last_error: job.last_error,
        created_at: job.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
    }))
}

/// 202 Accepted with `body` and `Location: /v1/jobs/{job_id}`, for requests answered by a job.
pub fn accepted(
    job_id: Uuid,
    body: serde_json::Value,
) -> Result<axum::response::Response, ApiError> {
    use axum::{http::header, response::IntoResponse};
    let location = format!("/v1/jobs/{job_id}")
        .parse::<axum::http::HeaderValue>()
        .map_err(ApiError::internal)?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}
