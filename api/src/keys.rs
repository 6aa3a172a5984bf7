//! API keys' life-cycle, for the `kiln-api keys` command and `/v1/admin/keys`: create (the key
//! is shown once, only its hash is stored), list, revoke, rotate.

use std::time::Duration;

use kiln_core::db::{self, api_keys::KeyRecord};
use rand::RngCore;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{hash_key, scope};

/// A freshly made key: the secret is only ever in this value and its one answer.
pub struct CreatedKey {
    pub id: Uuid,
    pub key: String,
}

/// The longest a rotation may keep the old key working.
pub const MAX_OVERLAP: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a tenant named {0:?} exists already: name the tenant explicitly to add a key to it \
         (--tenant {0}, or \"tenant\" in the API), or choose another name"
    )]
    TenantExists(String),
    #[error("no API key has the id {0}")]
    NotFound(Uuid),
    #[error("the API key {0} is revoked already")]
    Revoked(Uuid),
    #[error("the database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a new key is made of.
pub struct KeySpec<'a> {
    pub name: &'a str,
    /// The tenant to join; without one the key starts a tenant of its name.
    pub tenant: Option<&'a str>,
    pub scopes: &'a [String],
    pub notify_email: Option<&'a str>,
}

impl KeySpec<'_> {
    fn check(&self) -> Result<(), KeyError> {
        let invalid = |message: String| Err(KeyError::Invalid(message));
        // Control characters (NUL above all, which Postgres refuses in text) have no place in
        // a name shown on the dashboard and printed a key a line by `keys list`.
        let unfit = |text: &str| {
            text.trim().is_empty() || text.len() > 200 || text.chars().any(char::is_control)
        };
        if unfit(self.name) {
            return invalid("the name must be 1 to 200 characters, none of them control".into());
        }
        if self.tenant.is_some_and(unfit) {
            return invalid("the tenant must be 1 to 200 characters, none of them control".into());
        }
        if self.scopes.is_empty() {
            return invalid(format!("at least one scope of {}", scope::ALL.join(",")));
        }
        if let Some(bad) = self
            .scopes
            .iter()
            .find(|s| !scope::ALL.contains(&s.as_str()))
        {
            return invalid(format!(
                "unknown scope {bad:?}; use {}",
                scope::ALL.join(",")
            ));
        }
        if let Some(address) = self.notify_email
            && (address.chars().any(char::is_control)
                || address.parse::<lettre::message::Mailbox>().is_err())
        {
            return invalid(format!("{address:?} is not a valid email address"));
        }
        Ok(())
    }
}

/// Creates a key. Without a tenant the key starts a new tenant of its name, and is refused if
/// that tenant exists: a second customer created under the same name would otherwise silently
/// see the first one's media. Joining a tenant takes saying so.
pub async fn create(pool: &PgPool, spec: &KeySpec<'_>) -> Result<CreatedKey, KeyError> {
    spec.check()?;
    let mut tx = pool.begin().await?;
    if spec.tenant.is_none() {
        // Two creations of one new name at once: the second waits, then finds the tenant.
        db::api_keys::lock_tenant(&mut *tx, spec.name).await?;
        if db::api_keys::tenant_exists(&mut *tx, spec.name).await? {
            return Err(KeyError::TenantExists(spec.name.to_owned()));
        }
    }
    let created = insert(&mut tx, spec).await?;
    tx.commit().await?;
    Ok(created)
}

async fn insert(conn: &mut sqlx::PgConnection, spec: &KeySpec<'_>) -> Result<CreatedKey, KeyError> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("kiln_{}", hex::encode(secret));
    let id = Uuid::now_v7();
    db::api_keys::insert(
        &mut *conn,
        &db::api_keys::NewApiKey {
            id,
            name: spec.name,
            tenant: spec.tenant.unwrap_or(spec.name),
            prefix: &key[..12],
            key_hash: &hash_key(&key),
            scopes: spec.scopes,
            notify_email: spec.notify_email,
        },
    )
    .await?;
    Ok(CreatedKey { id, key })
}

/// Every key, oldest first.
pub async fn list(pool: &PgPool, tenant: Option<&str>) -> Result<Vec<KeyRecord>, KeyError> {
    Ok(db::api_keys::list(pool, tenant).await?)
}

/// Revokes a key now. Its dashboard sessions end at once; requests with it fail within
/// `KILN_AUTH_CACHE_SECS` (the time a process may keep it cached).
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<KeyRecord, KeyError> {
    let mut tx = pool.begin().await?;
    let key = db::api_keys::revoke(&mut tx, id, Duration::ZERO, None)
        .await?
        .ok_or(KeyError::NotFound(id))?;
    tx.commit().await?;
    Ok(key)
}

/// Makes a new key with the old one's name, tenant, scopes and notification address, and
/// revokes the old one `overlap` from now, so clients can move over without an outage.
pub async fn rotate(
    pool: &PgPool,
    id: Uuid,
    overlap: Duration,
) -> Result<(CreatedKey, KeyRecord), KeyError> {
    if overlap > MAX_OVERLAP {
        return Err(KeyError::Invalid(format!(
            "the overlap may be at most {} days",
            MAX_OVERLAP.as_secs() / 86_400
        )));
    }
    let mut tx = pool.begin().await?;
    let old = db::api_keys::find_for_update(&mut *tx, id)
        .await?
        .ok_or(KeyError::NotFound(id))?;
    if old.revoked_at.is_some_and(|at| at <= chrono::Utc::now()) {
        return Err(KeyError::Revoked(id));
    }
    let created = insert(
        &mut tx,
        &KeySpec {
            name: &old.name,
            tenant: Some(&old.tenant),
            scopes: &old.scopes,
            notify_email: old.notify_email.as_deref(),
        },
    )
    .await?;
    let old = db::api_keys::revoke(&mut tx, id, overlap, Some(created.id))
        .await?
        .ok_or(KeyError::NotFound(id))?;
    tx.commit().await?;
    Ok((created, old))
}

/// One line a key for `kiln-api keys list`: id, name, tenant, scopes, created, last used,
/// revoked, separated by tabs (`-` for none).
pub fn list_line(key: &KeyRecord) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
    };
    [
        key.id.to_string(),
        key.name.replace(['\t', '\n'], " "),
        key.tenant.replace(['\t', '\n'], " "),
        key.scopes.join(","),
        time(Some(key.created_at)),
        time(key.last_used_at),
        time(key.revoked_at),
    ]
    .join("\t")
}
