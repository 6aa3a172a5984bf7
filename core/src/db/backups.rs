//! The `backups` table.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A stored backup.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Backup {
    pub id: Uuid,
    pub storage_key: String,
    pub bytes: i64,
    pub sha256: String,
    pub duration_ms: i64,
    pub server_version: String,
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// Records a backup whose file is already stored.
pub async fn insert(db: impl PgExecutor<'_>, backup: &Backup) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO backups (id, storage_key, bytes, sha256, duration_ms, server_version, job_id,
                              created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        backup.id,
        backup.storage_key,
        backup.bytes,
        backup.sha256,
        backup.duration_ms,
        backup.server_version,
        backup.job_id,
        backup.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Every backup, newest first.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Backup>, sqlx::Error> {
    sqlx::query_as!(
        Backup,
        "SELECT id, storage_key, bytes, sha256, duration_ms, server_version, job_id, created_at
         FROM backups ORDER BY created_at DESC",
    )
    .fetch_all(db)
    .await
}

/// One backup.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Backup>, sqlx::Error> {
    sqlx::query_as!(
        Backup,
        "SELECT id, storage_key, bytes, sha256, duration_ms, server_version, job_id, created_at
         FROM backups WHERE id = $1",
        id,
    )
    .fetch_optional(db)
    .await
}

/// Forgets a backup (after its file was deleted).
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM backups WHERE id = $1", id)
        .execute(db)
        .await?;
    Ok(())
}
