//! `GET|PUT /v1/media-settings`: what a tenant chose for its media (today: permanent public
//! variant URLs).

use axum::{Json, extract::State};
use kiln_core::db;
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiJson,
    state::AppState,
};

/// A tenant's media settings.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    /// Variant URLs without an expiry, cacheable by anyone for a year (`public, max-age=31536000,
    /// immutable`). A deleted media's files may then live on in shared caches (CDNs, proxies)
    /// until they expire there. Turning it off stops every permanent URL within
    /// KILN_AUTH_CACHE_SECS. Off by default: URLs are signed and expire.
    pub public_urls: bool,
}

/// The tenant's media settings.
#[utoipa::path(get, path = "/v1/media-settings", tag = "media", security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings", body = MediaSettings),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
    ))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<MediaSettings>, ApiError> {
    caller.require(scope::MEDIA)?;
    let public_urls = db::tenant_settings::public_media_urls(&state.db, &caller.tenant).await?;
    Ok(Json(MediaSettings { public_urls }))
}

/// Changes the tenant's media settings.
#[utoipa::path(put, path = "/v1/media-settings", tag = "media", security(("bearer" = [])),
    request_body = MediaSettings,
    responses(
        (status = 200, description = "The settings now", body = MediaSettings),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(settings): ApiJson<MediaSettings>,
) -> Result<Json<MediaSettings>, ApiError> {
    caller.require(scope::MEDIA)?;
    db::tenant_settings::set_public_media_urls(&state.db, &caller.tenant, settings.public_urls)
        .await?;
    state.settings.forget(&caller.tenant).await;
    tracing::info!(tenant = %caller.tenant, public_urls = settings.public_urls, "media settings changed");
    Ok(Json(settings))
}
