//! `POST /v1/webhooks`: a new endpoint, answered with its signing secret (the only time it is
//! shown).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kiln_core::{
    db::{self, webhooks::NewEndpoint},
    delivery::signing,
};
use serde::{Deserialize, Serialize};

use super::{Checks, EndpointView, MAX_ENDPOINTS};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiJson,
    state::AppState,
};

/// A new endpoint.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://app.example.com/hooks/kiln", "events": ["media.ready", "media.failed"]}))]
pub struct NewEndpointRequest {
    /// Where deliveries are POSTed: `http` or `https`, a public address (unless
    /// `KILN_WEBHOOK_ALLOW_NETS` says otherwise).
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event types to receive, or `["*"]` for every type the key may see.
    #[schema(min_items = 1, max_items = 9)]
    pub events: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// `true` unless given.
    pub enabled: Option<bool>,
}

/// The new endpoint and, this once, its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_` + base64: verify each delivery's `webhook-signature` with it (any Standard
    /// Webhooks library does).
    pub secret: String,
}

/// Creates an endpoint: 201 with its secret.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body(content = NewEndpointRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The endpoint and, this once, its signing secret", body = CreatedEndpoint),
        (status = 403, description = "`forbidden`: the key lacks the webhooks scope", body = crate::openapi::ErrorBody),
        (status = 409, description = "`too_many_endpoints`: the tenant has 50 already", body = crate::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with error.fields: a bad URL, an unknown event type), `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewEndpointRequest>,
) -> Result<Response, ApiError> {
    caller.require(scope::WEBHOOKS)?;
    let description = new.description.unwrap_or_default();
    let mut checks = Checks::new(&state, &caller);
    checks.url(&new.url);
    checks.events(&new.events);
    checks.description(&description);
    checks.finish()?;
    if db::webhooks::list_endpoints(&state.db, &caller.tenant)
        .await?
        .len()
        >= MAX_ENDPOINTS
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_endpoints",
            format!("a tenant may have at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let secret = signing::new_secret();
    let endpoint = db::webhooks::insert_endpoint(
        &state.db,
        &NewEndpoint {
            tenant: &caller.tenant,
            url: &new.url,
            events: &new.events,
            description: &description,
            enabled: new.enabled.unwrap_or(true),
            admin: caller.has(scope::ADMIN),
            secret: &secret,
        },
    )
    .await?;
    tracing::info!(endpoint.id = %endpoint.id, tenant = caller.tenant, "webhook endpoint created");
    let created = CreatedEndpoint {
        endpoint: EndpointView::of(endpoint),
        secret,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}
