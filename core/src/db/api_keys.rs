//! API keys: stored as SHA-256 hashes, with scopes and a tenant.

use sqlx::PgExecutor;
use uuid::Uuid;

/// An active key, as the API needs it to authorize a request.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub tenant: String,
    pub scopes: Vec<String>,
}

/// A key to store; the secret itself is never stored, only its hash.
#[derive(Debug)]
pub struct NewApiKey<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub tenant: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a [u8],
    pub scopes: &'a [String],
}

/// Stores a new key.
pub async fn insert(db: impl PgExecutor<'_>, key: &NewApiKey<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO api_keys (id, name, tenant, prefix, key_hash, scopes)
         VALUES ($1, $2, $3, $4, $5, $6)",
        key.id,
        key.name,
        key.tenant,
        key.prefix,
        key.key_hash,
        key.scopes,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Finds the unrevoked key with this hash.
pub async fn find_active_by_hash(
    db: impl PgExecutor<'_>,
    key_hash: &[u8],
) -> Result<Option<ApiKey>, sqlx::Error> {
    sqlx::query_as!(
        ApiKey,
        "SELECT id, name, tenant, scopes FROM api_keys
         WHERE key_hash = $1 AND revoked_at IS NULL",
        key_hash,
    )
    .fetch_optional(db)
    .await
}
