//! The `media` and `media_variants` tables.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A media row.
#[derive(Debug, Clone)]
pub struct Media {
    pub id: Uuid,
    pub tenant: String,
    pub status: String,
    pub content_type: String,
    pub bytes: i64,
    pub sha256: String,
    pub width: i32,
    pub height: i32,
    pub original_key: String,
    pub error: Option<String>,
    pub job_id: Option<Uuid>,
    /// The key that uploaded it (for notifications); `None` once that key is deleted.
    pub api_key_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One stored rendition of a media.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub format: String,
    pub width: i32,
    pub height: i32,
    pub bytes: i64,
    pub storage_key: String,
}

/// A media to record after its upload was accepted.
#[derive(Debug)]
pub struct NewMedia<'a> {
    pub id: Uuid,
    pub tenant: &'a str,
    pub content_type: &'a str,
    pub bytes: i64,
    pub sha256: &'a str,
    pub width: i32,
    pub height: i32,
    pub original_key: &'a str,
    pub job_id: Uuid,
    pub api_key_id: Uuid,
}

/// Records an accepted upload; call it in the transaction that also inserts its job.
pub async fn insert(db: impl PgExecutor<'_>, media: &NewMedia<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO media (id, tenant, content_type, bytes, sha256, width, height, original_key,
                            job_id, api_key_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        media.id,
        media.tenant,
        media.content_type,
        media.bytes,
        media.sha256,
        media.width,
        media.height,
        media.original_key,
        media.job_id,
        media.api_key_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A media by id.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Media>, sqlx::Error> {
    sqlx::query_as!(
        Media,
        "SELECT id, tenant, status, content_type, bytes, sha256, width, height, original_key,
                error, job_id, api_key_id, created_at, updated_at
         FROM media WHERE id = $1",
        id,
    )
    .fetch_optional(db)
    .await
}

/// The variants of a media, largest first.
pub async fn variants(
    db: impl PgExecutor<'_>,
    media_id: Uuid,
) -> Result<Vec<Variant>, sqlx::Error> {
    sqlx::query_as!(
        Variant,
        "SELECT name, format, width, height, bytes, storage_key FROM media_variants
         WHERE media_id = $1 ORDER BY width DESC, name, format",
        media_id,
    )
    .fetch_all(db)
    .await
}

/// One variant by name and format.
pub async fn variant(
    db: impl PgExecutor<'_>,
    media_id: Uuid,
    name: &str,
    format: &str,
) -> Result<Option<Variant>, sqlx::Error> {
    sqlx::query_as!(
        Variant,
        "SELECT name, format, width, height, bytes, storage_key FROM media_variants
         WHERE media_id = $1 AND name = $2 AND format = $3",
        media_id,
        name,
        format,
    )
    .fetch_optional(db)
    .await
}

/// Marks a media as being processed (a worker picked up its job).
pub async fn mark_processing(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE media SET status = 'processing', error = NULL, updated_at = now()
         WHERE id = $1 AND status NOT IN ('ready', 'deleted')",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records or replaces a variant; replacing keeps a re-run from duplicating rows.
pub async fn upsert_variant(
    db: impl PgExecutor<'_>,
    media_id: Uuid,
    variant: &Variant,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO media_variants (media_id, name, format, width, height, bytes, storage_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (media_id, name, format) DO UPDATE
         SET width = EXCLUDED.width, height = EXCLUDED.height, bytes = EXCLUDED.bytes,
             storage_key = EXCLUDED.storage_key, created_at = now()",
        media_id,
        variant.name,
        variant.format,
        variant.width,
        variant.height,
        variant.bytes,
        variant.storage_key,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a media ready, with its upright dimensions (EXIF rotation may swap them).
pub async fn mark_ready(
    db: impl PgExecutor<'_>,
    id: Uuid,
    width: i32,
    height: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE media SET status = 'ready', width = $2, height = $3, error = NULL,
                          updated_at = now()
         WHERE id = $1 AND status <> 'deleted'",
        id,
        width,
        height,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a media failed with the reason (the decoder's, for a corrupt file).
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE media SET status = 'failed', error = $2, updated_at = now()
         WHERE id = $1 AND status <> 'deleted'",
        id,
        &*super::jobs::storable(error),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Puts the media of a revived job back to `pending`; returns its id, if the job has one.
pub async fn mark_pending_for_job(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE media SET status = 'pending', error = NULL, updated_at = now()
         WHERE job_id = $1 AND status <> 'deleted'
         RETURNING id",
        job_id,
    )
    .fetch_optional(db)
    .await
}

/// Marks a media of `tenant` deleted; returns whether it was (a media already deleted, or
/// another tenant's, is not found). Its files are removed by a `cleanup` job.
pub async fn mark_deleted(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE media SET status = 'deleted', deleted_at = now(), updated_at = now()
         WHERE id = $1 AND tenant = $2 AND status <> 'deleted'",
        id,
        tenant,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A deleted media whose files are still to be removed.
#[derive(Debug, Clone)]
pub struct Unpurged {
    pub id: Uuid,
    pub original_key: String,
}

/// Deleted media whose files are not removed yet, oldest deletion first; with `only`, just that
/// one.
pub async fn unpurged(
    db: impl PgExecutor<'_>,
    only: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Unpurged>, sqlx::Error> {
    sqlx::query_as!(
        Unpurged,
        "SELECT id, original_key FROM media
         WHERE status = 'deleted' AND purged_at IS NULL AND ($1::uuid IS NULL OR id = $1)
         ORDER BY deleted_at
         LIMIT $2",
        only,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Records that a deleted media's files are gone, and drops its variant rows.
pub async fn mark_purged(db: &sqlx::PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query!("DELETE FROM media_variants WHERE media_id = $1", id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("UPDATE media SET purged_at = now() WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Of `ids`, those whose files are still wanted: media that exist and are not purged.
pub async fn with_live_files(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM media WHERE id = ANY($1) AND purged_at IS NULL",
        ids,
    )
    .fetch_all(db)
    .await
}
