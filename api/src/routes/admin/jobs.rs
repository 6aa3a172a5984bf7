//! Listing, retrying and discarding jobs — above all dead ones.
//!
//! `GET /v1/admin/jobs?status=dead&kind=media&limit=100`, `POST /v1/admin/jobs/{id}/retry`,
//! `POST /v1/admin/jobs/retry?kind=media&limit=1000` (every matching dead job) and
//! `DELETE /v1/admin/jobs/{id}` (dead jobs only).

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use kiln_core::db::{self, jobs::Job};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiPath, ApiQuery},
    state::AppState,
};

/// A job as operators see it: everything, including tenant and payload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminJobView {
    pub id: Uuid,
    pub tenant: Option<String>,
    pub kind: String,
    pub payload: Value,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Job> for AdminJobView {
    fn from(job: Job) -> Self {
        Self {
            id: job.id,
            tenant: job.tenant,
            kind: job.kind,
            payload: job.payload,
            status: job.status,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            created_at: job.created_at,
            published_at: job.published_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

/// Query parameters of the list and bulk-retry endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    /// `queued`, `running`, `succeeded`, `failed` or `dead`.
    #[param(pattern = "^(queued|running|succeeded|failed|dead)$")]
    pub status: Option<String>,
    /// A job kind.
    #[param(pattern = "^(media|email|backup|cleanup|digest|prune|noop|webhook|task)$")]
    pub kind: Option<String>,
    /// 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "dead"];

impl Filter {
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n @ 1..=1000) => Ok(n),
            Some(_) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_filter",
                "limit must be 1..=1000",
            )),
        }
    }

    fn kind(&self) -> Result<Option<&str>, ApiError> {
        match self.kind.as_deref() {
            Some(kind) if kind.parse::<kiln_core::jobs::JobKind>().is_err() => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_filter",
                format!("unknown job kind {kind:?}"),
            )),
            kind => Ok(kind),
        }
    }
}

/// Lists jobs, newest first.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "admin", security(("bearer" = [])), params(Filter),
    responses(
        (status = 200, description = "Jobs of every tenant, newest first", body = crate::openapi::schemas::AdminJobList),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_filter`: an unknown status or kind, or a limit outside 1..=1000", body = crate::openapi::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Json<Value>, ApiError> {
    caller.require(scope::ADMIN)?;
    if let Some(status) = filter.status.as_deref()
        && !STATUSES.contains(&status)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_filter",
            format!("status must be one of {}", STATUSES.join(", ")),
        ));
    }
    let jobs = db::jobs::list(
        &state.db,
        &db::jobs::JobFilter {
            status: filter.status.clone(),
            kind: filter.kind()?.map(str::to_owned),
        },
        filter.limit()?,
        true,
    )
    .await?;
    let jobs: Vec<AdminJobView> = jobs.into_iter().map(Into::into).collect();
    Ok(Json(json!({ "jobs": jobs })))
}

/// Retries one dead job with a fresh set of attempts.
#[utoipa::path(post, path = "/v1/admin/jobs/{id}/retry", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Queued again with fresh attempts", body = AdminJobView),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such job", body = crate::openapi::ErrorBody),
        (status = 409, description = "`job_not_dead`: only dead jobs are retried", body = crate::openapi::ErrorBody),
    ))]
pub async fn retry_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<AdminJobView>), ApiError> {
    caller.require(scope::ADMIN)?;
    let mut revived = revive(&state, Target::One(id)).await?.0.into_iter();
    match revived.next() {
        Some(job) => Ok((StatusCode::ACCEPTED, Json(job.into()))),
        None => match db::jobs::find(&state.db, id).await? {
            Some(job) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_not_dead",
                format!("only dead jobs can be retried; this one is {}", job.status),
            )),
            None => Err(ApiError::not_found("job")),
        },
    }
}

/// Retries every dead job matching the filter (`kind`, up to `limit`).
#[utoipa::path(post, path = "/v1/admin/jobs/retry", tag = "admin", security(("bearer" = [])), params(Filter),
    responses(
        (status = 202, description = "The dead jobs queued again", body = crate::openapi::schemas::Retried),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_filter`: a status other than dead, an unknown kind, a bad limit", body = crate::openapi::ErrorBody),
    ))]
pub async fn retry_matching(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(scope::ADMIN)?;
    if filter.status.as_deref().is_some_and(|s| s != "dead") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_filter",
            "only dead jobs can be retried",
        ));
    }
    let kind = filter.kind()?.map(str::to_owned);
    let limit = filter.limit()?;
    let (revived, published) = revive(&state, Target::Dead { kind, limit }).await?;
    let ids: Vec<Uuid> = revived.iter().map(|j| j.id).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "retried": ids.len(), "published": published, "job_ids": ids })),
    ))
}

/// Discards every dead job matching the filter (`kind`, up to `limit`).
#[utoipa::path(post, path = "/v1/admin/jobs/discard", tag = "admin", security(("bearer" = [])), params(Filter),
    responses(
        (status = 200, description = "The dead jobs deleted", body = crate::openapi::schemas::Discarded),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_filter`: a status other than dead, an unknown kind, a bad limit", body = crate::openapi::ErrorBody),
    ))]
pub async fn discard_matching(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Json<Value>, ApiError> {
    caller.require(scope::ADMIN)?;
    if filter.status.as_deref().is_some_and(|s| s != "dead") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_filter",
            "only dead jobs can be discarded",
        ));
    }
    let ids = db::jobs::discard_dead_matching(&state.db, filter.kind()?, filter.limit()?).await?;
    tracing::info!(discarded = ids.len(), "dead jobs discarded by an operator");
    Ok(Json(json!({ "discarded": ids.len(), "job_ids": ids })))
}

/// Deletes a dead job for good (its media, if any, stays `failed`).
#[utoipa::path(delete, path = "/v1/admin/jobs/{id}", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such job", body = crate::openapi::ErrorBody),
        (status = 409, description = "`job_not_dead`: only dead jobs are discarded", body = crate::openapi::ErrorBody),
    ))]
pub async fn discard(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require(scope::ADMIN)?;
    if db::jobs::discard_dead(&state.db, id).await? {
        tracing::info!(job.id = %id, "dead job discarded");
        return Ok(StatusCode::NO_CONTENT);
    }
    match db::jobs::find(&state.db, id).await? {
        Some(job) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_not_dead",
            format!(
                "only dead jobs can be discarded; this one is {}",
                job.status
            ),
        )),
        None => Err(ApiError::not_found("job")),
    }
}

/// Which dead jobs to revive.
enum Target {
    One(Uuid),
    Dead { kind: Option<String>, limit: i64 },
}

/// Revives jobs and resets their media to `pending` in one transaction, then publishes what
/// the broker takes; returns the jobs and how many were published. The first publish that
/// fails ends the publishing (the broker is down or stuck, and each attempt would wait for its
/// confirm time-out): the rest are unpublished rows, which the relay sends, so nothing is lost
/// and the operator gets an answer at once.
async fn revive(state: &AppState, target: Target) -> Result<(Vec<Job>, usize), ApiError> {
    // A publish record noted for a job's first life must not land on its second: written after
    // the revive, it would mark the revived (unpublished) row published, and the relay would
    // leave it alone. Records of other API processes can still land late; the rescuer finds
    // such a job once its queue is missing its message.
    state.writes.flush_published().await;
    let mut tx = state.db.begin().await?;
    let jobs = match target {
        Target::One(id) => db::jobs::revive(&mut *tx, id).await?.into_iter().collect(),
        Target::Dead { kind, limit } => {
            db::jobs::revive_dead(&mut *tx, kind.as_deref(), limit).await?
        }
    };
    let mut media = Vec::new();
    for job in &jobs {
        if let Some(id) = db::media::mark_pending_for_job(&mut *tx, job.id).await? {
            media.push(id);
        }
    }
    tx.commit().await?;
    for id in media {
        state.cache.invalidate(&state.cache.key("media", id)).await;
    }
    let mut published = 0;
    for job in &jobs {
        tracing::info!(job.id = %job.id, job.kind = job.kind, "dead job retried by an operator");
        let Ok(envelope) = job.envelope() else {
            continue; // A kind this version does not know: the relay leaves it to a newer one.
        };
        if let Err(error) = state.publisher.publish(&envelope).await {
            tracing::warn!(%error, left = jobs.len() - published, "publish failed; the relay sends the rest");
            break;
        }
        state.writes.record_published(job.id).await;
        published += 1;
    }
    Ok((jobs, published))
}
