//! API keys for operators (admin scope): `GET /v1/admin/keys?tenant=`, `POST /v1/admin/keys`
//! (the key is in this one answer only), `POST /v1/admin/keys/{id}/revoke` and
//! `POST /v1/admin/keys/{id}/rotate` with an optional `{"overlap_secs": n}`.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kiln_core::db::api_keys::KeyRecord;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiJson, ApiPath, ApiQuery},
    keys::{self, KeyError, KeySpec},
    state::AppState,
};

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Invalid(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_key", message)
            }
            KeyError::TenantExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "tenant_exists", error.to_string())
            }
            KeyError::NotFound(_) => ApiError::not_found("API key"),
            KeyError::Revoked(_) => {
                ApiError::new(StatusCode::CONFLICT, "key_revoked", error.to_string())
            }
            KeyError::Database(error) => error.into(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    /// Only this tenant's keys.
    tenant: Option<String>,
}

/// Every key (or one tenant's), oldest first; never a secret or a hash.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", security(("bearer" = [])), params(ListFilter),
    responses((status = 200, description = "The keys, oldest first", body = crate::openapi::schemas::KeyList), (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<ListFilter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(scope::ADMIN)?;
    // Postgres refuses a NUL in text; no tenant's name holds one, so none matches.
    if filter.tenant.as_deref().is_some_and(|t| t.contains('\0')) {
        return Ok(Json(json!({ "keys": [] })));
    }
    let keys = keys::list(&state.db, filter.tenant.as_deref()).await?;
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "my-app", "scopes": ["media", "email"]}))]
pub struct NewKey {
    /// The key's name; without `tenant`, also the name of the new tenant it starts.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// An existing tenant to add the key to.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    tenant: Option<String>,
    #[schema(min_items = 1, inline, value_type = Vec<ScopeName>)]
    scopes: Vec<String>,
    /// Where this key's notifications go.
    #[schema(format = Email)]
    notify_email: Option<String>,
}

/// What a key may do.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // A schema only: scopes are checked as strings by keys::KeySpec.
enum ScopeName {
    Media,
    Email,
    Admin,
    Webhooks,
    Tasks,
}

/// Creates a key: 201 with the key itself, which is never shown again.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", security(("bearer" = [])),
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The key's record and, this once, the key", body = crate::openapi::schemas::CreatedKey),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 409, description = "`tenant_exists`: the name is a tenant already and no tenant was named", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_key`: an empty name, an unknown scope, a bad address; `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewKey>,
) -> Result<Response, ApiError> {
    caller.require(scope::ADMIN)?;
    let spec = KeySpec {
        name: &new.name,
        tenant: new.tenant.as_deref(),
        scopes: &new.scopes,
        notify_email: new.notify_email.as_deref(),
    };
    let created = keys::create(&state.db, &spec).await?;
    tracing::info!(key.id = %created.id, by = %caller.key_id, "API key created");
    let record = find(&state, created.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(secret_body(&record, &created.key)),
    )
        .into_response())
}

/// Revokes a key now (not the caller's own: an operator cannot lock itself out by mistake).
#[utoipa::path(post, path = "/v1/admin/keys/{id}/revoke", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key, revoked", body = KeyRecord),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such key", body = crate::openapi::ErrorBody),
        (status = 409, description = "`own_key`: a key cannot revoke itself", body = crate::openapi::ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<KeyRecord>, ApiError> {
    caller.require(scope::ADMIN)?;
    if id == caller.key_id {
        return Err(own_key());
    }
    let key = keys::revoke(&state.db, id).await?;
    tracing::info!(key.id = %id, by = %caller.key_id, "API key revoked");
    Ok(Json(key))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// How long the old key keeps working (at most 30 days).
    #[serde(default)]
    #[schema(maximum = 2_592_000)]
    overlap_secs: u64,
}

/// Makes a new key like this one (201, the key in this answer only, the old key under
/// `replaced`) and revokes the old one after the overlap. The body is optional.
#[utoipa::path(post, path = "/v1/admin/keys/{id}/rotate", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path, description = "The key's id")),
    request_body(content = Option<Rotation>, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key (shown this once) and the old key's record", body = crate::openapi::schemas::RotatedKey),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such key", body = crate::openapi::ErrorBody),
        (status = 409, description = "`key_revoked`: the key is revoked already; `own_key`: a key rotating itself without an overlap", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_body`, `invalid_key`: an overlap over 30 days", body = crate::openapi::ErrorBody),
    ))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(scope::ADMIN)?;
    let rotation: Rotation = if body.iter().all(u8::is_ascii_whitespace) {
        Rotation::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            )
        })?
    };
    let overlap = Duration::from_secs(rotation.overlap_secs.min(keys::MAX_OVERLAP.as_secs() + 1));
    if id == caller.key_id && overlap.is_zero() {
        return Err(own_key());
    }
    let (created, old) = keys::rotate(&state.db, id, overlap).await?;
    tracing::info!(key.id = %created.id, replaces = %id, by = %caller.key_id, "API key rotated");
    let record = find(&state, created.id).await?;
    let mut body = secret_body(&record, &created.key);
    body["replaced"] = serde_json::to_value(&old).unwrap_or_default();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn find(state: &AppState, id: Uuid) -> Result<KeyRecord, ApiError> {
    kiln_core::db::api_keys::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::internal("a key just created is missing"))
}

/// The key's record with the key itself, for the one answer that shows it.
fn secret_body(record: &KeyRecord, key: &str) -> serde_json::Value {
    let mut body = serde_json::to_value(record).unwrap_or_default();
    body["key"] = json!(key);
    body
}

/// 409 `own_key`: a key may not end itself at once over HTTP.
fn own_key() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "own_key",
        "a key cannot revoke itself (nor rotate itself without an overlap); use another admin \
         key or `kiln-api keys`",
    )
}
