//! `PATCH /v1/media/{id}`: the app's metadata on a media.

use axum::{extract::State, response::Response};
use kiln_core::db;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{get::url_mode, metadata, sign::signed_answer, view::load};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiJson, ApiPath},
    state::AppState,
};

/// What may change on a media.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaPatch {
    /// Merged into the media's metadata: a string sets its key, `null` removes it. At most 50
    /// keys (1–40 of `A-Z a-z 0-9 _ - .`), values of at most 500 characters.
    #[schema(value_type = std::collections::HashMap<String, Option<String>>)]
    pub metadata: Map<String, Value>,
}

/// Sets or removes metadata keys and returns the media.
#[utoipa::path(patch, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The media's id")),
    request_body = MediaPatch,
    responses(
        (status = 200, description = "The media with its metadata now", body = super::view::MediaView),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such media in this tenant (or deleted)", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_metadata`: a key, a value or the count is out of bounds; `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn patch_media(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(patch): ApiJson<MediaPatch>,
) -> Result<Response, ApiError> {
    caller.require(scope::MEDIA)?;
    metadata::check_patch(&patch.metadata)?;
    let patch = Value::Object(patch.metadata);
    match db::media::merge_metadata(&state.db, id, &caller.tenant, &patch, metadata::MAX_KEYS)
        .await?
    {
        None => return Err(ApiError::not_found("media")),
        Some(Err(keys)) => {
            return Err(metadata::invalid(format!(
                "the metadata would have {keys} keys; the limit is {}",
                metadata::MAX_KEYS
            )));
        }
        Some(Ok(_)) => {}
    }
    state.cache.invalidate(&state.cache.key("media", id)).await;
    let mode = url_mode(&state, &caller.tenant, None).await?;
    let media = load(&state, id, &caller.tenant).await?;
    Ok(signed_answer(media.view.get(), &state.signer, mode))
}
