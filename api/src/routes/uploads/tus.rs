//! Resumable uploads with the tus 1.0 protocol (<https://tus.io/protocols/resumable-upload>):
//! creation, HEAD for the offset, PATCH to append, termination and expiration, at
//! `/v1/uploads/tus/`. Authorised by an API key or an upload token.
//!
//! Each PATCH body is one object in storage (`tus/<id>/<offset>-<n>`, written with 5 MiB
//! multipart parts on S3); what a PATCH received before its connection broke is kept, so the
//! client resumes from there. The last PATCH joins the chunks into the original and records the
//! media exactly as `POST /v1/media` does.

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kiln_core::{
    db::{self, tus::TusUpload},
    media_format::{self, MediaFormat},
};
use uuid::Uuid;

use super::{tus_auth::TusCaller, tus_finish};
use crate::{
    error::ApiError, extract::ApiPath, routes::media::pace::Pace, state::AppState,
    trace_layer::JobTrace,
};

const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,termination,expiration";
/// The longest `Upload-Metadata` kept.
const MAX_UPLOAD_METADATA: usize = 4_096;

/// The media a finished upload became (a Kiln header, exposed to browsers by CORS).
pub const MEDIA_ID_HEADER: &str = "kiln-media-id";

/// `OPTIONS /v1/uploads/tus/`: what this server supports.
#[utoipa::path(options, path = "/v1/uploads/tus/", tag = "uploads", security(()),
    responses((status = 204, description = "tus discovery: `Tus-Version`, `Tus-Extension`, `Tus-Max-Size`")))]
pub async fn discover(State(state): State<AppState>) -> Response {
    let mut headers = HeaderMap::new();
    tus_headers(&mut headers);
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    headers.insert(
        "tus-max-size",
        HeaderValue::from(state.config.largest_upload()),
    );
    (StatusCode::NO_CONTENT, headers).into_response()
}

/// `POST /v1/uploads/tus/`: starts an upload of `Upload-Length` bytes.
#[utoipa::path(post, path = "/v1/uploads/tus/", tag = "uploads", security(("bearer" = [])),
    params(
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Length" = u64, Header, description = "The upload's size in bytes"),
        ("Upload-Metadata" = Option<String>, Header, description = "tus metadata (`key base64,...`), echoed on HEAD")),
    responses(
        (status = 201, description = "Created: PATCH the bytes to `Location`", headers(
            ("Location" = String, description = "/v1/uploads/tus/{id}"),
            ("Upload-Expires" = String, description = "When an unfinished upload is removed"))),
        (status = 400, description = "`invalid_upload_length`, `empty_body`, `invalid_upload_metadata`, `tus_resumable_missing`", body = crate::openapi::ErrorBody),
        (status = 401, description = "`unauthorized`: no key or token, or an unknown one; `token_expired`", body = crate::openapi::ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 409, description = "`token_used`: the token started an upload already", body = crate::openapi::ErrorBody),
        (status = 412, description = "`tus_version_unsupported`: Tus-Resumable names another version (without it: 400 `tus_resumable_missing`)", body = crate::openapi::ErrorBody),
        (status = 413, description = "`payload_too_large`: over the larger of KILN_MAX_UPLOAD_BYTES and KILN_VIDEO_MAX_UPLOAD_BYTES (each type is held to its own once its first bytes arrive), over the token's max_bytes, or a whole day's quota", body = crate::openapi::ErrorBody),
        (status = 429, description = "`quota_exceeded`", body = crate::openapi::ErrorBody),
    ))]
pub async fn create(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let caller = TusCaller::of(&mut parts, &state).await?;
    let length = header_number(&parts.headers, "upload-length").ok_or_else(|| {
        ApiError::bad_request(
            "invalid_upload_length",
            "Upload-Length must give the size in bytes (deferred lengths are not supported)",
        )
    })?;
    if length == 0 {
        return Err(ApiError::bad_request("empty_body", "the upload is empty"));
    }
    let upload_metadata = parts
        .headers
        .get("upload-metadata")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|m| m.len() <= MAX_UPLOAD_METADATA)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_upload_metadata",
                        format!("Upload-Metadata is ASCII of at most {MAX_UPLOAD_METADATA} bytes"),
                    )
                })
        })
        .transpose()?;
    // After the other headers: a malformed request is a 400 whatever version it claims.
    require_version(&parts.headers)?;
    // Each type's own limit is applied once the first bytes say what the upload is.
    let mut limit = state.config.largest_upload();
    if let TusCaller::Token(token) = &caller {
        limit = limit.min(u64::try_from(token.max_bytes).unwrap_or(0));
    }
    if length > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("this upload may be at most {limit} bytes"),
        ));
    }
    crate::routes::media::upload::refuse_if_over_quota(&state, caller.tenant(), Some(length))
        .await?;

    let id = Uuid::now_v7();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(state.config.browser_uploads.tus_expire).unwrap_or_default();
    let empty = serde_json::Value::Object(Default::default());
    let (key_id, content_types, metadata) = match &caller {
        TusCaller::Key(caller) => (caller.key_id, None, &empty),
        TusCaller::Token(token) => (
            token.api_key_id,
            Some(token.content_types.as_slice()),
            &token.metadata,
        ),
    };
    let mut tx = state.db.begin().await?;
    if let TusCaller::Token(token) = &caller
        && !db::tus::spend_token(&mut *tx, token.id, id).await?
    {
        return Err(if token.upload_id.is_some() {
            ApiError::new(
                StatusCode::CONFLICT,
                "token_used",
                "this upload token has started its upload already; ask the app for another",
            )
        } else {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "this upload token has expired; ask the app for another",
            )
        });
    }
    db::tus::create(
        &mut *tx,
        &db::tus::NewUpload {
            id,
            tenant: caller.tenant(),
            api_key_id: key_id,
            upload_length: i64::try_from(length).unwrap_or(i64::MAX),
            content_types,
            metadata,
            upload_metadata: upload_metadata.as_deref(),
            media_id: Uuid::now_v7(),
            expires_at,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(upload.id = %id, length, "resumable upload created");
    let mut headers = HeaderMap::new();
    tus_headers(&mut headers);
    if let Ok(location) = HeaderValue::try_from(format!("/v1/uploads/tus/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    insert_expires(&mut headers, expires_at);
    Ok((StatusCode::CREATED, headers).into_response())
}

/// `HEAD /v1/uploads/tus/{id}`: how much has arrived.
#[utoipa::path(head, path = "/v1/uploads/tus/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The upload's id"),
           ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses(
        (status = 200, description = "`Upload-Offset` and `Upload-Length`; `Kiln-Media-Id` once finished"),
        (status = 404, description = "No such upload (or expired, or another tenant's)"),
        (status = 423, description = "Another request is recording the finished upload; retry"),
        (status = 413, description = "The finished upload is too large to record (it is removed)"),
        (status = 415, description = "The finished upload is not an image it may be (it is removed)"),
        (status = 422, description = "The finished upload's image is refused (it is removed)"),
        (status = 429, description = "Over a quota: ask again later"),
        (status = 412, description = "Tus-Resumable names another version"),
        (status = 400, description = "No Tus-Resumable"),
    ))]
pub async fn head(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    JobTrace(trace): JobTrace,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let caller = TusCaller::of(&mut parts, &state).await?;
    require_version(&parts.headers)?;
    let upload = find(&state, &caller, id).await?;
    let mut finished = upload.finished_at.is_some().then_some(upload.media_id);
    if finished.is_none() && upload.upload_offset == upload.upload_length {
        // All bytes arrived but the last PATCH could not record them (a crash, an outage):
        // the client will not send again, so recording is finished here.
        finished = Some(tus_finish::finish(&state, &upload, trace).await?);
    }
    let mut headers = offset_headers(&upload, upload.upload_offset, finished);
    headers.insert(
        "upload-length",
        HeaderValue::from(upload.upload_length.max(0) as u64),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(metadata) = upload
        .upload_metadata
        .as_deref()
        .and_then(|m| HeaderValue::try_from(m).ok())
    {
        headers.insert("upload-metadata", metadata);
    }
    Ok((StatusCode::OK, headers).into_response())
}

/// `PATCH /v1/uploads/tus/{id}`: appends the body (`Content-Type:
/// application/offset+octet-stream`, the upload's next bytes) at `Upload-Offset`.
#[utoipa::path(patch, path = "/v1/uploads/tus/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The upload's id"),
           ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
           ("Upload-Offset" = u64, Header, description = "Where these bytes go: the offset HEAD gave")),
    responses(
        (status = 204, description = "Appended: the new `Upload-Offset`; with the last bytes the media is recorded and `Kiln-Media-Id` names it", headers(
            ("Upload-Offset" = u64, description = "Bytes received so far"),
            ("Kiln-Media-Id" = Option<String>, description = "The media, once the upload is complete"))),
        (status = 400, description = "`invalid_upload_offset`, `upload_interrupted`, `empty_body`, `tus_resumable_missing`", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such upload (or expired, or another tenant's)", body = crate::openapi::ErrorBody),
        (status = 409, description = "`offset_mismatch`: Upload-Offset is not the upload's offset", body = crate::openapi::ErrorBody),
        (status = 423, description = "`upload_finishing`: another request is recording the finished upload; retry", body = crate::openapi::ErrorBody),
        (status = 412, description = "`tus_version_unsupported`: Tus-Resumable names another version (without it: 400 `tus_resumable_missing`)", body = crate::openapi::ErrorBody),
        (status = 413, description = "`payload_too_large`: more bytes than Upload-Length", body = crate::openapi::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the first bytes are not an image the upload may be (the upload is removed); `invalid_content_type`: the body is not application/offset+octet-stream", body = crate::openapi::ErrorBody),
        (status = 422, description = "`too_many_pixels`, `invalid_image` (the upload is removed)", body = crate::openapi::ErrorBody),
        (status = 429, description = "`too_many_uploads`, `quota_exceeded`", body = crate::openapi::ErrorBody),
    ))]
pub async fn patch(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    JobTrace(trace): JobTrace,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let answered = patch_upload(&state, &mut parts, id, trace, &mut stream).await;
    if answered.is_err() {
        // Read what the client is still sending (within bounds) so that it gets to read the
        // error, and its connection stays usable, instead of a broken pipe.
        drain(&mut stream).await;
    }
    answered
}

async fn patch_upload(
    state: &AppState,
    parts: &mut axum::http::request::Parts,
    id: Uuid,
    trace: Option<String>,
    stream: &mut axum::body::BodyDataStream,
) -> Result<Response, ApiError> {
    let caller = TusCaller::of(parts, state).await?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.eq_ignore_ascii_case("application/offset+octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_content_type",
            "a PATCH body is Content-Type: application/offset+octet-stream",
        ));
    }
    let offset = header_number(&parts.headers, "upload-offset").ok_or_else(|| {
        ApiError::bad_request(
            "invalid_upload_offset",
            "Upload-Offset must be a byte offset",
        )
    })?;
    require_version(&parts.headers)?;
    let upload = find(state, &caller, id).await?;
    if i64::try_from(offset).ok() != Some(upload.upload_offset) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "offset_mismatch",
            format!(
                "Upload-Offset {offset} is not this upload's offset ({}); ask HEAD",
                upload.upload_offset
            ),
        ));
    }
    let _slot = state.uploads.acquire(&upload.tenant).await?;
    let mut upload = upload;
    if upload.finished_at.is_none() && upload.upload_offset < upload.upload_length {
        let appended = append(state, &upload, stream).await?;
        upload.upload_offset = appended.offset;
        upload.chunks.push(appended.chunk);
        upload.content_type = upload.content_type.or(appended.content_type);
        if let Some(error) = appended.interrupted {
            return Err(error);
        }
    }
    let finished = if upload.finished_at.is_some() {
        Some(upload.media_id)
    } else if upload.upload_offset == upload.upload_length {
        Some(tus_finish::finish(state, &upload, trace).await?)
    } else {
        None
    };
    let headers = offset_headers(&upload, upload.upload_offset, finished);
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// `DELETE /v1/uploads/tus/{id}`: abandons an upload and removes its bytes (a media it
/// already became stays).
#[utoipa::path(delete, path = "/v1/uploads/tus/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The upload's id"),
           ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses(
        (status = 204, description = "Terminated"),
        (status = 400, description = "`tus_resumable_missing`", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such upload", body = crate::openapi::ErrorBody),
        (status = 412, description = "`tus_version_unsupported`: Tus-Resumable names another version (without it: 400 `tus_resumable_missing`)", body = crate::openapi::ErrorBody),
    ))]
pub async fn terminate(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let caller = TusCaller::of(&mut parts, &state).await?;
    require_version(&parts.headers)?;
    find(&state, &caller, id).await?;
    tus_finish::discard(&state, id).await;
    let mut headers = HeaderMap::new();
    tus_headers(&mut headers);
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// What one PATCH added.
struct Appended {
    offset: i64,
    chunk: String,
    content_type: Option<String>,
    /// The body broke off (or came too slowly) after what was kept.
    interrupted: Option<ApiError>,
}

/// Streams a PATCH body into a chunk of its own and records it. The first bytes of an upload
/// are sniffed before anything is stored. A body that breaks off keeps what arrived.
async fn append(
    state: &AppState,
    upload: &TusUpload,
    stream: &mut axum::body::BodyDataStream,
) -> Result<Appended, ApiError> {
    let room = u64::try_from(upload.upload_length - upload.upload_offset).unwrap_or(0);
    let mut pace = Pace::new(&state.config.limits);
    let mut pending: Vec<u8> = Vec::new();
    let mut content_type = None;
    let mut interrupted = None;
    // The start of the upload: sniffed first, so a non-image never reaches storage.
    if upload.upload_offset == 0 {
        while pending.len() < media_format::SNIFF_LEN {
            match next_chunk(stream, &mut pace).await {
                Ok(Some(bytes)) => pending.extend_from_slice(&bytes),
                Ok(None) => break,
                Err(error) => {
                    interrupted = Some(error);
                    break;
                }
            }
        }
        let whole = pending.len() as u64 >= room;
        if pending.len() < media_format::SNIFF_LEN && !whole {
            // Too few bytes to tell what it is: a broken-off start is dropped (the client
            // starts again from 0); a complete but tiny PATCH is kept and judged at the end.
            if let Some(error) = interrupted {
                return Err(error);
            }
            if pending.is_empty() {
                return Err(ApiError::bad_request(
                    "empty_body",
                    "the PATCH brought no bytes",
                ));
            }
        } else {
            let sniffed = MediaFormat::sniff(&pending);
            if !sniffed.is_some_and(|sniffed| allowed(upload, sniffed.content_type())) {
                tus_finish::discard(state, upload.id).await;
                return Err(not_an_image());
            }
            if let Some(format) = sniffed {
                let length = u64::try_from(upload.upload_length).unwrap_or(u64::MAX);
                if let Err(error) = within_type_limit(state, format, length) {
                    tus_finish::discard(state, upload.id).await;
                    return Err(error);
                }
            }
            content_type = sniffed.map(|format| format.content_type().to_owned());
        }
    }
    let chunk = format!(
        "tus/{}/{:020}-{}",
        upload.id,
        upload.upload_offset,
        Uuid::now_v7().simple()
    );
    let mut writer = state.storage.writer(&chunk).await?;
    let mut received = 0u64;
    let mut next = (!pending.is_empty()).then(|| bytes::Bytes::from(pending));
    loop {
        let bytes = match next.take() {
            Some(bytes) => bytes,
            None if interrupted.is_some() => break,
            None => match next_chunk(stream, &mut pace).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(error) => {
                    interrupted = Some(error);
                    break;
                }
            },
        };
        received += bytes.len() as u64;
        if received > room {
            writer.abort().await.ok();
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the upload's Upload-Length leaves room for {room} more bytes"),
            ));
        }
        if let Err(error) = writer.write(&bytes).await {
            writer.abort().await.ok();
            return Err(error.into());
        }
    }
    if received == 0 {
        writer.abort().await.ok();
        return Err(interrupted
            .unwrap_or_else(|| ApiError::bad_request("empty_body", "the PATCH brought no bytes")));
    }
    writer.finish().await?;
    let offset = upload.upload_offset + i64::try_from(received).unwrap_or(i64::MAX);
    let recorded = match db::tus::advance(
        &state.db,
        upload.id,
        upload.upload_offset,
        offset,
        &chunk,
        content_type.as_deref(),
    )
    .await
    {
        Ok(recorded) => recorded,
        Err(error) => {
            // Not recorded, so never read: the client sends these bytes again.
            state.storage.delete(&chunk).await.ok();
            return Err(error.into());
        }
    };
    if !recorded {
        // Another PATCH at the same offset won: its bytes count, not these.
        state.storage.delete(&chunk).await.ok();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "offset_mismatch",
            "another request moved this upload's offset meanwhile; ask HEAD",
        ));
    }
    Ok(Appended {
        offset,
        chunk,
        content_type,
        interrupted,
    })
}

async fn next_chunk(
    stream: &mut axum::body::BodyDataStream,
    pace: &mut Pace,
) -> Result<Option<bytes::Bytes>, ApiError> {
    let chunk = pace.read(stream.next()).await?.transpose().map_err(|e| {
        ApiError::bad_request("upload_interrupted", format!("reading the upload: {e}"))
    })?;
    if let Some(bytes) = &chunk {
        pace.count(bytes.len())?;
    }
    Ok(chunk)
}

/// Reads and discards the rest of a refused body, at most 64 MiB and 10 s.
async fn drain(stream: &mut axum::body::BodyDataStream) {
    let mut discarded = 0usize;
    let drained = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(bytes)) = stream.next().await {
            discarded += bytes.len();
            if discarded > 64 << 20 {
                break;
            }
        }
    });
    drained.await.ok();
}

/// 413 when an upload of `format` of `bytes` is over its type's limit (a creation may
/// announce up to the larger of the two).
pub fn within_type_limit(
    state: &AppState,
    format: MediaFormat,
    bytes: u64,
) -> Result<(), ApiError> {
    let limit = state.config.upload_limit(format);
    if bytes <= limit {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "a {} upload may be at most {limit} bytes",
            format.content_type()
        ),
    ))
}

/// Whether the upload may be of `content_type` (its token's types; any accepted type with a
/// key).
pub fn allowed(upload: &TusUpload, content_type: &str) -> bool {
    upload
        .content_types
        .as_ref()
        .is_none_or(|types| types.iter().any(|t| t == content_type))
}

/// 415 for bytes that are not an image or video the upload may be.
pub fn not_an_image() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the upload is not an image or video of a type it may be (judged by content, not name)",
    )
}

/// The upload, if this caller may touch it.
async fn find(state: &AppState, caller: &TusCaller, id: Uuid) -> Result<TusUpload, ApiError> {
    db::tus::find(&state.db, id)
        .await?
        .filter(|upload| caller.may_touch(upload))
        .ok_or_else(|| ApiError::not_found("upload"))
}

/// 400 without `Tus-Resumable`, 412 (as tus says) for a version other than 1.0.0.
fn require_version(headers: &HeaderMap) -> Result<(), ApiError> {
    let version = headers
        .get("tus-resumable")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match version {
        Some(TUS_VERSION) => Ok(()),
        None => Err(ApiError::bad_request(
            "tus_resumable_missing",
            "a tus request carries Tus-Resumable: 1.0.0",
        )),
        Some(other) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "tus_version_unsupported",
            format!("tus {other} is not supported; send Tus-Resumable: 1.0.0"),
        )),
    }
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    // Digits only: no sign, no spaces inside.
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse().ok())
        .flatten()
}

fn tus_headers(headers: &mut HeaderMap) {
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
}

fn offset_headers(upload: &TusUpload, offset: i64, media: Option<Uuid>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    tus_headers(&mut headers);
    headers.insert("upload-offset", HeaderValue::from(offset.max(0) as u64));
    insert_expires(&mut headers, upload.expires_at);
    if let Some(media) = media
        && let Ok(value) = HeaderValue::try_from(media.to_string())
    {
        headers.insert(MEDIA_ID_HEADER, value);
    }
    headers
}

fn insert_expires(headers: &mut HeaderMap, at: DateTime<Utc>) {
    let formatted = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(value) = HeaderValue::try_from(formatted) {
        headers.insert("upload-expires", value);
    }
}
