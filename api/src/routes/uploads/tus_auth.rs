//! Who makes a tus request: a bearer API key with the media scope (any upload of its
//! tenant), or an upload token (the one upload it started).

use axum::{extract::FromRequestParts, http::request::Parts};
use kiln_core::db;

use super::tokens::TOKEN_PREFIX;
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    state::AppState,
};

/// A tus request's credential.
pub enum TusCaller {
    Key(Caller),
    Token(db::tus::UploadToken),
}

impl TusCaller {
    /// Authenticates the request: `Authorization: Bearer kut_...` is an upload token,
    /// anything else goes through the API key check.
    pub async fn of(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
        let Some(token) = bearer.filter(|t| t.starts_with(TOKEN_PREFIX)) else {
            let caller = Caller::from_request_parts(parts, state).await?;
            caller.require(scope::MEDIA)?;
            return Ok(Self::Key(caller));
        };
        let address = crate::limits::client::address(parts, &state.config.limits.trusted_proxies);
        crate::limits::refuse_if_failing(state, address)?;
        match db::tus::find_token(&state.db, &crate::auth::hash_key(&token)).await? {
            Some(found) => Ok(Self::Token(found)),
            None => {
                crate::limits::count_failure(state, address);
                Err(ApiError::unauthorized("unknown upload token"))
            }
        }
    }

    pub fn tenant(&self) -> &str {
        match self {
            Self::Key(caller) => &caller.tenant,
            Self::Token(token) => &token.tenant,
        }
    }

    /// Whether this credential may see and change `upload`.
    pub fn may_touch(&self, upload: &db::tus::TusUpload) -> bool {
        match self {
            Self::Key(caller) => caller.tenant == upload.tenant,
            Self::Token(token) => token.upload_id == Some(upload.id),
        }
    }
}
