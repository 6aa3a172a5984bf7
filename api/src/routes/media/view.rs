//! The media resource as the API returns it, and the cached read that builds it.

use kiln_core::db;
pub use kiln_core::views::{MediaView, VariantView, extension};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

/// What the cache holds for a media: the view plus what authorization and downloads need.
///
/// The view is kept as the JSON the API answers with, so a cached read copies it out instead
/// of decoding and re-encoding it (the hot path of `GET /v1/media/{id}`). Its variant URLs are
/// unsigned paths: each answer signs them as it goes out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedMedia {
    pub tenant: String,
    pub deleted: bool,
    pub view: Box<RawValue>,
    /// The stored files, so downloads need no database read.
    pub files: Vec<StoredFile>,
}

/// One variant file as a download needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFile {
    pub name: String,
    pub format: String,
    pub key: String,
    pub bytes: u64,
    /// Its strong ETag (hex SHA-256); `None` for an old file the backfill has not reached.
    pub sha256: Option<String>,
}

impl CachedMedia {
    fn build(media: db::media::Media, variants: Vec<db::media::Variant>) -> Self {
        let view = MediaView::build(&media, &variants);
        let files = variants
            .into_iter()
            .map(|v| StoredFile {
                name: v.name,
                format: v.format,
                key: v.storage_key,
                bytes: u64::try_from(v.bytes).unwrap_or(0),
                sha256: v.sha256,
            })
            .collect();
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
    match load_any(state, id).await? {
        Some(media) if media.tenant == tenant => Ok(media),
        _ => Err(ApiError::not_found("media")),
    }
}

/// Reads a media of any tenant through the cache (for a signed URL, whose signature is the
/// authorization); a deleted media is `None`, even while its files still exist.
pub async fn load_any(state: &AppState, id: Uuid) -> Result<Option<CachedMedia>, ApiError> {
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
    Ok(cached.filter(|media| !media.deleted))
}
