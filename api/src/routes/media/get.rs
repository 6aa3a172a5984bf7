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
