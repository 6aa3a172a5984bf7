//! Dashboard sessions (`admin_sessions`): made from an admin key at login, found by the hash of
//! the cookie's value, valid while unexpired and while the key is unrevoked.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::api_keys::ApiKey;

/// A live session: its key and the CSRF token its page carries.
#[derive(Debug, Clone)]
pub struct Session {
    pub key: ApiKey,
    pub csrf_token: String,
}

/// Stores a session; expired ones are swept on the way.
pub async fn create(
    db: &sqlx::PgPool,
    id_hash: &[u8],
    api_key_id: Uuid,
    csrf_token: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM admin_sessions WHERE expires_at < now()")
        .execute(db)
        .await?;
    sqlx::query!(
        "INSERT INTO admin_sessions (id_hash, api_key_id, csrf_token, expires_at)
         VALUES ($1, $2, $3, $4)",
        id_hash,
        api_key_id,
        csrf_token,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The unexpired session with this hash whose key is still active.
pub async fn find(db: impl PgExecutor<'_>, id_hash: &[u8]) -> Result<Option<Session>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT k.id, k.name, k.tenant, k.scopes, s.csrf_token
         FROM admin_sessions s JOIN api_keys k ON k.id = s.api_key_id
         WHERE s.id_hash = $1 AND s.expires_at > now() AND (k.revoked_at IS NULL OR k.revoked_at > now())",
        id_hash,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Session {
        key: ApiKey {
            id: r.id,
            name: r.name,
            tenant: r.tenant,
            scopes: r.scopes,
        },
        csrf_token: r.csrf_token,
    }))
}

/// Ends a session.
pub async fn delete(db: impl PgExecutor<'_>, id_hash: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM admin_sessions WHERE id_hash = $1", id_hash)
        .execute(db)
        .await?;
    Ok(())
}
