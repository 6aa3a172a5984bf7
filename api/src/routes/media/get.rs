//! `GET /v1/media/{id}`.

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use super::view::load;
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiPath,
    state::AppState,
};

/// Returns the media with its status and variant URLs, read through the cache.
#[utoipa::path(get, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])), params(("id" = Uuid, Path, description = "The media's id")),
    responses(
        (status = 200, description = "The media, with its variants once ready", body = super::view::MediaView),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such media in this tenant (or deleted)", body = crate::openapi::ErrorBody),
    ))]
pub async fn get_media(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    caller.require(scope::MEDIA)?;
    let media = load(&state, id, &caller.tenant).await?;
    // The cached view is already the response's JSON.
    let body = String::from(Box::<str>::from(media.view));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
