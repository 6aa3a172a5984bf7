//! `/v1/admin/webhooks`: every tenant's endpoints for operators, with how their last day's
//! deliveries went, and replaying an endpoint's failed deliveries (the dashboard's button).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kiln_core::db;
use uuid::Uuid;

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiJson, ApiPath},
    routes::webhooks::{EndpointList, deliveries},
    state::AppState,
};

/// The most endpoints listed.
const LIST_LIMIT: i64 = 500;

/// Every tenant's endpoints, disabled ones first.
#[utoipa::path(get, path = "/v1/admin/webhooks", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "Endpoints of every tenant (500 at most), disabled first", body = EndpointList),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EndpointList>, ApiError> {
    caller.require(scope::ADMIN)?;
    let endpoints = db::webhooks::list_all_endpoints(&state.db, LIST_LIMIT).await?;
    Ok(Json(EndpointList::of(&state, endpoints).await?))
}

/// Sends an endpoint's deliveries that failed since a time again, whatever its tenant.
#[utoipa::path(post, path = "/v1/admin/webhooks/{id}/replay", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body(content = deliveries::Replay, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued again", body = deliveries::Replayed),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint", body = crate::openapi::ErrorBody),
        (status = 409, description = "`endpoint_disabled`: enable it first", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_body`: no `since`, or not a time", body = crate::openapi::ErrorBody),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(replay): ApiJson<deliveries::Replay>,
) -> Result<Response, ApiError> {
    caller.require(scope::ADMIN)?;
    let endpoint = db::webhooks::find_endpoint(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let answer = deliveries::replay_since(&state, &endpoint, replay.since).await?;
    tracing::info!(endpoint.id = %id, by = %caller.key_id, replayed = answer.replayed, "failed deliveries replayed by an operator");
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}
