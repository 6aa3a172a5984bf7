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
    /// Where this key's notifications go; `None` opts out.
    pub notify_email: Option<&'a str>,
}

/// Stores a new key.
pub async fn insert(db: impl PgExecutor<'_>, key: &NewApiKey<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO api_keys (id, name, tenant, prefix, key_hash, scopes, notify_email)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        key.id,
        key.name,
        key.tenant,
        key.prefix,
        key.key_hash,
        key.scopes,
        key.notify_email,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Whether any key (revoked or not) belongs to `tenant`.
pub async fn tenant_exists(db: impl PgExecutor<'_>, tenant: &str) -> Result<bool, sqlx::Error> {
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM api_keys WHERE tenant = $1) AS "exists!""#,
        tenant
    )
    .fetch_one(db)
    .await?;
    Ok(exists)
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

/// The notification address of an unrevoked key, if it opted in.
pub async fn notify_address(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    let address = sqlx::query_scalar!(
        "SELECT notify_email FROM api_keys WHERE id = $1 AND revoked_at IS NULL",
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(address.flatten())
}

/// A tenant's digest address: the address of its oldest unrevoked opted-in key.
#[derive(Debug, Clone)]
pub struct DigestRecipient {
    pub tenant: String,
    pub address: String,
}

/// One recipient per tenant that has opted in.
pub async fn digest_recipients(
    db: impl PgExecutor<'_>,
) -> Result<Vec<DigestRecipient>, sqlx::Error> {
    sqlx::query_as!(
        DigestRecipient,
        r#"SELECT DISTINCT ON (tenant) tenant, notify_email AS "address!"
           FROM api_keys
           WHERE notify_email IS NOT NULL AND revoked_at IS NULL
           ORDER BY tenant, created_at"#
    )
    .fetch_all(db)
    .await
}
