//! Finishing a tus upload: its chunks become one original, which is recorded exactly as a
//! `POST /v1/media` upload is (header check, quota, dedupe, media and job in one transaction).
//! Idempotent: one finisher at a time (a lock), the media's id written to the upload's row
//! before its original is assembled, and the row marked finished in the recording
//! transaction, so a retried or concurrent finish records it once.

use axum::http::StatusCode;
use futures::TryStreamExt;
use kiln_core::{
    db::{self, tus::TusUpload},
    media_format::MediaFormat,
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

/// Records the finished upload as a media; returns its id. One request finishes an upload at
/// a time (a session lock on a connection of its own, closed afterwards, so the lock dies
/// with it whatever happens); another gets 423 `upload_finishing`. A refusal that no retry can
/// cure (not an image, too many pixels, too large) removes the upload.
pub async fn finish(
    state: &AppState,
    upload: &TusUpload,
    trace: Option<String>,
) -> Result<Uuid, ApiError> {
    if upload.finished_at.is_some() {
        return Ok(upload.media_id);
    }
    let mut lock = state.db.acquire().await?.detach();
    if !db::tus::try_lock_finishing(&mut lock, upload.id).await? {
        // 423, as tus servers answer a locked upload: tus clients retry it (a 409 from HEAD
        // makes tus-js-client start the whole upload again).
        return Err(ApiError::new(
            StatusCode::LOCKED,
            "upload_finishing",
            "another request is recording this upload; ask HEAD again in a moment",
        ));
    }
    let finished = finish_locked(state, upload.id, trace).await;
    if let Err(error) = sqlx::Connection::close(lock).await {
        tracing::debug!(%error, "closing an upload's lock connection");
    }
    finished
}

/// [`finish`], holding the upload's finishing lock.
async fn finish_locked(
    state: &AppState,
    id: Uuid,
    trace: Option<String>,
) -> Result<Uuid, ApiError> {
    // Read again under the lock: a finisher before this one may have recorded it.
    let upload = db::tus::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))?;
    if upload.finished_at.is_some() {
        return Ok(upload.media_id);
    }
    // Named now, not at creation: media ids order lists by creation, and this media is
    // created now. (An earlier attempt that died before committing leaves an original no
    // media names; the sweep of orphans removes it.)
    let mut upload = upload;
    upload.media_id = Uuid::now_v7();
    if !db::tus::set_media_id(&state.db, upload.id, upload.media_id).await? {
        // Finished (by a finisher whose commit landed after this one read the row) or gone.
        return match db::tus::find(&state.db, id).await? {
            Some(upload) if upload.finished_at.is_some() => Ok(upload.media_id),
            _ => Err(ApiError::not_found("upload")),
        };
    }
    let original_key = format!("originals/{}", upload.media_id);
    let received = match assemble(state, &upload, &original_key).await {
        Ok(received) => received,
        Err(error) => {
            if is_final(&error) {
                state.storage.delete(&original_key).await.ok();
                discard(state, upload.id).await;
            }
            return Err(error);
        }
    };
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
        Err(error) => {
            if is_final(&error) {
                discard(state, upload.id).await;
            }
            Err(error)
        }
    }
}

/// Whether a refusal is about the bytes themselves, which no retry changes (a quota or an
/// outage is not: the upload stays, to be finished later).
fn is_final(error: &ApiError) -> bool {
    matches!(error.status().as_u16(), 413 | 415 | 422)
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
        .and_then(MediaFormat::from_content_type)
        .or_else(|| MediaFormat::sniff(&head))
        .filter(|format| super::tus::allowed(upload, format.content_type()))
        .ok_or_else(super::tus::not_an_image)?;
    // Held to its own type's limit here too: a first PATCH too short to sniff is stored
    // unjudged, and a creation may announce up to the larger of the two limits.
    super::tus::within_type_limit(state, format, total)?;
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
