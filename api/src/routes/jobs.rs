//! `GET /v1/jobs` and `GET /v1/jobs/{id}`.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use kiln_core::db;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiPath, ApiQuery},
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
    Ok(Json(JobView::from(job)))
}

impl From<db::jobs::Job> for JobView {
    fn from(job: db::jobs::Job) -> Self {
        Self {
            id: job.id,
            kind: job.kind,
            status: job.status,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

/// `GET /v1/jobs`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobListQuery {
    /// Only jobs of this kind (`media`, `email`, `cleanup`, `webhook`, `task`, ...).
    pub kind: Option<String>,
    /// Only jobs in this state.
    #[param(inline, value_type = Option<String>, pattern = "^(queued|running|failed|succeeded|dead)$")]
    pub status: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// A page of jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The tenant's own jobs, newest first (system jobs, which have no tenant, are not listed).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])),
    params(JobListQuery),
    responses(
        (status = 200, description = "A page of jobs, newest first", body = JobPage),
        (status = 422, description = "`invalid_filter`, `invalid_cursor`", body = crate::openapi::ErrorBody),
    ))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<JobListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let invalid = |message: String| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_filter",
            message,
        )
    };
    if let Some(kind) = &query.kind
        && kind.parse::<kiln_core::jobs::JobKind>().is_err()
    {
        return Err(invalid(format!("kind {kind:?} is not a job kind")));
    }
    if let Some(status) = &query.status
        && !["queued", "running", "failed", "succeeded", "dead"].contains(&status.as_str())
    {
        return Err(invalid(format!(
            "status {status:?} is not queued, running, failed, succeeded or dead"
        )));
    }
    let limit = super::cursor::page_size(query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(super::cursor::decode)
        .transpose()?;
    let jobs = db::jobs::list_for_tenant(
        &state.db,
        &caller.tenant,
        query.kind.as_deref(),
        query.status.as_deref(),
        before,
        limit,
    )
    .await?;
    let next_cursor = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|job| super::cursor::encode(job.id)))
        .flatten();
    Ok(Json(JobPage {
        items: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
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
