//! `GET /v1/media/{id}`.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    sign::{UrlMode, signed_answer},
    view::load,
};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiPath, ApiQuery},
    state::AppState,
};

/// `?url_ttl=`: how long the answer's signed URLs should work.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MediaQuery {
    /// Seconds the signed variant URLs work, 1 to KILN_URL_MAX_TTL_SECS (default
    /// KILN_URL_TTL_SECS). Ignored for a tenant with permanent public URLs.
    #[param(minimum = 1)]
    pub url_ttl: Option<u64>,
}

/// Returns the media with its status and signed variant URLs, read through the cache.
#[utoipa::path(get, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The media's id"), MediaQuery),
    responses(
        (status = 200, description = "The media, with its variants once ready; their URLs are signed (they work without a key until they expire) or, for a tenant that opted in, permanent", body = super::view::MediaView),
        (status = 422, description = "`invalid_url_ttl`: outside 1..=KILN_URL_MAX_TTL_SECS; `invalid_filter`: not a whole number", body = crate::openapi::ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such media in this tenant (or deleted)", body = crate::openapi::ErrorBody),
    ))]
pub async fn get_media(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MediaQuery>,
) -> Result<Response, ApiError> {
    caller.require(scope::MEDIA)?;
    let mode = url_mode(&state, &caller.tenant, query.url_ttl).await?;
    let media = load(&state, id, &caller.tenant).await?;
    Ok(signed_answer(media.view.get(), &state.signer, mode))
}

/// How the URLs of an answer to `tenant` are made, with the lifetime it asked for.
pub async fn url_mode(
    state: &AppState,
    tenant: &str,
    url_ttl: Option<u64>,
) -> Result<UrlMode, ApiError> {
    let urls = &state.config.media_urls;
    let ttl = match url_ttl {
        None => urls.ttl,
        Some(secs) if (1..=urls.max_ttl.as_secs()).contains(&secs) => Duration::from_secs(secs),
        Some(secs) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_url_ttl",
                format!(
                    "url_ttl {secs} is outside 1..={} seconds",
                    urls.max_ttl.as_secs()
                ),
            ));
        }
    };
    if state.settings.public_urls(&state.db, tenant).await? {
        return Ok(UrlMode::Permanent);
    }
    Ok(UrlMode::Expiring(ttl))
}
