//! Reading and changing endpoints: list, get, `PATCH`, `DELETE`, and rotating the secret.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kiln_core::{
    db::{self, webhooks::EndpointChange},
    delivery::signing,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Checks, EndpointList, EndpointView, owned, owned_to_change};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiJson, ApiPath},
    state::AppState,
};

/// Every endpoint of the tenant, oldest first, with its success over the last day.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
    ))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EndpointList>, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    let endpoints = db::webhooks::list_endpoints(&state.db, &caller.tenant).await?;
    Ok(Json(EndpointList::of(&state, endpoints).await?))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint in this tenant", body = crate::openapi::ErrorBody),
    ))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    Ok(Json(EndpointView::of(owned(&state, &caller, id).await?)))
}

/// What a `PATCH` changes; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 9)]
    pub events: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// `true` re-enables an endpoint Kiln disabled (and starts its failure count afresh).
    pub enabled: Option<bool>,
}

/// Changes an endpoint.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body(content = EndpointPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The endpoint, changed", body = EndpointView),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint in this tenant", body = crate::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with error.fields), `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(patch): ApiJson<EndpointPatch>,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    owned_to_change(&state, &caller, id).await?;
    let mut checks = Checks::new(&state, &caller);
    if let Some(url) = &patch.url {
        checks.url(url);
    }
    if let Some(events) = &patch.events {
        checks.events(events);
    }
    if let Some(description) = &patch.description {
        checks.description(description);
    }
    checks.finish()?;
    let change = EndpointChange {
        url: patch.url.as_deref(),
        events: patch.events.as_deref(),
        description: patch.description.as_deref(),
        enabled: patch.enabled,
    };
    let endpoint = db::webhooks::update_endpoint(&state.db, id, &caller.tenant, &change)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    Ok(Json(EndpointView::of(endpoint)))
}

/// Deletes an endpoint and its delivery log; deliveries still due are not sent.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint in this tenant", body = crate::openapi::ErrorBody),
    ))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    owned_to_change(&state, &caller, id).await?;
    if !db::webhooks::delete_endpoint(&state.db, id, &caller.tenant).await? {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How a rotation goes.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRotation {
    /// Seconds the old secret keeps signing beside the new one (default
    /// `KILN_WEBHOOK_SECRET_OVERLAP_SECS`, a day); 0 ends it at once.
    #[schema(minimum = 0, maximum = 2592000)]
    pub overlap_secs: Option<u64>,
}

/// The endpoint's new secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// The new `whsec_` secret, shown this once.
    pub secret: String,
}

/// Replaces the signing secret. During the overlap every delivery carries two signatures, one
/// per secret, so receivers can switch at their own pace.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body(content = Option<SecretRotation>, content_type = "application/json"),
    responses(
        (status = 200, description = "The endpoint and its new secret", body = RotatedSecret),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint in this tenant", body = crate::openapi::ErrorBody),
        (status = 422, description = "`validation_failed`: an overlap over 30 days; `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: axum::body::Bytes,
) -> Result<Json<RotatedSecret>, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    owned_to_change(&state, &caller, id).await?;
    // The body is optional: none means the default overlap.
    let rotation: SecretRotation = if body.iter().all(u8::is_ascii_whitespace) {
        SecretRotation::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("the body is not a rotation: {error}"),
            )
        })?
    };
    let overlap = match rotation.overlap_secs {
        None => state.config.webhooks.secret_overlap,
        Some(secs @ 0..=2_592_000) => std::time::Duration::from_secs(secs),
        Some(_) => {
            let mut fields = serde_json::Map::new();
            fields.insert("overlap_secs".into(), "at most 2592000 (30 days)".into());
            return Err(ApiError::invalid_fields(fields));
        }
    };
    let secret = signing::new_secret();
    let endpoint = db::webhooks::rotate_secret(&state.db, id, &caller.tenant, &secret, overlap)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    tracing::info!(endpoint.id = %id, overlap_secs = overlap.as_secs(), "webhook secret rotated");
    Ok(Json(RotatedSecret {
        endpoint: EndpointView::of(endpoint),
        secret,
    }))
}
