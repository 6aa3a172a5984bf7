//! `GET /v1/media/{id}`.

use axum::{Json, extract::State};
use uuid::Uuid;

use super::view::{MediaView, load};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiPath,
    state::AppState,
};

/// Returns the media with its status and variant URLs, read through the cache.
pub async fn get_media(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<MediaView>, ApiError> {
    caller.require(scope::MEDIA)?;
    Ok(Json(load(&state, id, &caller.tenant).await?.view))
}
