//! `kiln-api keys create`: makes an API key, stores its hash and prints the key once.

use anyhow::{Context, bail};
use kiln_core::db;
use rand::RngCore;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{hash_key, scope};

/// A freshly made key: the secret is only ever in this value and the command's output.
pub struct CreatedKey {
    pub id: Uuid,
    pub key: String,
}

/// Creates a key named `name` for `tenant` with `scopes`. Without a tenant, the key starts a
/// new tenant of its name, and is refused if that tenant exists.
pub async fn create(
    pool: &PgPool,
    name: &str,
    tenant: Option<&str>,
    scopes: &[String],
    notify_email: Option<&str>,
) -> anyhow::Result<CreatedKey> {
    if name.trim().is_empty() {
        bail!("--name must not be empty");
    }
    if scopes.is_empty() {
        bail!("--scopes needs at least one of {}", scope::ALL.join(","));
    }
    if let Some(bad) = scopes.iter().find(|s| !scope::ALL.contains(&s.as_str())) {
        bail!("unknown scope {bad:?}; use {}", scope::ALL.join(","));
    }
    if let Some(address) = notify_email
        && (address.chars().any(char::is_control)
            || address.parse::<lettre::message::Mailbox>().is_err())
    {
        bail!("--notify-email {address:?} is not a valid email address");
    }
    // A tenant is named after its first key: a second customer created under the same name
    // would silently see the first one's media. Joining a tenant takes saying so.
    if tenant.is_none()
        && db::api_keys::tenant_exists(pool, name)
            .await
            .context("looking up the tenant")?
    {
        bail!(
            "a tenant named {name:?} exists already: pass --tenant {name} to add a key to it, \
             or choose another --name"
        );
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("kiln_{}", hex::encode(secret));
    let id = Uuid::now_v7();
    db::api_keys::insert(
        pool,
        &db::api_keys::NewApiKey {
            id,
            name,
            tenant: tenant.unwrap_or(name),
            prefix: &key[..12],
            key_hash: &hash_key(&key),
            scopes,
            notify_email,
        },
    )
    .await
    .context("storing the API key")?;
    Ok(CreatedKey { id, key })
}
