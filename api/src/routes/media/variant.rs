//! `GET /v1/media/{id}/variants/{name}.{jpg|webp}`: streams a stored variant.

use axum::{
    body::Body,
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

/// Streams the file with its content type. Variant files never change for a given URL (a re-run
/// rewrites the same bytes), so clients may cache them for a year.
#[utoipa::path(get, path = "/v1/media/{id}/variants/{file}", tag = "media", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The media's id"),
           ("file" = String, Path, description = "`<variant>.jpg` or `<variant>.webp`")),
    responses(
        (status = 200, description = "The variant's bytes", content(
            (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"))),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such media, variant or format", body = crate::openapi::ErrorBody),
    ))]
pub async fn get_variant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, file)): ApiPath<(Uuid, String)>,
) -> Result<Response, ApiError> {
    caller.require(scope::MEDIA)?;
    let (name, format, content_type) = match file.rsplit_once('.') {
        Some((name, "jpg" | "jpeg")) => (name, "jpeg", "image/jpeg"),
        Some((name, "webp")) => (name, "webp", "image/webp"),
        _ => return Err(ApiError::not_found("variant")),
    };
    let media = load(&state, id, &caller.tenant).await?;
    let key = media
        .files
        .iter()
        .find(|(n, f, _)| n == name && f == format)
        .map(|(_, _, key)| key.clone())
        .ok_or_else(|| ApiError::not_found("variant"))?;
    let (size, stream) = state.storage.get_stream(&key).await?;
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(response)
}
