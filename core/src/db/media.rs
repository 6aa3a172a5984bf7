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
    /// The app's metadata: an object of strings.
    pub metadata: serde_json::Value,
    /// `{thumbhash, blurhash, dominant_color}` once ready.
    pub placeholder: Option<serde_json::Value>,
    /// What ffprobe found in a video (`VideoFacts`); `None` for images.
    pub video: Option<serde_json::Value>,
    /// A transcode's fraction done, while it runs.
    pub progress: Option<f32>,
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
    /// The SHA-256 of the file (hex), its ETag; `None` until the backfill hashed an old one.
    pub sha256: Option<String>,
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
    /// The app's metadata (an upload token's), an object of strings.
    pub metadata: &'a serde_json::Value,
    /// What ffprobe found, for a video.
    pub video: Option<&'a serde_json::Value>,
}

/// Records an accepted upload; call it in the transaction that also inserts its job.
pub async fn insert(db: impl PgExecutor<'_>, media: &NewMedia<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO media (id, tenant, content_type, bytes, sha256, width, height, original_key,
                            job_id, api_key_id, metadata, video)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        media.metadata,
        media.video,
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
                error, job_id, api_key_id, metadata, placeholder, video, progress,
                created_at, updated_at
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
        "SELECT name, format, width, height, bytes, storage_key, sha256 FROM media_variants
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
        "SELECT name, format, width, height, bytes, storage_key, sha256 FROM media_variants
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
        "INSERT INTO media_variants (media_id, name, format, width, height, bytes, storage_key,
                                     sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (media_id, name, format) DO UPDATE
         SET width = EXCLUDED.width, height = EXCLUDED.height, bytes = EXCLUDED.bytes,
             storage_key = EXCLUDED.storage_key, sha256 = EXCLUDED.sha256, created_at = now()",
        media_id,
        variant.name,
        variant.format,
        variant.width,
        variant.height,
        variant.bytes,
        variant.storage_key,
        variant.sha256,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a media ready, with its upright dimensions (EXIF rotation may swap them) and its
/// placeholder; `false` if it was deleted meanwhile.
pub async fn mark_ready(
    db: impl PgExecutor<'_>,
    id: Uuid,
    width: i32,
    height: i32,
    placeholder: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        "UPDATE media SET status = 'ready', width = $2, height = $3, placeholder = $4,
                          error = NULL, progress = NULL, updated_at = now()
         WHERE id = $1 AND status <> 'deleted'",
        id,
        width,
        height,
        placeholder,
    )
    .execute(db)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// Records a transcode's progress (0 to 1) while its job is processing the media.
pub async fn set_progress(
    db: impl PgExecutor<'_>,
    id: Uuid,
    progress: f32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE media SET progress = $2 WHERE id = $1 AND status = 'processing'",
        id,
        progress,
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
        "UPDATE media SET status = 'failed', error = $2, progress = NULL, updated_at = now()
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
    pub tenant: String,
    pub sha256: String,
    pub original_key: String,
    /// The media whose files it shares (a duplicate upload), if any.
    pub content_of: Option<Uuid>,
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
        "SELECT id, tenant, sha256, original_key, content_of FROM media
         WHERE status = 'deleted' AND purged_at IS NULL AND ($1::uuid IS NULL OR id = $1)
         ORDER BY deleted_at
         LIMIT $2",
        only,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Records that a deleted media's files are gone (or are another's to keep), and drops its
/// variant rows.
pub async fn mark_purged(db: &mut sqlx::PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM media_variants WHERE media_id = $1", id)
        .execute(&mut *db)
        .await?;
    sqlx::query!("UPDATE media SET purged_at = now() WHERE id = $1", id)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// Of `ids` (the ids in file names), those whose files are still wanted: media that exist
/// and are not purged, and owners whose files unpurged duplicates share.
pub async fn with_live_files(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM media WHERE id = ANY($1) AND purged_at IS NULL
           UNION
           SELECT content_of AS "id!" FROM media
           WHERE content_of = ANY($1) AND purged_at IS NULL"#,
        ids,
    )
    .fetch_all(db)
    .await
}

/// Serialises everything that decides who shares the files of `tenant`'s bytes `sha256`:
/// an upload deduplicating against them, the owner's job finishing, a purge deciding whether
/// the files can go. Held until the transaction ends.
pub async fn lock_content(
    db: &mut sqlx::PgConnection,
    tenant: &str,
    sha256: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('media-content:' || $1 || ':' || $2, 0))",
        tenant,
        sha256,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The media of `tenant` with these bytes whose files a new upload can share: a live one that
/// is not failed, with the owner of its files.
pub async fn find_content(
    db: &mut sqlx::PgConnection,
    tenant: &str,
    sha256: &str,
) -> Result<Option<Media>, sqlx::Error> {
    sqlx::query_as!(
        Media,
        "SELECT id, tenant, status, content_type, bytes, sha256, width, height, original_key,
                error, job_id, api_key_id, metadata, placeholder, video, progress,
                created_at, updated_at
         FROM media
         WHERE tenant = $1 AND sha256 = $2 AND status NOT IN ('deleted', 'failed')
         ORDER BY content_of IS NOT NULL, id
         LIMIT 1",
        tenant,
        sha256,
    )
    .fetch_optional(db)
    .await
}

/// The media that owns `id`'s files: itself, or the one it shares them with.
pub async fn content_owner(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT coalesce(content_of, id) AS "owner!" FROM media WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// A duplicate upload: a media of its own that shares `source`'s files (and, if `source` is
/// ready, its variants, dimensions and placeholder at once).
pub async fn insert_duplicate(
    db: &mut sqlx::PgConnection,
    id: Uuid,
    source: &Media,
    owner: Uuid,
    bytes: i64,
    api_key_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO media (id, tenant, status, content_type, bytes, sha256, width, height,
                            original_key, job_id, api_key_id, placeholder, content_of, video)
         VALUES ($1, $2, CASE WHEN $3 = 'ready' THEN 'ready' ELSE 'pending' END, $4, $5, $6,
                 $7, $8, $9, NULL, $10, $11, $12, $13)",
        id,
        source.tenant,
        source.status,
        source.content_type,
        bytes,
        source.sha256,
        source.width,
        source.height,
        source.original_key,
        api_key_id,
        source.placeholder,
        owner,
        source.video,
    )
    .execute(&mut *db)
    .await?;
    if source.status == "ready" {
        copy_variants(db, source.id, &[id]).await?;
    }
    Ok(())
}

/// Gives each of `to` the variant rows of `from` (the same files).
async fn copy_variants(
    db: &mut sqlx::PgConnection,
    from: Uuid,
    to: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO media_variants (media_id, name, format, width, height, bytes, storage_key,
                                     sha256)
         SELECT t.id, v.name, v.format, v.width, v.height, v.bytes, v.storage_key, v.sha256
         FROM media_variants v CROSS JOIN unnest($2::uuid[]) AS t(id)
         WHERE v.media_id = $1
         ON CONFLICT (media_id, name, format) DO UPDATE
         SET width = EXCLUDED.width, height = EXCLUDED.height, bytes = EXCLUDED.bytes,
             storage_key = EXCLUDED.storage_key, sha256 = EXCLUDED.sha256",
        from,
        to,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Makes the live, unready duplicates of `owner` ready with its variants (the owner's job just
/// made them); returns them. Call with [`lock_content`] held.
pub async fn ready_duplicates(
    db: &mut sqlx::PgConnection,
    owner: Uuid,
    width: i32,
    height: i32,
    placeholder: &serde_json::Value,
) -> Result<Vec<Media>, sqlx::Error> {
    let ready = sqlx::query_as!(
        Media,
        "UPDATE media SET status = 'ready', width = $2, height = $3, placeholder = $4,
                          error = NULL, progress = NULL, updated_at = now()
         WHERE content_of = $1 AND status NOT IN ('ready', 'deleted')
         RETURNING id, tenant, status, content_type, bytes, sha256, width, height, original_key,
                   error, job_id, api_key_id, metadata, placeholder, video, progress,
                created_at, updated_at",
        owner,
        width,
        height,
        placeholder,
    )
    .fetch_all(&mut *db)
    .await?;
    let ids: Vec<Uuid> = ready.iter().map(|m| m.id).collect();
    if !ids.is_empty() {
        copy_variants(db, owner, &ids).await?;
    }
    Ok(ready)
}

/// Fails the live, unready duplicates of `owner` with its reason; returns them.
pub async fn fail_duplicates(
    db: &mut sqlx::PgConnection,
    owner: Uuid,
    error: &str,
) -> Result<Vec<Media>, sqlx::Error> {
    sqlx::query_as!(
        Media,
        "UPDATE media SET status = 'failed', error = $2, updated_at = now()
         WHERE content_of = $1 AND status NOT IN ('ready', 'deleted')
         RETURNING id, tenant, status, content_type, bytes, sha256, width, height, original_key,
                   error, job_id, api_key_id, metadata, placeholder, video, progress,
                created_at, updated_at",
        owner,
        &*super::jobs::storable(error),
    )
    .fetch_all(db)
    .await
}

/// Whether any live media uses `owner`'s files (the owner itself, or a duplicate).
pub async fn content_in_use(db: impl PgExecutor<'_>, owner: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (
               SELECT 1 FROM media
               WHERE (id = $1 OR content_of = $1) AND status <> 'deleted'
           ) AS "used!""#,
        owner,
    )
    .fetch_one(db)
    .await
}

/// A variant whose file was never hashed (made before ETags existed).
#[derive(Debug, Clone)]
pub struct Unhashed {
    pub media_id: Uuid,
    pub name: String,
    pub format: String,
    pub storage_key: String,
}

/// Up to `limit` variants of live media without a SHA-256, in key order after `after` (the
/// last one seen), so a pass over them ends even if a file cannot be read.
pub async fn unhashed_after(
    db: impl PgExecutor<'_>,
    after: &Unhashed,
    limit: i64,
) -> Result<Vec<Unhashed>, sqlx::Error> {
    sqlx::query_as!(
        Unhashed,
        "SELECT v.media_id, v.name, v.format, v.storage_key
         FROM media_variants v JOIN media m ON m.id = v.media_id
         WHERE v.sha256 IS NULL AND m.status <> 'deleted'
           AND (v.media_id, v.name, v.format) > ($1, $2, $3)
         ORDER BY v.media_id, v.name, v.format
         LIMIT $4",
        after.media_id,
        after.name,
        after.format,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Records the SHA-256 of a variant's file.
pub async fn set_variant_sha256(
    db: impl PgExecutor<'_>,
    variant: &Unhashed,
    sha256: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE media_variants SET sha256 = $4 WHERE media_id = $1 AND name = $2 AND format = $3",
        variant.media_id,
        variant.name,
        variant.format,
        sha256,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// What `GET /v1/media` filters on.
#[derive(Debug, Default)]
pub struct MediaFilter<'a> {
    pub status: Option<&'a str>,
    pub created_after: Option<DateTime<Utc>>,
    /// Only media older (smaller id) than this: the last one of the previous page.
    pub before: Option<Uuid>,
    /// An object every listed media's metadata contains.
    pub metadata: Option<serde_json::Value>,
}

/// A tenant's media (never deleted ones), newest first, at most `limit`.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant: &str,
    filter: &MediaFilter<'_>,
    limit: i64,
) -> Result<Vec<Media>, sqlx::Error> {
    sqlx::query_as!(
        Media,
        "SELECT id, tenant, status, content_type, bytes, sha256, width, height, original_key,
                error, job_id, api_key_id, metadata, placeholder, video, progress,
                created_at, updated_at
         FROM media
         WHERE tenant = $1 AND status <> 'deleted'
           AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR created_at > $3)
           AND ($4::uuid IS NULL OR id < $4)
           AND ($5::jsonb IS NULL OR metadata @> $5)
         ORDER BY id DESC
         LIMIT $6",
        tenant,
        filter.status,
        filter.created_after,
        filter.before,
        filter.metadata,
        limit,
    )
    .fetch_all(db)
    .await
}

/// The variants of several media, largest first within each.
pub async fn variants_of(
    db: impl PgExecutor<'_>,
    media_ids: &[Uuid],
) -> Result<Vec<(Uuid, Variant)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT media_id, name, format, width, height, bytes, storage_key, sha256
         FROM media_variants
         WHERE media_id = ANY($1) ORDER BY media_id, width DESC, name, format",
        media_ids,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let variant = Variant {
                name: r.name,
                format: r.format,
                width: r.width,
                height: r.height,
                bytes: r.bytes,
                storage_key: r.storage_key,
                sha256: r.sha256,
            };
            (r.media_id, variant)
        })
        .collect())
}

/// Merges `patch` into the metadata of a live media of `tenant` (a `null` value removes its
/// key) and returns the result, or `None` if there is no such media. Refuses (`Ok(Err)`) a
/// result over `max_keys` keys.
pub async fn merge_metadata(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
    patch: &serde_json::Value,
    max_keys: i32,
) -> Result<Option<Result<serde_json::Value, usize>>, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH merged AS (
               SELECT id, (metadata || jsonb_strip_nulls($3))
                          - ARRAY(SELECT key FROM jsonb_each($3) WHERE value = 'null'::jsonb)
                          AS metadata
               FROM media WHERE id = $1 AND tenant = $2 AND status <> 'deleted'
               FOR UPDATE
           ),
           updated AS (
               UPDATE media SET metadata = merged.metadata, updated_at = now()
               FROM merged
               WHERE media.id = merged.id
                 AND (SELECT count(*) FROM jsonb_object_keys(merged.metadata)) <= $4
               RETURNING media.metadata
           )
           SELECT merged.metadata AS "merged!",
                  (SELECT count(*) FROM jsonb_object_keys(merged.metadata)) AS "keys!",
                  EXISTS (SELECT 1 FROM updated) AS "updated!"
           FROM merged"#,
        id,
        tenant,
        patch,
        i64::from(max_keys),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| {
        if row.updated {
            Ok(row.merged)
        } else {
            Err(usize::try_from(row.keys).unwrap_or(usize::MAX))
        }
    }))
}

/// A ready media without a placeholder, with its smallest JPEG variant.
#[derive(Debug, Clone)]
pub struct WithoutPlaceholder {
    pub id: Uuid,
    pub storage_key: String,
}

/// Up to `limit` ready media without a placeholder whose id comes after `after`, each with
/// the storage key of its narrowest JPEG variant.
pub async fn without_placeholder_after(
    db: impl PgExecutor<'_>,
    after: Uuid,
    limit: i64,
) -> Result<Vec<WithoutPlaceholder>, sqlx::Error> {
    sqlx::query_as!(
        WithoutPlaceholder,
        r#"SELECT m.id, v.storage_key AS "storage_key!"
           FROM media m
           CROSS JOIN LATERAL (
               SELECT storage_key FROM media_variants
               WHERE media_id = m.id AND format = 'jpeg'
               ORDER BY width LIMIT 1
           ) v
           WHERE m.status = 'ready' AND m.placeholder IS NULL AND m.id > $1
           ORDER BY m.id
           LIMIT $2"#,
        after,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Records a placeholder computed after the fact (the backfill); keeps one already there.
pub async fn set_placeholder(
    db: impl PgExecutor<'_>,
    id: Uuid,
    placeholder: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE media SET placeholder = $2 WHERE id = $1 AND placeholder IS NULL",
        id,
        placeholder,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Sets a media's metadata (at creation, from an upload token).
pub async fn set_metadata(
    db: impl PgExecutor<'_>,
    id: Uuid,
    metadata: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE media SET metadata = $2 WHERE id = $1", id, metadata)
        .execute(db)
        .await?;
    Ok(())
}

/// The job of a media (the one that makes its files), if it still exists.
pub async fn job_of(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    let job = sqlx::query_scalar!("SELECT job_id FROM media WHERE id = $1", id)
        .fetch_optional(db)
        .await?;
    Ok(job.flatten())
}
