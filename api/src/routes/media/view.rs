//! The media resource as the API returns it, and the cached read that builds it.

use chrono::{DateTime, Utc};
use kiln_core::db;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

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

/// What the cache holds for a media: the view plus what authorization and downloads need.
///
/// The view is kept as the JSON the API answers with, so a cached read copies it out instead
/// of decoding and re-encoding it (the hot path of `GET /v1/media/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedMedia {
    pub tenant: String,
    pub deleted: bool,
    pub view: Box<RawValue>,
    /// Storage keys by (name, format), so downloads need no database read.
    pub files: Vec<(String, String, String)>,
}

/// The file extension used in variant URLs for a stored format.
pub fn extension(format: &str) -> &'static str {
    if format == "webp" { "webp" } else { "jpg" }
}

impl CachedMedia {
    fn build(media: db::media::Media, variants: Vec<db::media::Variant>) -> Self {
        let files = variants
            .iter()
            .map(|v| (v.name.clone(), v.format.clone(), v.storage_key.clone()))
            .collect();
        let variants = variants
            .into_iter()
            .map(|v| VariantView {
                url: format!(
                    "/v1/media/{}/variants/{}.{}",
                    media.id,
                    v.name,
                    extension(&v.format)
                ),
                name: v.name,
                format: v.format,
                width: v.width,
                height: v.height,
                bytes: v.bytes,
            })
            .collect();
        let view = MediaView {
            id: media.id,
            status: media.status,
            content_type: media.content_type,
            bytes: media.bytes,
            sha256: media.sha256,
            width: media.width,
            height: media.height,
            error: media.error,
            variants,
            created_at: media.created_at,
            updated_at: media.updated_at,
        };
        Self {
            tenant: media.tenant,
            deleted: view.status == "deleted",
            files,
            view: serde_json::value::to_raw_value(&view).expect("a media view serializes"),
        }
    }
}

/// Reads a media through the cache, enforcing the tenant (another tenant's media is a 404).
pub async fn load(state: &AppState, id: Uuid, tenant: &str) -> Result<CachedMedia, ApiError> {
    let key = state.cache.key("media", id);
    let cached = state
        .cache
        .get_or_load(&key, || async {
            let Some(media) = db::media::find(&state.db, id).await? else {
                return Ok::<_, ApiError>(None);
            };
            let variants = db::media::variants(&state.db, id).await?;
            Ok(Some(CachedMedia::build(media, variants)))
        })
        .await?;
    match cached {
        // A deleted media is gone for its owner too, even while its files still exist.
        Some(media) if media.tenant == tenant && !media.deleted => Ok(media),
        _ => Err(ApiError::not_found("media")),
    }
}
