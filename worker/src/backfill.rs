//! One-off backfills of what newer versions store with every media: run by each worker at
//! start-up, idempotent (two workers doing the same row write the same value), and over once
//! nothing is left: the SHA-256 (ETag) of variants made before ETags existed, and the
//! placeholder of media ready before placeholders existed.

use std::time::Duration;

use kiln_core::{db, image_probe::ImageFormat, storage::StorageError};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Context;

/// Rows read per round.
const BATCH: i64 = 100;

/// Runs every backfill until done or cancelled; failures are logged and retried a minute later.
pub async fn run(ctx: Context, cancel: CancellationToken) {
    loop {
        let done = tokio::select! {
            () = cancel.cancelled() => return,
            result = async {
                let hashed = hash_variants(&ctx).await?;
                let placed = placeholders(&ctx).await?;
                anyhow::Ok((hashed, placed))
            } => result,
        };
        match done {
            Ok((hashed, placeholders)) => {
                if hashed + placeholders > 0 {
                    tracing::info!(hashed, placeholders, "media backfilled");
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "media backfill failed; trying again in a minute");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        }
    }
}

/// Hashes every variant of a live media that has no SHA-256 yet; returns how many it hashed.
/// A file that cannot be found is skipped (its media is being deleted, or it is lost, which
/// the download reports); a storage error ends the pass to be retried.
async fn hash_variants(ctx: &Context) -> anyhow::Result<u64> {
    let mut after = db::media::Unhashed {
        media_id: Uuid::nil(),
        name: String::new(),
        format: String::new(),
        storage_key: String::new(),
    };
    let mut hashed = 0;
    loop {
        let batch = db::media::unhashed_after(&ctx.db, &after, BATCH).await?;
        let Some(last) = batch.last().cloned() else {
            return Ok(hashed);
        };
        for variant in &batch {
            let bytes = match ctx.storage.get(&variant.storage_key).await {
                Ok(bytes) => bytes,
                Err(StorageError::NotFound(key)) => {
                    tracing::warn!(key, "a variant's file is missing; not hashed");
                    continue;
                }
                Err(other) => return Err(other.into()),
            };
            let sha256 = hex::encode(Sha256::digest(&bytes));
            db::media::set_variant_sha256(&ctx.db, variant, &sha256).await?;
            ctx.cache
                .invalidate(&ctx.cache.key("media", variant.media_id))
                .await;
            hashed += 1;
        }
        after = last;
    }
}

/// Computes the placeholder of every ready media that has none, from its smallest JPEG
/// variant; returns how many it computed. An unreadable or missing file is skipped.
async fn placeholders(ctx: &Context) -> anyhow::Result<u64> {
    let mut after = Uuid::nil();
    let mut computed = 0;
    loop {
        let batch = db::media::without_placeholder_after(&ctx.db, after, BATCH).await?;
        let Some(last) = batch.last().map(|m| m.id) else {
            return Ok(computed);
        };
        for media in batch {
            let bytes = match ctx.storage.get(&media.storage_key).await {
                Ok(bytes) => bytes,
                Err(StorageError::NotFound(key)) => {
                    tracing::warn!(key, "a variant's file is missing; no placeholder");
                    continue;
                }
                Err(other) => return Err(other.into()),
            };
            let made = ctx
                .cpu
                .run_within(Duration::from_secs(60), move || {
                    crate::imaging::placeholder_of(&bytes, ImageFormat::Jpeg)
                })
                .await;
            let placeholder = match made {
                Ok(Ok(placeholder)) => placeholder,
                Ok(Err(error)) => {
                    tracing::warn!(media.id = %media.id, %error, "no placeholder");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(media.id = %media.id, ?error, "no placeholder");
                    continue;
                }
            };
            db::media::set_placeholder(&ctx.db, media.id, &serde_json::to_value(&placeholder)?)
                .await?;
            ctx.cache
                .invalidate(&ctx.cache.key("media", media.id))
                .await;
            computed += 1;
        }
        after = last;
    }
}
