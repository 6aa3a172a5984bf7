//! The `upload_tokens` and `tus_uploads` tables: uploads straight from a browser, resumable.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// An upload token as stored.
#[derive(Debug, Clone)]
pub struct UploadToken {
    pub id: Uuid,
    pub tenant: String,
    pub api_key_id: Uuid,
    pub max_bytes: i64,
    pub content_types: Vec<String>,
    pub metadata: serde_json::Value,
    pub expires_at: DateTime<Utc>,
    pub upload_id: Option<Uuid>,
}

/// A token to record.
#[derive(Debug)]
pub struct NewToken<'a> {
    pub id: Uuid,
    pub token_hash: &'a [u8],
    pub tenant: &'a str,
    pub api_key_id: Uuid,
    pub max_bytes: i64,
    pub content_types: &'a [String],
    pub metadata: &'a serde_json::Value,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_token(
    db: impl PgExecutor<'_>,
    token: &NewToken<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO upload_tokens (id, token_hash, tenant, api_key_id, max_bytes, content_types,
                                    metadata, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        token.id,
        token.token_hash,
        token.tenant,
        token.api_key_id,
        token.max_bytes,
        token.content_types,
        token.metadata,
        token.expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The token with this hash, spent or not, expired or not, while the key that made it is not
/// revoked (a revoked key's tokens stop with it).
pub async fn find_token(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> Result<Option<UploadToken>, sqlx::Error> {
    sqlx::query_as!(
        UploadToken,
        "SELECT t.id, t.tenant, t.api_key_id, t.max_bytes, t.content_types, t.metadata,
                t.expires_at, t.upload_id
         FROM upload_tokens t JOIN api_keys k ON k.id = t.api_key_id
         WHERE t.token_hash = $1 AND (k.revoked_at IS NULL OR k.revoked_at > now())",
        token_hash,
    )
    .fetch_optional(db)
    .await
}

/// Spends an unspent, unexpired token on `upload_id`; `false` if it was spent or expired
/// meanwhile.
pub async fn spend_token(
    db: impl PgExecutor<'_>,
    id: Uuid,
    upload_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let spent = sqlx::query!(
        "UPDATE upload_tokens SET upload_id = $2
         WHERE id = $1 AND upload_id IS NULL AND expires_at > now()",
        id,
        upload_id,
    )
    .execute(db)
    .await?;
    Ok(spent.rows_affected() == 1)
}

/// A tus upload as stored.
#[derive(Debug, Clone)]
pub struct TusUpload {
    pub id: Uuid,
    pub tenant: String,
    pub api_key_id: Uuid,
    pub upload_length: i64,
    pub upload_offset: i64,
    pub chunks: Vec<String>,
    pub content_type: Option<String>,
    pub content_types: Option<Vec<String>>,
    pub metadata: serde_json::Value,
    pub upload_metadata: Option<String>,
    pub media_id: Uuid,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

/// An upload to create.
#[derive(Debug)]
pub struct NewUpload<'a> {
    pub id: Uuid,
    pub tenant: &'a str,
    pub api_key_id: Uuid,
    pub upload_length: i64,
    pub content_types: Option<&'a [String]>,
    pub metadata: &'a serde_json::Value,
    pub upload_metadata: Option<&'a str>,
    pub media_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

pub async fn create(db: impl PgExecutor<'_>, upload: &NewUpload<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO tus_uploads (id, tenant, api_key_id, upload_length, content_types, metadata,
                                  upload_metadata, media_id, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        upload.id,
        upload.tenant,
        upload.api_key_id,
        upload.upload_length,
        upload.content_types,
        upload.metadata,
        upload.upload_metadata,
        upload.media_id,
        upload.expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// An upload that has not expired.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<TusUpload>, sqlx::Error> {
    sqlx::query_as!(
        TusUpload,
        "SELECT id, tenant, api_key_id, upload_length, upload_offset, chunks, content_type,
                content_types, metadata, upload_metadata, media_id, finished_at, expires_at
         FROM tus_uploads WHERE id = $1 AND expires_at > now()",
        id,
    )
    .fetch_optional(db)
    .await
}

/// Records a chunk written from offset `from` to `to`; `false` if the offset moved meanwhile
/// (another PATCH won) or the upload is gone.
pub async fn advance(
    db: impl PgExecutor<'_>,
    id: Uuid,
    from: i64,
    to: i64,
    chunk: &str,
    content_type: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query!(
        "UPDATE tus_uploads
         SET upload_offset = $3, chunks = array_append(chunks, $4),
             content_type = coalesce(content_type, $5)
         WHERE id = $1 AND upload_offset = $2 AND finished_at IS NULL AND expires_at > now()",
        id,
        from,
        to,
        chunk,
        content_type,
    )
    .execute(db)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Names the media an unfinished upload becomes (under its finishing lock); `false` if it is
/// finished or gone.
pub async fn set_media_id(
    db: impl PgExecutor<'_>,
    id: Uuid,
    media_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let named = sqlx::query!(
        "UPDATE tus_uploads SET media_id = $2
         WHERE id = $1 AND finished_at IS NULL AND expires_at > now()",
        id,
        media_id,
    )
    .execute(db)
    .await?;
    Ok(named.rows_affected() == 1)
}

/// What marking an upload finished found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Marked now: this transaction records its media.
    Finished,
    /// Another request recorded it.
    AlreadyFinished,
    /// Terminated or expired: it makes no media.
    Gone,
}

/// Marks an upload as having made its media, once (the row stays locked to the commit).
pub async fn finish(
    db: &mut sqlx::PgConnection,
    id: Uuid,
    media_id: Uuid,
) -> Result<Finish, sqlx::Error> {
    let found = sqlx::query_scalar!(
        r#"SELECT finished_at IS NOT NULL AS "finished!" FROM tus_uploads
           WHERE id = $1 AND media_id = $2 AND expires_at > now()
           FOR UPDATE"#,
        id,
        media_id,
    )
    .fetch_optional(&mut *db)
    .await?;
    match found {
        None => Ok(Finish::Gone),
        Some(true) => Ok(Finish::AlreadyFinished),
        Some(false) => {
            sqlx::query!(
                "UPDATE tus_uploads SET finished_at = now() WHERE id = $1",
                id
            )
            .execute(db)
            .await?;
            Ok(Finish::Finished)
        }
    }
}

/// A session-level advisory lock key for finishing upload `id`: one finisher at a time, and
/// the lock dies with its connection if the process does.
pub fn finishing_lock_key(id: Uuid) -> i64 {
    let bytes = id.as_bytes();
    i64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) ^ 0x6b75_735f_6669_6e69
}

/// Tries the finishing lock of an upload on this (detached) connection.
pub async fn try_lock_finishing(
    db: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_lock($1) AS "locked!""#,
        finishing_lock_key(id)
    )
    .fetch_one(db)
    .await
}

/// Deletes an upload; returns its chunks' keys, to remove from storage.
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<Vec<String>, sqlx::Error> {
    let chunks = sqlx::query_scalar!("DELETE FROM tus_uploads WHERE id = $1 RETURNING chunks", id)
        .fetch_optional(db)
        .await?;
    Ok(chunks.unwrap_or_default())
}

/// An expired upload, with its chunks.
#[derive(Debug, Clone)]
pub struct Expired {
    pub id: Uuid,
    pub chunks: Vec<String>,
}

/// Up to `limit` expired uploads (finished or not).
pub async fn expired(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Expired>, sqlx::Error> {
    sqlx::query_as!(
        Expired,
        "SELECT id, chunks FROM tus_uploads WHERE expires_at <= now() ORDER BY expires_at LIMIT $1",
        limit,
    )
    .fetch_all(db)
    .await
}

/// Deletes the tokens that expired more than `grace` ago.
pub async fn delete_expired_tokens(
    db: impl PgExecutor<'_>,
    grace: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    let secs = grace.as_secs_f64();
    let deleted = sqlx::query!(
        "DELETE FROM upload_tokens WHERE expires_at < now() - make_interval(secs => $1::float8)",
        secs,
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}

/// The chunks each of `ids` lists (uploads that exist), for the sweep of chunks no upload
/// will ever read.
pub async fn chunks_of(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Vec<String>)>, sqlx::Error> {
    let rows = sqlx::query!("SELECT id, chunks FROM tus_uploads WHERE id = ANY($1)", ids)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.chunks)).collect())
}
