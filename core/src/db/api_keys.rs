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

/// Holds, until the transaction ends, the lock that serialises creating keys of `tenant`.
pub async fn lock_tenant(db: impl PgExecutor<'_>, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('kiln.tenant:' || $1, 0))",
        tenant
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
         WHERE key_hash = $1 AND (revoked_at IS NULL OR revoked_at > now())",
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
        "SELECT notify_email FROM api_keys
         WHERE id = $1 AND (revoked_at IS NULL OR revoked_at > now())",
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(address.flatten())
}

/// Where to tell a tenant about its account (a webhook endpoint disabled): the notification
/// address of its oldest unrevoked key that has one.
pub async fn tenant_notify_address(
    db: impl PgExecutor<'_>,
    tenant: &str,
) -> Result<Option<String>, sqlx::Error> {
    let address = sqlx::query_scalar!(
        "SELECT notify_email FROM api_keys
         WHERE tenant = $1 AND notify_email IS NOT NULL
           AND (revoked_at IS NULL OR revoked_at > now())
         ORDER BY created_at LIMIT 1",
        tenant
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
           WHERE notify_email IS NOT NULL AND (revoked_at IS NULL OR revoked_at > now())
           ORDER BY tenant, created_at"#
    )
    .fetch_all(db)
    .await
}

/// A key as operators see it: everything but its hash.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeyRecord {
    pub id: Uuid,
    pub name: String,
    pub tenant: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub notify_email: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the key stops (or stopped) working; may be ahead during a rotation's overlap.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub replaced_by: Option<Uuid>,
}

/// Every key, oldest first, optionally of one tenant.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant: Option<&str>,
) -> Result<Vec<KeyRecord>, sqlx::Error> {
    sqlx::query_as!(
        KeyRecord,
        "SELECT id, name, tenant, prefix, scopes, notify_email, created_at, last_used_at,
                revoked_at, replaced_by
         FROM api_keys
         WHERE $1::text IS NULL OR tenant = $1
         ORDER BY created_at, id",
        tenant,
    )
    .fetch_all(db)
    .await
}

/// One key.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<KeyRecord>, sqlx::Error> {
    sqlx::query_as!(
        KeyRecord,
        "SELECT id, name, tenant, prefix, scopes, notify_email, created_at, last_used_at,
                revoked_at, replaced_by
         FROM api_keys WHERE id = $1",
        id,
    )
    .fetch_optional(db)
    .await
}

/// One key, locked for a change when inside a transaction.
pub async fn find_for_update(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<KeyRecord>, sqlx::Error> {
    sqlx::query_as!(
        KeyRecord,
        "SELECT id, name, tenant, prefix, scopes, notify_email, created_at, last_used_at,
                revoked_at, replaced_by
         FROM api_keys WHERE id = $1 FOR UPDATE",
        id,
    )
    .fetch_optional(db)
    .await
}

/// Revokes a key `after` from now (never later than a revocation already set); with no delay,
/// its dashboard sessions end too. Returns the key as it now is.
pub async fn revoke(
    db: &mut sqlx::PgConnection,
    id: Uuid,
    after: std::time::Duration,
    replaced_by: Option<Uuid>,
) -> Result<Option<KeyRecord>, sqlx::Error> {
    let after_secs = after.as_secs_f64();
    let key = sqlx::query_as!(
        KeyRecord,
        "UPDATE api_keys
         SET revoked_at = LEAST(COALESCE(revoked_at, 'infinity'),
                                now() + make_interval(secs => $2)),
             replaced_by = COALESCE($3, replaced_by)
         WHERE id = $1
         RETURNING id, name, tenant, prefix, scopes, notify_email, created_at, last_used_at,
                   revoked_at, replaced_by",
        id,
        after_secs,
        replaced_by,
    )
    .fetch_optional(&mut *db)
    .await?;
    if key.is_some() && after.is_zero() {
        sqlx::query!("DELETE FROM admin_sessions WHERE api_key_id = $1", id)
            .execute(&mut *db)
            .await?;
    }
    Ok(key)
}

/// Records that a key was used, at most once a minute.
pub async fn touch(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_keys SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        id,
    )
    .execute(db)
    .await?;
    Ok(())
}
