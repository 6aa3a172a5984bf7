//! Resources as clients see them, built in one place for the API's answers and the webhook
//! events the workers send (`media.ready` carries exactly what `GET /v1/media/{id}` answers).

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
    pub variants: Vec<VariantView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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
    if format == "webp" { "webp" } else { "jpg" }
}

impl MediaView {
    /// The resource of `media` with its stored `variants`.
    pub fn build(media: &Media, variants: &[Variant]) -> Self {
        let variants = variants
            .iter()
            .map(|v| VariantView {
                url: format!(
                    "/v1/media/{}/variants/{}.{}",
                    media.id,
                    v.name,
                    extension(&v.format)
                ),
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
            variants,
            created_at: media.created_at,
            updated_at: media.updated_at,
        }
    }
}
