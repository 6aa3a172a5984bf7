//! Dashboard sessions: `POST /admin/login` trades an admin key for a random session id in an
//! HttpOnly, SameSite=Strict cookie (Secure when `KILN_PUBLIC_URL` is https). Only the id's
//! SHA-256 is stored. Each session has a CSRF token that the page sends back in `X-CSRF-Token`
//! on every change: SameSite already stops cross-site posts in current browsers, the token
//! covers the rest.

use axum::http::{HeaderMap, HeaderValue, header, request::Parts};
use cookie::{Cookie, SameSite};
use kiln_core::db::{self, sessions::Session};
use rand::RngCore;

use crate::{auth::hash_key, error::ApiError, state::AppState};

/// The cookie's name.
pub const COOKIE: &str = "kiln_session";
/// The header a change must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login lasts.
const LIFETIME: chrono::Duration = chrono::Duration::hours(12);

/// 256 random bits, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Starts a session for `key_id`; returns the `Set-Cookie` value.
pub async fn create(state: &AppState, key_id: uuid::Uuid) -> Result<HeaderValue, ApiError> {
    let id = random_token();
    db::sessions::create(
        &state.db,
        &hash_key(&id),
        key_id,
        &random_token(),
        chrono::Utc::now() + LIFETIME,
    )
    .await?;
    let cookie = Cookie::build((COOKIE, id))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.public_url.starts_with("https://"))
        .path("/")
        .max_age(cookie::time::Duration::seconds(LIFETIME.num_seconds()))
        .build();
    HeaderValue::from_str(&cookie.to_string()).map_err(ApiError::internal)
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear() -> HeaderValue {
    let cookie = Cookie::build((COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&cookie.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("kiln_session=; Max-Age=0; Path=/"))
}

/// The session id the request's cookie carries, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// The live session of the request's cookie.
pub async fn from_cookie(parts: &Parts, state: &AppState) -> Result<Option<Session>, ApiError> {
    from_headers(&parts.headers, state).await
}

/// The live session of these headers' cookie.
pub async fn from_headers(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<Session>, ApiError> {
    let Some(id) = cookie_value(headers) else {
        return Ok(None);
    };
    Ok(db::sessions::find(&state.db, &hash_key(&id)).await?)
}

/// Ends the request's session, if it has one.
pub async fn end(headers: &HeaderMap, state: &AppState) -> Result<(), ApiError> {
    if let Some(id) = cookie_value(headers) {
        db::sessions::delete(&state.db, &hash_key(&id)).await?;
    }
    Ok(())
}

/// Fails with 403 `csrf_failed` unless the request carries the session's token.
pub fn check_csrf(parts: &Parts, expected: &str) -> Result<(), ApiError> {
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Both are 64 hex characters; compare without an early exit anyway.
    let same = sent.len() == expected.len()
        && sent
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "csrf_failed",
            "missing or wrong X-CSRF-Token for this session; reload the dashboard",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; kiln_session=abc123; other=1"),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc123"));
        headers.insert(header::COOKIE, HeaderValue::from_static("kiln_session="));
        assert_eq!(cookie_value(&headers), None);
    }

    #[test]
    fn the_cleared_cookie_expires_at_once() {
        let cleared = clear();
        let text = cleared.to_str().expect("ascii");
        assert!(
            text.contains("Max-Age=0") && text.contains("HttpOnly"),
            "{text}"
        );
    }
}
