//! The state every handler receives.

use std::sync::Arc;

use kiln_core::{Config, cache::Cache, queue::Publisher, storage::Storage, templates::Templates};
use sqlx::PgPool;

/// Shared handles; each is cheap to clone, so the state is cloned per request.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// Batched `published_at` records (group commit under load).
    pub writes: kiln_core::db::job_writes::JobWrites,
    pub cache: Cache,
    pub storage: Storage,
    pub publisher: Publisher,
    /// Email templates, rendered when an email is accepted.
    pub templates: Templates,
    /// Active API keys by hash, kept briefly so a request costs no key lookup in Postgres.
    pub keys: crate::auth::KeyCache,
    pub config: Arc<Config>,
}
