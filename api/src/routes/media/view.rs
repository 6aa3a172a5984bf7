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
/// of decoding and re-encoding it (the hot path of `GET /v1/media/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedMedia {
    pub tenant: String,
    pub deleted: bool,
    pub view: Box<RawValue>,
    /// Storage keys by (name, format), so downloads need no database read.
    pub files: Vec<(String, String, String)>,
}

impl CachedMedia {
    fn build(media: db::media::Media, variants: Vec<db::media::Variant>) -> Self {
        let view = MediaView::build(&media, &variants);
        let files = variants
            .into_iter()
            .map(|v| (v.name, v.format, v.storage_key))
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
