//! An endpoint's delivery log, and sending failed deliveries again (one, or all since a time).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use kiln_core::db::{self, jobs::Job, webhooks::Delivery};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::owned;
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiJson, ApiPath, ApiQuery},
    state::AppState,
};

/// Which deliveries to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// 50 by default, at most 500.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Only deliveries made before this one (the last id of the previous page).
    pub before: Option<Uuid>,
}

/// Deliveries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// The endpoint's deliveries, newest first: status, attempts, the last answer's code, latency
/// and first 1 KB, the next attempt. Kept as long as their jobs (`KILN_RETAIN_*`).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id"), LogQuery),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint in this tenant", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_filter`: a limit outside 1..=500 or a bad id", body = crate::openapi::ErrorBody),
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    let limit = match query.limit {
        None => 50,
        Some(n @ 1..=500) => n,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_filter",
                "limit must be 1..=500",
            ));
        }
    };
    let endpoint = owned(&state, &caller, id).await?;
    let deliveries =
        db::webhooks::list_deliveries(&state.db, endpoint.id, query.before, limit).await?;
    Ok(Json(DeliveryList { deliveries }))
}

/// Path of one delivery.
#[derive(Debug, Deserialize)]
pub struct DeliveryPath {
    id: Uuid,
    delivery_id: Uuid,
}

/// Sends a failed delivery again, with a fresh set of attempts and the same `webhook-id`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id"), ("delivery_id" = Uuid, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Queued again", body = crate::openapi::schemas::JobAccepted,
            headers(("Location" = String, description = "/v1/jobs/{job_id}"))),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint in this tenant", body = crate::openapi::ErrorBody),
        (status = 409, description = "`delivery_not_failed`: no such delivery, or it has not failed for good; `endpoint_disabled`: enable it first", body = crate::openapi::ErrorBody),
    ))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<DeliveryPath>,
) -> Result<Response, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    let endpoint = owned(&state, &caller, path.id).await?;
    usable(&endpoint)?;
    let mut tx = state.db.begin().await?;
    let job = db::webhooks::replay(&mut tx, endpoint.id, path.delivery_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "delivery_not_failed",
                "only a delivery of this endpoint that failed for good can be sent again",
            )
        })?;
    tx.commit().await?;
    publish(&state, std::slice::from_ref(&job)).await;
    crate::routes::jobs::accepted(
        job.id,
        serde_json::json!({ "job_id": job.id, "status": job.status }),
    )
}

/// Which failed deliveries to send again.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Failed deliveries made at or after this time.
    pub since: DateTime<Utc>,
}

/// How many deliveries were queued again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub replayed: usize,
    /// More failed deliveries remain since then: call again.
    pub more: bool,
}

/// The most deliveries one replay call queues.
const REPLAY_BATCH: i64 = 1000;

/// Sends every delivery of the endpoint that failed for good since a time again (up to 1,000 a
/// call, oldest first).
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body(content = Replay, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued again", body = Replayed),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint in this tenant", body = crate::openapi::ErrorBody),
        (status = 409, description = "`endpoint_disabled`: enable it first", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_body`: no `since`, or not a time", body = crate::openapi::ErrorBody),
    ))]
pub async fn replay_failed(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(replay): ApiJson<Replay>,
) -> Result<Response, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    let endpoint = owned(&state, &caller, id).await?;
    let answer = replay_since(&state, &endpoint, replay.since).await?;
    tracing::info!(endpoint.id = %id, replayed = answer.replayed, "failed deliveries replayed");
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Queues the endpoint's deliveries that failed since `since` again (one batch).
pub async fn replay_since(
    state: &AppState,
    endpoint: &db::webhooks::Endpoint,
    since: DateTime<Utc>,
) -> Result<Replayed, ApiError> {
    usable(endpoint)?;
    // Postgres keeps no time before 4713 BC: anything before Kiln existed means "all".
    let since = since.max(DateTime::UNIX_EPOCH);
    let mut tx = state.db.begin().await?;
    let jobs = db::webhooks::replay_failed_since(&mut tx, endpoint.id, since, REPLAY_BATCH).await?;
    tx.commit().await?;
    publish(state, &jobs).await;
    Ok(Replayed {
        replayed: jobs.len(),
        more: i64::try_from(jobs.len()).unwrap_or(i64::MAX) >= REPLAY_BATCH,
    })
}

/// A replay to a disabled endpoint would only fail again.
fn usable(endpoint: &db::webhooks::Endpoint) -> Result<(), ApiError> {
    if endpoint.enabled {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "endpoint_disabled",
        "the endpoint is disabled: enable it (PATCH enabled: true) first",
    ))
}

async fn publish(state: &AppState, jobs: &[Job]) {
    for job in jobs {
        kiln_core::queue::publish_committed(&state.writes, &state.publisher, job).await;
    }
}
