//! Tenant settings as the API needs them on every media answer and signed download, kept
//! briefly in each process (as API keys are) so they cost no database round trip.

use kiln_core::db;

/// Whether a tenant serves permanent public URLs, by tenant, for `KILN_AUTH_CACHE_SECS`:
/// a change reaches every API process within that long.
#[derive(Clone)]
pub struct SettingsCache {
    public_urls: Option<moka::future::Cache<String, bool>>,
}

impl SettingsCache {
    pub fn new(ttl: std::time::Duration) -> Self {
        let public_urls = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build()
        });
        Self { public_urls }
    }

    /// Whether `tenant` opted into permanent public variant URLs.
    pub async fn public_urls(&self, db: &sqlx::PgPool, tenant: &str) -> Result<bool, sqlx::Error> {
        let Some(cache) = &self.public_urls else {
            return db::tenant_settings::public_media_urls(db, tenant).await;
        };
        if let Some(public) = cache.get(tenant).await {
            return Ok(public);
        }
        let public = db::tenant_settings::public_media_urls(db, tenant).await?;
        cache.insert(tenant.to_owned(), public).await;
        Ok(public)
    }

    /// Forgets this process's copy after the tenant changed it here.
    pub async fn forget(&self, tenant: &str) {
        if let Some(cache) = &self.public_urls {
            cache.invalidate(tenant).await;
        }
    }
}
