//! Finishing a tus upload: its chunks become one original, which is recorded exactly as a
//! `POST /v1/media` upload is (header check, quota, dedupe, media and job in one transaction).
//! Idempotent: the media's id was chosen at creation and the upload's row is marked finished
//! in the recording transaction, so a retried or concurrent finish records it once.

use futures::TryStreamExt;
use kiln_core::{
    db::{self, tus::TusUpload},
    image_probe::{self, ImageFormat},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    error::ApiError,
    routes::media::record::{self, Received, Stored, Uploader},
    state::AppState,
};

/// How much of the start is kept for the header check.
const HEAD_KEEP: usize = 256 * 1024;

/// Records the finished upload as a media; returns its id. A refusal (not an image, too many
/// pixels, over the quota) removes the upload: its bytes can never become a media.
pub async fn finish(
    state: &AppState,
    upload: &TusUpload,
    trace: Option<String>,
) -> Result<Uuid, ApiError> {
    if upload.finished_at.is_some() {
        return Ok(upload.media_id);
    }
    let original_key = format!("originals/{}", upload.media_id);
    let received = assemble(state, upload, &original_key).await?;
    let uploader = Uploader {
        tenant: upload.tenant.clone(),
        key_id: upload.api_key_id,
    };
    let stored = Stored {
        media_id: upload.media_id,
        original_key,
        received,
        metadata: upload.metadata.clone(),
    };
    match record::record(state, &uploader, stored, trace, Some(upload.id)).await {
        Ok(_) => {
            remove_chunks(state, &upload.chunks).await;
            tracing::info!(upload.id = %upload.id, media.id = %upload.media_id, "resumable upload finished");
            Ok(upload.media_id)
        }
        // Another request finished it first.
        Err(error) if error.code() == "upload_finished" => Ok(upload.media_id),
        Err(error) if error.status().is_client_error() => {
            discard(state, upload.id).await;
            Err(error)
        }
        Err(error) => Err(error),
    }
}

/// Streams the chunks, in order, into `key`, hashing and counting them.
async fn assemble(state: &AppState, upload: &TusUpload, key: &str) -> Result<Received, ApiError> {
    let mut writer = state.storage.writer(key).await?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut total = 0u64;
    let copied = async {
        for chunk in &upload.chunks {
            let (_, mut stream) = state.storage.get_stream(chunk).await?;
            while let Some(bytes) = stream.try_next().await? {
                hasher.update(&bytes);
                total += bytes.len() as u64;
                if head.len() < HEAD_KEEP {
                    let take = (HEAD_KEEP - head.len()).min(bytes.len());
                    head.extend_from_slice(&bytes[..take]);
                }
                writer.write(&bytes).await?;
            }
        }
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(error) = copied {
        writer.abort().await.ok();
        return Err(error);
    }
    writer.finish().await?;
    let format = upload
        .content_type
        .as_deref()
        .and_then(ImageFormat::from_content_type)
        .or_else(|| image_probe::sniff(&head))
        .ok_or_else(super::tus::not_an_image)?;
    Ok(Received {
        format,
        bytes: total,
        sha256: hex::encode(hasher.finalize()),
        head,
    })
}

/// Removes an upload that can never become a media: its row and its bytes.
pub async fn discard(state: &AppState, id: Uuid) {
    match db::tus::delete(&state.db, id).await {
        Ok(chunks) => remove_chunks(state, &chunks).await,
        Err(error) => tracing::warn!(upload.id = %id, %error, "could not discard an upload"),
    }
}

/// Removes chunk files; one left behind is removed when its upload expires.
pub async fn remove_chunks(state: &AppState, chunks: &[String]) {
    for chunk in chunks {
        if let Err(error) = state.storage.delete(chunk).await {
            tracing::warn!(key = chunk, %error, "could not remove an upload chunk");
        }
    }
}
