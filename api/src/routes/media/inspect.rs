//! What a stored upload holds, checked before any job exists: an image's dimensions from its
//! header (a decompression bomb stops here), a video's streams and length from `ffprobe`.

use axum::http::StatusCode;
use kiln_core::{
    image_probe::{self, ImageFormat},
    media_format::MediaFormat,
    video_probe::{self, Container, VideoError, VideoInfo},
};

use super::record::Received;
use crate::{error::ApiError, state::AppState};

/// How far into the stored file a header may be looked for.
const HEADER_SEARCH: u64 = 16 * 1024 * 1024;

/// What was found.
#[derive(Debug)]
pub struct Inspected {
    /// Upright.
    pub width: u32,
    pub height: u32,
    pub video: Option<VideoInfo>,
}

/// Inspects the upload stored at `key`.
pub async fn inspect(
    state: &AppState,
    received: &Received,
    key: &str,
) -> Result<Inspected, ApiError> {
    match received.format {
        MediaFormat::Image(format) => {
            let (width, height) = image_dimensions(state, format, received, key).await?;
            Ok(Inspected {
                width,
                height,
                video: None,
            })
        }
        MediaFormat::Video(container) => {
            let info = video(state, container, key).await?;
            Ok(Inspected {
                width: info.width,
                height: info.height,
                video: Some(info),
            })
        }
    }
}

/// Runs ffprobe on the stored file (a local copy with S3) within the video limits.
async fn video(state: &AppState, container: Container, key: &str) -> Result<VideoInfo, ApiError> {
    let config = &state.config.video;
    let file = state.storage.local_file(key).await?;
    video_probe::probe(&config.ffprobe, file.path(), container, config.limits)
        .await
        .map_err(|error| match error {
            VideoError::Unsupported(reason) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                reason,
            ),
            VideoError::Invalid(reason) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_video", reason)
            }
            VideoError::TooLong(reason) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "video_too_long", reason)
            }
            VideoError::TooLarge(reason) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "video_too_large", reason)
            }
            VideoError::Probe(reason) => {
                tracing::error!(reason, "ffprobe failed: is KILN_FFPROBE right?");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "video_probe_unavailable",
                    "videos cannot be checked right now; try again later",
                )
            }
        })
}

/// Reads the dimensions from the header and refuses images with too many pixels, before any
/// decode: a 50 KB decompression bomb that claims 100k×100k pixels stops here.
async fn image_dimensions(
    state: &AppState,
    format: ImageFormat,
    received: &Received,
    key: &str,
) -> Result<(u32, u32), ApiError> {
    let mut dimensions = image_probe::dimensions(format, &received.head);
    if dimensions.is_none() && received.bytes > received.head.len() as u64 {
        let more = state.storage.get_range(key, 0..HEADER_SEARCH).await?;
        dimensions = image_probe::dimensions(format, &more);
    }
    let (width, height) = dimensions.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_image",
            format!("the {} header could not be read", format.content_type()),
        )
    })?;
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 || pixels > state.config.max_pixels {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_pixels",
            format!(
                "{width}x{height} is {pixels} pixels; the limit is {}",
                state.config.max_pixels
            ),
        ));
    }
    Ok((width, height))
}
