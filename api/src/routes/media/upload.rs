//! `POST /v1/media`: streams an upload to storage while hashing and counting it, checks what it
//! is from its bytes, then records the media and its job in one transaction.
//!
//! Every rejection happens before a job exists, and leaves no file behind:
//! too many in flight → 429, empty → 400, slower than the minimum pace → 408, too large → 413, not an image → 415, too many pixels or
//! unreadable header → 422.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use futures::StreamExt;
use kiln_core::{
    db,
    media_format::{self, MediaFormat},
    storage::StorageWriter,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{pace::Pace, record};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    state::AppState,
};

/// How much of the upload's start is kept in memory to read the image header. JPEG headers can
/// sit after large EXIF blocks; past this, the header is read back from storage.
const HEAD_KEEP: usize = 256 * 1024;
/// The upload's bytes, from a raw body or the `file` field of a multipart form, read at a
/// minimum pace.
struct Source {
    body: Body,
    pace: Pace,
}

enum Body {
    Raw(axum::body::BodyDataStream),
    Multipart(Box<multer::Field<'static>>),
}

impl Source {
    /// Finds the upload in the request. Multipart fields before `file` are read and discarded,
    /// and count against `limit`: otherwise a huge leading field would be read without bound.
    async fn open(request: Request, limit: u64, mut pace: Pace) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = request.into_body().into_data_stream();
        if !content_type.starts_with("multipart/form-data") {
            return Ok(Self {
                body: Body::Raw(body),
                pace,
            });
        }
        let invalid = |e: multer::Error| ApiError::bad_request("invalid_multipart", e.to_string());
        let boundary = multer::parse_boundary(&content_type).map_err(invalid)?;
        let mut form = multer::Multipart::new(body, boundary);
        let mut skipped = 0u64;
        while let Some(field) = pace.read(form.next_field()).await?.map_err(invalid)? {
            let mut source = Self {
                body: Body::Multipart(Box::new(field)),
                pace,
            };
            if source.field_name() == Some("file") {
                return Ok(source);
            }
            source.skip_field(&mut skipped, limit).await?;
            pace = source.pace;
        }
        Err(ApiError::bad_request(
            "missing_file",
            "the multipart form has no \"file\" field",
        ))
    }

    fn field_name(&self) -> Option<&str> {
        match &self.body {
            Body::Multipart(field) => field.name(),
            Body::Raw(_) => None,
        }
    }

    /// The next chunk of the upload; `None` at its end.
    async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        let chunk = match &mut self.body {
            Body::Raw(stream) => self
                .pace
                .read(stream.next())
                .await?
                .transpose()
                .map_err(|e| e.to_string()),
            Body::Multipart(field) => self
                .pace
                .read(field.chunk())
                .await?
                .map_err(|e| e.to_string()),
        };
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("upload_interrupted", format!("reading the upload: {e}"))
        })?;
        if let Some(chunk) = &chunk {
            self.pace.count(chunk.len())?;
        }
        Ok(chunk)
    }

    /// Reads a multipart field that is not the upload to its end, adding its size to `skipped`.
    async fn skip_field(&mut self, skipped: &mut u64, limit: u64) -> Result<(), ApiError> {
        while let Some(chunk) = self.next().await? {
            *skipped += chunk.len() as u64;
            if *skipped > limit {
                self.drain().await;
                return Err(too_large(limit));
            }
        }
        Ok(())
    }

    /// Reads and discards what the client is still sending (within bounds) so that it gets to
    /// read the error answer: most HTTP clients report a broken pipe instead of a response when
    /// the server stops reading mid-body and closes.
    async fn drain(&mut self) {
        let mut discarded = 0u64;
        let drained = tokio::time::timeout(DRAIN_TIME, async {
            while let Ok(Some(chunk)) = self.next().await {
                discarded += chunk.len() as u64;
                if discarded > DRAIN_BYTES {
                    break;
                }
            }
        });
        drained.await.ok();
    }
}

/// How much of a rejected body is read and discarded before answering.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// How long a rejected body is drained before answering.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Accepts an image upload and enqueues its processing.
#[utoipa::path(post, path = "/v1/media", tag = "media", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The image's or video's bytes (JPEG, PNG, WebP, GIF; MP4, MOV, WebM; judged \
                       by content, whatever the Content-Type), raw or as the `file` field of a \
                       multipart/form-data form"),
    responses(
        (status = 200, description = "A duplicate of a ready media of this tenant: ready at once, sharing its files (`duplicate_of`)", body = super::record::Accepted,
            headers(("Location" = String, description = "/v1/media/{id}"))),
        (status = 202, description = "Accepted: the media is pending and its job queued (or, with `duplicate_of`, waiting for the job of the media whose bytes it repeats)", body = super::record::Accepted,
            headers(("Location" = String, description = "/v1/media/{id}"))),
        (status = 400, description = "`empty_body`, `invalid_multipart`, `missing_file`, `upload_interrupted`", body = crate::openapi::ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 413, description = "`payload_too_large`: over KILN_MAX_UPLOAD_BYTES (an image) or KILN_VIDEO_MAX_UPLOAD_BYTES (a video), or over a whole day's upload_bytes quota", body = crate::openapi::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not JPEG, PNG, WebP, GIF, MP4, MOV or WebM by its bytes, or a video codec or container ffprobe does not find allowed", body = crate::openapi::ErrorBody),
        (status = 422, description = "`too_many_pixels`, `invalid_image`: the header claims more than KILN_MAX_PIXELS, or cannot be read; `invalid_video`, `video_too_long`, `video_too_large`: ffprobe cannot read it, or it is over KILN_VIDEO_MAX_SECONDS or KILN_VIDEO_MAX_SIZE", body = crate::openapi::ErrorBody),
        (status = 503, description = "`video_probe_unavailable`: ffprobe could not be run", body = crate::openapi::ErrorBody),
        (status = 429, description = "`rate_limited`; `too_many_uploads` (in flight, per process or tenant); `quota_exceeded` (uploads or upload_bytes today)", body = crate::openapi::ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require(scope::MEDIA)?;
    // Held until the upload is stored or refused: the caps count what is being received.
    let _slot = state.uploads.acquire(&caller.tenant).await?;
    refuse_if_over_quota(&state, &caller.tenant, declared_length(request.headers())).await?;
    let trace = crate::trace_layer::JobTrace::of(request.extensions()).0;
    // The larger of the two limits until the bytes say which applies.
    let limit = state.config.largest_upload();
    let pace = Pace::new(&state.config.limits);
    if declared_length(request.headers()).is_some_and(|len| len > limit + MULTIPART_SLACK) {
        // Refused from the header alone, but still drained (within bounds) so the client,
        // which is still sending, gets to read the 413 instead of a broken pipe.
        let mut source = Source {
            body: Body::Raw(request.into_body().into_data_stream()),
            pace,
        };
        source.drain().await;
        return Err(too_large(limit));
    }
    let declared = declared_length(request.headers());
    // Form fields before the file are never large: the image limit bounds them.
    let mut source = Source::open(request, state.config.max_upload_bytes, pace).await?;

    let media_id = Uuid::now_v7();
    let original_key = format!("originals/{media_id}");
    let received = match receive(&state, &mut source, &original_key, declared).await {
        Ok(received) => received,
        Err(error) => {
            source.drain().await;
            return Err(error);
        }
    };
    let stored = record::Stored {
        media_id,
        original_key,
        received,
        metadata: serde_json::Value::Object(Default::default()),
    };
    let uploader = record::Uploader {
        tenant: caller.tenant.clone(),
        key_id: caller.key_id,
    };
    record::record(&state, &uploader, stored, trace, None).await
}

/// Refuses an upload before its bytes are read when the tenant's daily quota cannot take it:
/// the count is used up already, or the declared length is more than is left (413 when it is
/// more than a whole day's quota, which no wait would cure). The count itself is taken on
/// commit (see [`take_upload_quota`]).
pub(crate) async fn refuse_if_over_quota(
    state: &AppState,
    tenant: &str,
    declared: Option<u64>,
) -> Result<(), ApiError> {
    let limits = &state.config.limits;
    if limits.uploads_per_day == 0 && limits.upload_bytes_per_day == 0 {
        return Ok(());
    }
    let max_bytes = limits.upload_bytes_per_day;
    let declared = declared.map(|len| len.saturating_sub(MULTIPART_SLACK));
    if max_bytes > 0 && declared.is_some_and(|len| len > max_bytes) {
        return Err(record::over_daily_bytes(max_bytes));
    }
    let Some(today) = db::usage::today(&state.db, tenant).await? else {
        return Ok(());
    };
    let used = |n: i64| u64::try_from(n).unwrap_or(0);
    if limits.uploads_per_day > 0 && used(today.uploads) >= limits.uploads_per_day {
        return Err(crate::limits::quota_exceeded(
            "uploads",
            limits.uploads_per_day,
        ));
    }
    let wanted = used(today.upload_bytes) + declared.unwrap_or(1);
    if max_bytes > 0 && wanted > max_bytes {
        return Err(crate::limits::quota_exceeded("upload_bytes", max_bytes));
    }
    Ok(())
}

/// Room for multipart boundaries and part headers when comparing Content-Length to the limit.
const MULTIPART_SLACK: u64 = 64 * 1024;

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("uploads are limited to {limit} bytes"),
    )
}

/// Streams the upload into storage at `key`. On any rejection the partial object is removed.
async fn receive(
    state: &AppState,
    source: &mut Source,
    key: &str,
    declared: Option<u64>,
) -> Result<record::Received, ApiError> {
    // Read until the magic bytes are in hand: a non-image is refused before storage is touched.
    let mut head = Vec::new();
    while head.len() < media_format::SNIFF_LEN {
        match source.next().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(ApiError::bad_request("empty_body", "the upload is empty"));
    }
    let format = MediaFormat::sniff(&head).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "only JPEG, PNG, WebP and GIF images and MP4, MOV and WebM videos are accepted \
             (judged by content, not name)",
        )
    })?;
    let limit = state.config.upload_limit(format);
    // Now that the type is known, its own limit applies to the declared length too.
    if declared.is_some_and(|len| len > limit + MULTIPART_SLACK) {
        return Err(too_large(limit));
    }
    if head.len() as u64 > limit {
        return Err(too_large(limit));
    }

    let mut writer = state.storage.writer(key).await?;
    match stream_rest(&mut writer, source, head, limit).await {
        Ok((bytes, sha256, head)) => {
            writer.finish().await?;
            Ok(record::Received {
                format,
                bytes,
                sha256,
                head,
            })
        }
        Err(error) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%abort, key, "could not remove a rejected partial upload");
            }
            Err(error)
        }
    }
}

async fn stream_rest(
    writer: &mut StorageWriter,
    source: &mut Source,
    first: Vec<u8>,
    limit: u64,
) -> Result<(u64, String, Vec<u8>), ApiError> {
    let mut hasher = Sha256::new();
    let mut total = first.len() as u64;
    hasher.update(&first);
    writer.write(&first).await?;
    let mut head = first;
    while let Some(chunk) = source.next().await? {
        total += chunk.len() as u64;
        if total > limit {
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
        if head.len() < HEAD_KEEP {
            let take = (HEAD_KEEP - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        writer.write(&chunk).await?;
    }
    Ok((total, hex::encode(hasher.finalize()), head))
}
