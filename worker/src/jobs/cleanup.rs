//! The `cleanup` job: removes files nobody will read again.
//!
//! - With `{"media_id": …}` (enqueued by `DELETE /v1/media/{id}`): that media's cache entry
//!   (again, in case the deletion could not remove it) and its original and variants.
//! - Without (the hourly schedule): every deleted media not purged yet; originals and variants
//!   whose media no longer exists (an upload recorded in storage but never in Postgres, or
//!   variants written by a job that raced a delete); and staging files of streamed uploads that
//!   a crash interrupted; and resumable uploads past their expiry, with their chunks.
//!
//! Files younger than `KILN_CLEANUP_GRACE_SECS` are never touched by the sweep: an upload writes
//! its original a moment before it commits the row that makes it live.

use std::collections::HashMap;

use futures::TryStreamExt;
use kiln_core::db::{self, jobs::Job};
use serde::Deserialize;
use uuid::Uuid;

use super::{Classify, JobError};
use crate::Context;

/// Rows per purge query and object ids per liveness query.
const BATCH: usize = 500;

#[derive(Debug, Default, Deserialize)]
struct CleanupPayload {
    media_id: Option<Uuid>,
}

/// What one run removed, for the log and metrics.
#[derive(Debug, Default)]
struct Removed {
    purged_media: u64,
    orphan_files: u64,
    staging_files: u64,
    expired_uploads: u64,
}

/// Runs one cleanup and records the job's success.
pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    let payload: CleanupPayload = serde_json::from_value(job.payload.clone()).abort()?;
    if let Some(media_id) = payload.media_id {
        // The deletion's own invalidation may have failed (Redis unreachable for a moment),
        // which would let reads serve the media from the cache until its TTL. This job was
        // committed with the deletion, so it is the outbox for that invalidation: it retries
        // until Redis takes it.
        ctx.cache
            .try_invalidate(&ctx.cache.key("media", media_id))
            .await
            .retry()?;
    }
    let mut removed = Removed {
        purged_media: purge_deleted(ctx, payload.media_id).await?,
        ..Removed::default()
    };
    if payload.media_id.is_none() {
        removed.orphan_files =
            remove_orphans(ctx, "originals/").await? + remove_orphans(ctx, "variants/").await?;
        removed.staging_files = ctx
            .storage
            .remove_stale_staging_files(ctx.config.cleanup_grace)
            .await
            .retry()?;
        removed.expired_uploads = remove_expired_uploads(ctx).await?;
        removed.orphan_files += remove_orphan_chunks(ctx).await?;
    }
    for (what, count) in [
        ("media", removed.purged_media),
        ("orphan_file", removed.orphan_files),
        ("staging_file", removed.staging_files),
        ("expired_upload", removed.expired_uploads),
    ] {
        metrics::counter!("kiln_cleanup_removed_total", "what" => what).increment(count);
    }
    tracing::info!(
        purged_media = removed.purged_media,
        orphan_files = removed.orphan_files,
        staging_files = removed.staging_files,
        expired_uploads = removed.expired_uploads,
        "cleanup done"
    );
    ctx.writes
        .mark_succeeded(job.id, job.attempts)
        .await
        .retry()?;
    Ok(())
}

/// Removes the files of deleted media (one, or all pending), then marks them purged. Deleting
/// is idempotent, so a crash half-way is finished by the next attempt.
async fn purge_deleted(ctx: &Context, only: Option<Uuid>) -> Result<u64, JobError> {
    let mut purged = 0;
    loop {
        let batch = db::media::unpurged(&ctx.db, only, BATCH as i64)
            .await
            .retry()?;
        for media in &batch {
            purge_one(ctx, media).await.retry()?;
            purged += 1;
        }
        if batch.len() < BATCH {
            return Ok(purged);
        }
    }
}

/// Removes a deleted media's files, unless another live media shares them (a duplicate
/// upload of the same bytes, or the owner of files this one shared), and marks it purged.
/// The decision is taken under the content lock and committed first; the files go after,
/// outside it: once no live media uses them, no upload can start sharing them (it only shares
/// with live media). Files a crash leaves behind belong to no live media, and the sweep of
/// orphans removes them.
async fn purge_one(ctx: &Context, media: &db::media::Unpurged) -> anyhow::Result<()> {
    let owner = media.content_of.unwrap_or(media.id);
    let mut tx = ctx.db.begin().await?;
    db::media::lock_content(&mut tx, &media.tenant, &media.sha256).await?;
    let shared = db::media::content_in_use(&mut *tx, owner).await?;
    db::media::mark_purged(&mut tx, media.id).await?;
    tx.commit().await?;
    if shared {
        tracing::info!(media.id = %media.id, owner = %owner, "files kept: another media shares them");
        return Ok(());
    }
    ctx.storage.delete(&media.original_key).await?;
    let variants: Vec<String> = ctx
        .storage
        .list(&format!("variants/{owner}/"))
        .map_ok(|object| object.key)
        .try_collect()
        .await?;
    for key in &variants {
        ctx.storage.delete(key).await?;
    }
    Ok(())
}

/// Removes resumable uploads past their expiry (their chunks, then their rows) and the upload
/// tokens whose uploads can no longer be resumed either.
async fn remove_expired_uploads(ctx: &Context) -> Result<u64, JobError> {
    let mut removed = 0;
    loop {
        let batch = db::tus::expired(&ctx.db, BATCH as i64).await.retry()?;
        for upload in &batch {
            for chunk in &upload.chunks {
                ctx.storage.delete(chunk).await.retry()?;
            }
            db::tus::delete(&ctx.db, upload.id).await.retry()?;
            removed += 1;
        }
        if batch.len() < BATCH {
            break;
        }
    }
    let grace = ctx.config.browser_uploads.tus_expire;
    db::tus::delete_expired_tokens(&ctx.db, grace)
        .await
        .retry()?;
    Ok(removed)
}

/// Removes upload chunks (`tus/<upload>/<offset>-<n>`) older than the grace period that no
/// upload lists: their upload is gone, or the request that wrote one died before recording it.
async fn remove_orphan_chunks(ctx: &Context) -> Result<u64, JobError> {
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(ctx.config.cleanup_grace).unwrap_or_default();
    let mut listing = ctx.storage.list("tus/");
    let mut candidates: HashMap<Uuid, Vec<String>> = HashMap::new();
    let mut removed = 0;
    while let Some(object) = listing.try_next().await.retry()? {
        if object.last_modified > cutoff {
            continue;
        }
        let Some(id) = media_id_of(&object.key, "tus/") else {
            continue;
        };
        candidates.entry(id).or_default().push(object.key);
        if candidates.len() >= BATCH {
            removed += remove_unlisted_chunks(ctx, std::mem::take(&mut candidates)).await?;
        }
    }
    removed += remove_unlisted_chunks(ctx, candidates).await?;
    Ok(removed)
}

async fn remove_unlisted_chunks(
    ctx: &Context,
    candidates: HashMap<Uuid, Vec<String>>,
) -> Result<u64, JobError> {
    if candidates.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = candidates.keys().copied().collect();
    let listed: HashMap<Uuid, Vec<String>> = db::tus::chunks_of(&ctx.db, &ids)
        .await
        .retry()?
        .into_iter()
        .collect();
    let mut removed = 0;
    for (id, keys) in candidates {
        for key in keys {
            if listed.get(&id).is_some_and(|chunks| chunks.contains(&key)) {
                continue;
            }
            ctx.storage.delete(&key).await.retry()?;
            tracing::info!(key, "orphaned upload chunk removed");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes objects under `prefix` (`originals/<id>` or `variants/<id>/…`) older than the grace
/// period whose media id has no live row.
async fn remove_orphans(ctx: &Context, prefix: &str) -> Result<u64, JobError> {
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(ctx.config.cleanup_grace).unwrap_or_default();
    let mut listing = ctx.storage.list(prefix);
    let mut candidates: HashMap<Uuid, Vec<String>> = HashMap::new();
    let mut removed = 0;
    while let Some(object) = listing.try_next().await.retry()? {
        if object.last_modified > cutoff {
            continue;
        }
        let Some(id) = media_id_of(&object.key, prefix) else {
            // Not a name Kiln writes; leave foreign files alone.
            continue;
        };
        candidates.entry(id).or_default().push(object.key);
        if candidates.len() >= BATCH {
            removed += remove_dead_ids(ctx, std::mem::take(&mut candidates)).await?;
        }
    }
    removed += remove_dead_ids(ctx, candidates).await?;
    Ok(removed)
}

async fn remove_dead_ids(
    ctx: &Context,
    mut candidates: HashMap<Uuid, Vec<String>>,
) -> Result<u64, JobError> {
    if candidates.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = candidates.keys().copied().collect();
    for live in db::media::with_live_files(&ctx.db, &ids).await.retry()? {
        candidates.remove(&live);
    }
    let mut removed = 0;
    for key in candidates.into_values().flatten() {
        ctx.storage.delete(&key).await.retry()?;
        tracing::info!(key, "orphaned file removed");
        removed += 1;
    }
    Ok(removed)
}

/// The id in `originals/<id>`, `variants/<id>/<file>` or `tus/<id>/<chunk>`.
fn media_id_of(key: &str, prefix: &str) -> Option<Uuid> {
    let rest = key.strip_prefix(prefix)?;
    rest.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_come_from_kiln_names_only() {
        let id = Uuid::now_v7();
        assert_eq!(
            media_id_of(&format!("originals/{id}"), "originals/"),
            Some(id)
        );
        assert_eq!(
            media_id_of(&format!("variants/{id}/w320.jpg"), "variants/"),
            Some(id)
        );
        assert_eq!(media_id_of("originals/readme.txt", "originals/"), None);
    }
}
