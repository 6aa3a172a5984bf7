//! `GET|HEAD /v1/media/{id}/variants/{name}[.{jpg|webp|avif}]`: a stored variant, authorised by
//! a bearer key or by a signed URL (no header at all, for `<img src>`), with ETag, 304, Range
//! and, without an extension, the format negotiated from `Accept`.

use axum::{
    body::Body,
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use kiln_core::media_urls::Refusal;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    negotiate,
    ranges::{self, Wanted},
    view::{CachedMedia, StoredFile, load, load_any},
};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiPath, ApiQuery},
    state::AppState,
};

/// A signed URL's query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signature {
    /// Unix time after which the URL stops working (absent on a permanent public URL).
    pub expires: Option<String>,
    /// The URL's signature, as `GET /v1/media/{id}` handed it out.
    pub sig: Option<String>,
}

/// A year: how long a permanent public URL may be cached.
const YEAR_SECS: i64 = 31_536_000;

/// How the request was authorised, which decides how the answer may be cached.
enum Access {
    /// A bearer key (or dashboard session): each use should be checked again.
    Key,
    /// A signed URL good until this unix time.
    Until(i64),
    /// A permanent public URL.
    Public,
}

/// Streams the variant with its content type, ETag and caching headers (`HEAD` too: the
/// headers alone).
#[utoipa::path(get, path = "/v1/media/{id}/variants/{file}", tag = "media", security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "The media's id"),
           ("file" = String, Path, description = "`<variant>.jpg`, `<variant>.webp`, `<variant>.avif` (when the instance makes AVIF: `KILN_FORMATS`), or just `<variant>` to get the best format the media has of those the `Accept` header names (AVIF, WebP, else JPEG; the answer then varies on Accept)."),
           Signature,
           ("Range" = Option<String>, Header, description = "One byte range (`bytes=0-1023`); several ranges get the whole file"),
           ("If-None-Match" = Option<String>, Header, description = "ETags the client holds; a match is a 304")),
    responses(
        (status = 200, description = "The variant's bytes", content(
            (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"), (Vec<u8> = "image/avif"))),
        (status = 206, description = "The requested range (`Content-Range`)", content(
            (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"), (Vec<u8> = "image/avif"))),
        (status = 304, description = "Not modified: the client's copy (If-None-Match) is current"),
        (status = 401, description = "`unauthorized`: neither a signature nor a key", body = crate::openapi::ErrorBody),
        (status = 403, description = "`bad_signature`: the signature is wrong, expired or for another URL, or a permanent URL of a tenant without public URLs; `forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such media (or deleted, whatever the signature), variant or format", body = crate::openapi::ErrorBody),
        (status = 416, description = "`range_not_satisfiable`: the range lies outside the file", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_filter`: a malformed query (a parameter given twice)", body = crate::openapi::ErrorBody),
    ))]
pub async fn get_variant(
    State(state): State<AppState>,
    ApiPath((id, file)): ApiPath<(Uuid, String)>,
    ApiQuery(signature): ApiQuery<Signature>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let (media, access) = authorise(&state, &mut parts, id, &file, signature).await?;
    let negotiated = !file.contains('.');
    let stored = choose(&media, &file, parts.headers.get(header::ACCEPT))?;
    let mut response = send(&state, &parts, stored, access, negotiated).await?;
    if negotiated {
        // Whatever the answer (200, 206, 304): a cache must key it on Accept.
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    Ok(response)
}

/// Checks the signature if the URL carries one, else the bearer key; returns the media.
async fn authorise(
    state: &AppState,
    parts: &mut Parts,
    id: Uuid,
    file: &str,
    signature: Signature,
) -> Result<(CachedMedia, Access), ApiError> {
    let Some(sig) = signature.sig else {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(scope::MEDIA)?;
        return Ok((load(state, id, &caller.tenant).await?, Access::Key));
    };
    let expires = match signature.expires {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| bad_signature("invalid"))?),
    };
    let now = chrono::Utc::now().timestamp();
    let path = kiln_core::views::variant_path(id, file);
    state
        .signer
        .check(&path, expires, &sig, now)
        .map_err(|refusal| match refusal {
            Refusal::Invalid => bad_signature("invalid for this URL"),
            Refusal::Expired => bad_signature("expired"),
        })?;
    // A valid signature never outlives the media: deleted is gone.
    let media = load_any(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("media"))?;
    let access = match expires {
        Some(expires) => Access::Until(expires),
        None if state.settings.public_urls(&state.db, &media.tenant).await? => Access::Public,
        None => return Err(bad_signature("permanent URLs are off for this tenant")),
    };
    Ok((media, access))
}

fn bad_signature(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "bad_signature",
        format!("the URL's signature is {why}; ask GET /v1/media/{{id}} for a fresh URL"),
    )
}

/// The stored file that `file` names: `<name>.<ext>`, or `<name>` negotiated from `Accept`.
fn choose<'a>(
    media: &'a CachedMedia,
    file: &str,
    accept: Option<&HeaderValue>,
) -> Result<&'a StoredFile, ApiError> {
    let find = |name: &str, format: &str| {
        media
            .files
            .iter()
            .find(|f| f.name == name && f.format == format)
    };
    let found = match file.rsplit_once('.') {
        Some((name, "jpg" | "jpeg")) => find(name, "jpeg"),
        Some((name, "webp")) => find(name, "webp"),
        Some((name, "avif")) => find(name, "avif"),
        Some((name, "mp4")) => find(name, "mp4"),
        Some(_) => None,
        None => {
            let available: Vec<&str> = media
                .files
                .iter()
                .filter(|f| f.name == file)
                .map(|f| f.format.as_str())
                .collect();
            let accept = accept.and_then(|v| v.to_str().ok());
            negotiate::pick(accept, &available).and_then(|format| find(file, format))
        }
    };
    found.ok_or_else(|| ApiError::not_found("variant"))
}

fn content_type(format: &str) -> &'static str {
    match format {
        "webp" => "image/webp",
        "avif" => "image/avif",
        "mp4" => "video/mp4",
        _ => "image/jpeg",
    }
}

/// Answers with the file: 304 if the client's copy is current, 206 for a range, the bytes
/// (or nginx's `X-Accel-Redirect` to them) otherwise; HEAD gets the headers alone.
async fn send(
    state: &AppState,
    parts: &Parts,
    file: &StoredFile,
    access: Access,
    negotiated: bool,
) -> Result<Response, ApiError> {
    let etag = file.sha256.as_ref().map(|sha| format!("\"{sha}\""));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file.format)),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, cache_control(&access));
    if let Some(etag) = &etag
        && let Ok(value) = HeaderValue::try_from(etag.as_str())
    {
        headers.insert(header::ETAG, value);
    }
    let header_str = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let (Some(etag), Some(held)) = (&etag, header_str(header::IF_NONE_MATCH))
        && ranges::none_match_hits(held, etag)
    {
        headers.remove(header::CONTENT_TYPE);
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }

    let head = parts.method == Method::HEAD;
    // nginx sends the file (Range included) once Kiln has checked the request. Not for a
    // negotiated URL: nginx would drop its Vary: Accept, and a shared cache would then serve
    // one client's format to every other.
    if let Some(prefix) = &state.config.media_urls.accel_redirect_prefix
        && !negotiated
        && !head
        && let Ok(value) = HeaderValue::try_from(format!("{prefix}{}", file.key))
    {
        headers.insert("x-accel-redirect", value);
        return Ok((StatusCode::OK, headers).into_response());
    }
    let size = file.bytes;
    let wanted = if ranges::if_range_allows(header_str(header::IF_RANGE), etag.as_deref()) {
        ranges::wanted(header_str(header::RANGE), size)
    } else {
        Wanted::Whole
    };
    match wanted {
        Wanted::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::try_from(format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            Ok(response)
        }
        Wanted::Part(range) => {
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(range.end - range.start),
            );
            if let Ok(value) =
                HeaderValue::try_from(format!("bytes {}-{}/{size}", range.start, range.end - 1))
            {
                headers.insert(header::CONTENT_RANGE, value);
            }
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(state.storage.get_range_stream(&file.key, range).await?)
            };
            Ok((StatusCode::PARTIAL_CONTENT, headers, body).into_response())
        }
        Wanted::Whole => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            if head {
                return Ok((StatusCode::OK, headers).into_response());
            }
            let (_, stream) = state.storage.get_stream(&file.key).await?;
            Ok((StatusCode::OK, headers, Body::from_stream(stream)).into_response())
        }
    }
}

/// Caching that never outlives the authorisation: a key's download is revalidated on each
/// use (the ETag makes that a 304), a signed URL's is private and ends with the signature, a
/// permanent public URL's is public and immutable for a year.
fn cache_control(access: &Access) -> HeaderValue {
    match access {
        Access::Key => HeaderValue::from_static("private, no-cache"),
        Access::Public => HeaderValue::from_static("public, max-age=31536000, immutable"),
        Access::Until(expires) => {
            let left = (expires - chrono::Utc::now().timestamp()).clamp(0, YEAR_SECS);
            HeaderValue::try_from(format!("private, max-age={left}"))
                .unwrap_or(HeaderValue::from_static("private, no-cache"))
        }
    }
}
