//! The `tenant_settings` table: what a tenant chose for itself.

use sqlx::PgExecutor;

/// Whether `tenant` opted into permanent public variant URLs.
pub async fn public_media_urls(db: impl PgExecutor<'_>, tenant: &str) -> Result<bool, sqlx::Error> {
    let found = sqlx::query_scalar!(
        "SELECT public_media_urls FROM tenant_settings WHERE tenant = $1",
        tenant
    )
    .fetch_optional(db)
    .await?;
    Ok(found.unwrap_or(false))
}

/// Records the tenant's choice of permanent public variant URLs.
pub async fn set_public_media_urls(
    db: impl PgExecutor<'_>,
    tenant: &str,
    public: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO tenant_settings (tenant, public_media_urls) VALUES ($1, $2)
         ON CONFLICT (tenant) DO UPDATE
         SET public_media_urls = EXCLUDED.public_media_urls, updated_at = now()",
        tenant,
        public,
    )
    .execute(db)
    .await?;
    Ok(())
}
