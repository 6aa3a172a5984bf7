//! Resources as clients see them, built in one place for the API's answers and the webhook
//! events the workers send (`media.ready` carries what `GET /v1/media/{id}` answers, with the
//! variant URLs as unsigned paths: the API signs them per answer).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::media::{Media, Variant};

/// `GET /v1/media/{id}`'s body (DESIGN.md "Interfaces").
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaView {
    pub id: Uuid,
    pub status: String,
    pub content_type: String,
    pub bytes: i64,
    pub sha256: String,
    pub width: i32,
    pub height: i32,
    pub error: Option<String>,
    /// The app's metadata (`PATCH /v1/media/{id}`): string values by key.
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub metadata: serde_json::Value,
    /// What to show while a variant loads, once ready: `{thumbhash, blurhash,
    /// dominant_color}` (ThumbHash in base64, BlurHash, `#rrggbb`).
    #[schema(value_type = Option<Object>)]
    pub placeholder: Option<serde_json::Value>,
    /// A video's `{duration_seconds, bit_rate, codec, has_audio, rotation, hdr}`, as ffprobe
    /// found them at upload; `null` for an image.
    #[schema(value_type = Option<Object>)]
    pub video: Option<serde_json::Value>,
    /// How far a video's transcode is (0 to 1) while it is `processing`; `null` otherwise.
    pub progress: Option<f32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Keep `variants` and `variant_urls` the last fields: the API signs the URLs in the
    /// serialized view by finding them after the last `"variants":` key.
    pub variants: Vec<VariantView>,
    /// One URL per variant name that picks the best format the client accepts (`Accept`).
    #[serde(default)]
    pub variant_urls: BTreeMap<String, String>,
}

/// One downloadable variant.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VariantView {
    pub name: String,
    pub format: String,
    pub width: i32,
    pub height: i32,
    pub bytes: i64,
    pub url: String,
}

/// The file extension used in variant URLs for a stored format.
pub fn extension(format: &str) -> &'static str {
    match format {
        "webp" => "webp",
        "avif" => "avif",
        "mp4" => "mp4",
        _ => "jpg",
    }
}

/// The API path of a variant file (`file` is `<name>.<extension>`, or just `<name>` for the
/// negotiated one): what a signed URL's signature covers.
pub fn variant_path(media_id: Uuid, file: &str) -> String {
    format!("/v1/media/{media_id}/variants/{file}")
}

impl MediaView {
    /// The resource of `media` with its stored `variants`.
    pub fn build(media: &Media, stored: &[Variant]) -> Self {
        // Negotiated URLs pick among image formats; a video's renditions have one format each.
        let variant_urls = stored
            .iter()
            .filter(|v| v.format != "mp4")
            .map(|v| (v.name.clone(), variant_path(media.id, &v.name)))
            .collect();
        let variants = stored
            .iter()
            .map(|v| VariantView {
                url: variant_path(media.id, &format!("{}.{}", v.name, extension(&v.format))),
                name: v.name.clone(),
                format: v.format.clone(),
                width: v.width,
                height: v.height,
                bytes: v.bytes,
            })
            .collect();
        Self {
            id: media.id,
            status: media.status.clone(),
            content_type: media.content_type.clone(),
            bytes: media.bytes,
            sha256: media.sha256.clone(),
            width: media.width,
            height: media.height,
            error: media.error.clone(),
            metadata: media.metadata.clone(),
            placeholder: media.placeholder.clone(),
            video: media.video.clone(),
            progress: media.progress,
            variants,
            variant_urls,
            created_at: media.created_at,
            updated_at: media.updated_at,
        }
    }
}
