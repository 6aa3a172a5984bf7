//! Bearer API keys. A key is `kiln_` + 64 hex characters (256 random bits); only its SHA-256 is
//! stored. Each key has scopes and a tenant, and sees only its tenant's media and jobs.
//!
//! The dashboard authenticates with a session cookie instead (see [`crate::session`]); a request
//! that changes anything must then also carry the session's CSRF token in `X-CSRF-Token`.

use axum::{extract::FromRequestParts, http::request::Parts};
use kiln_core::db;
use sha2::{Digest, Sha256};

use crate::{error::ApiError, state::AppState};

/// What a key may do.
pub mod scope {
    pub const MEDIA: &str = "media";
    pub const EMAIL: &str = "email";
    pub const ADMIN: &str = "admin";
    /// The tenant's webhook endpoints and their delivery log.
    pub const WEBHOOKS: &str = "webhooks";
    /// The tenant's HTTP tasks and task queues.
    pub const TASKS: &str = "tasks";
    pub const ALL: [&str; 5] = [MEDIA, EMAIL, ADMIN, WEBHOOKS, TASKS];
}

/// Active keys by hash for a short time, so an authenticated request needs no database round
/// trip. Only keys that were found are kept: an unknown key always asks Postgres, so a key
/// works the moment it is created.
#[derive(Clone)]
pub struct KeyCache {
    keys: Option<moka::future::Cache<Vec<u8>, db::api_keys::ApiKey>>,
}

impl KeyCache {
    /// A cache whose entries live `ttl` (zero disables it).
    pub fn new(ttl: std::time::Duration) -> Self {
        let keys = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build()
        });
        Self { keys }
    }

    /// The active key with this hash, from the cache or Postgres.
    pub async fn find(
        &self,
        db: &sqlx::PgPool,
        key_hash: Vec<u8>,
    ) -> Result<Option<db::api_keys::ApiKey>, sqlx::Error> {
        if let Some(keys) = &self.keys
            && let Some(found) = keys.get(&key_hash).await
        {
            return Ok(Some(found));
        }
        let found = db::api_keys::find_active_by_hash(db, &key_hash).await?;
        if let Some(found) = &found {
            touch(db, found.id);
            if let Some(keys) = &self.keys {
                keys.insert(key_hash, found.clone()).await;
            }
        }
        Ok(found)
    }
}

/// Records the key's use in the background (at most once a minute, in the query itself): "last
/// used" is then as fresh as the key cache allows, and costs a request nothing.
fn touch(db: &sqlx::PgPool, id: uuid::Uuid) {
    let db = db.clone();
    tokio::spawn(async move {
        if let Err(error) = db::api_keys::touch(&db, id).await {
            tracing::debug!(%error, "could not record a key's use");
        }
    });
}

/// The SHA-256 of a key, as stored.
pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The caller, authenticated by its key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: uuid::Uuid,
    pub tenant: String,
    scopes: Vec<String>,
}

impl Caller {
    /// Whether the key has `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Fails with 403 unless the key has `scope`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(scope))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let address = crate::limits::client::address(parts, &state.config.limits.trusted_proxies);
        crate::limits::refuse_if_failing(state, address)?;
        let caller = match authenticate(parts, state).await {
            Ok(caller) => caller,
            Err(error) => {
                // A wrong key is a guess; no key at all (or an expired session) is not.
                let presented = parts
                    .headers
                    .contains_key(axum::http::header::AUTHORIZATION);
                if presented && error.status() == axum::http::StatusCode::UNAUTHORIZED {
                    crate::limits::count_failure(state, address);
                }
                return Err(error);
            }
        };
        crate::limits::admit_key(state, parts, caller.key_id)?;
        Ok(caller)
    }
}

/// The caller by its bearer key or, without one, its dashboard session.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        if let Some(session) = crate::session::from_cookie(parts, state).await? {
            if !parts.method.is_safe() {
                crate::session::check_csrf(parts, &session.csrf_token)?;
            }
            return Ok(Caller {
                key_id: session.key.id,
                tenant: session.key.tenant,
                scopes: session.key.scopes,
            });
        }
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer <api key>",
        ));
    };
    let key = header
        .to_str()
        .ok()
        .and_then(bearer_token)
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <api key>"))?;
    let found = state
        .keys
        .find(&state.db, hash_key(key))
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
    Ok(Caller {
        key_id: found.id,
        tenant: found.tenant,
        scopes: found.scopes,
    })
}

/// The token of a `Bearer` credential. Authentication schemes are case-insensitive (RFC 9110
/// §11.1), so `bearer` and `BEARER` are accepted; the scheme must be followed by whitespace.
fn bearer_token(header: &str) -> Option<&str> {
    const SCHEME: &str = "bearer";
    let (scheme, rest) = header.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim()).filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_matched_in_any_case() {
        for header in ["Bearer k", "bearer k", "BEARER k", "bEaReR \t k "] {
            assert_eq!(bearer_token(header), Some("k"), "{header:?}");
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_refused() {
        for header in [
            "Basic k",
            "Bearerk",
            "Bearer",
            "Bearer   ",
            "Bear k",
            "",
            "Bé k",
        ] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }
}
