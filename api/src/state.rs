//! The state every handler receives.

use std::sync::Arc;

use kiln_core::{Config, cache::Cache, queue::Publisher, storage::Storage, templates::Templates};
use sqlx::PgPool;

/// Shared handles; each is cheap to clone, so the state is cloned per request.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// For usage counters: commits that do not wait for the disk (see
    /// `kiln_core::db::connect_lazy_async_commit`).
    pub usage_db: PgPool,
    /// Batched `published_at` records (group commit under load).
    pub writes: kiln_core::db::job_writes::JobWrites,
    pub cache: Cache,
    pub storage: Storage,
    pub publisher: Publisher,
    /// Email templates, rendered when an email is accepted.
    pub templates: Templates,
    /// Active API keys by hash, kept briefly so a request costs no key lookup in Postgres.
    pub keys: crate::auth::KeyCache,
    /// Request rate buckets, shared with the other API processes through Redis.
    pub rates: crate::limits::rate::RateLimiter,
    /// Uploads in flight, per process and per tenant.
    pub uploads: crate::limits::uploads::UploadSlots,
    /// Signs variant URLs and checks their signatures. Behind an `Arc`, as the settings
    /// below: the state is cloned for every request, and a clone of either is not free (a
    /// profile of the cached read showed ~9% in cloning and dropping them).
    pub signer: Arc<kiln_core::media_urls::UrlSigner>,
    /// Tenant settings (permanent public URLs), kept briefly.
    pub settings: Arc<crate::tenant_settings::SettingsCache>,
    pub config: Arc<Config>,
}
