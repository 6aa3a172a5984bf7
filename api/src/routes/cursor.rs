//! Opaque list cursors: the last id of a page, base64url-encoded. Lists are ordered by their
//! time-ordered (v7) ids, newest first, and the next page starts below the cursor, so an item
//! committed before the first page was asked for appears exactly once and none ever twice.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::error::ApiError;

/// The cursor that continues after `last`.
pub fn encode(last: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(last.as_bytes())
}

/// The id a cursor continues after; 422 `invalid_cursor` for anything not made by [`encode`].
pub fn decode(cursor: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_cursor",
                "the cursor is not one this API handed out",
            )
        })
}

/// The page size: 50 unless `limit` says otherwise, within 1..=100.
pub fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(limit @ 1..=100) => Ok(limit),
        Some(other) => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_filter",
            format!("limit {other} is outside 1..=100"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cursor_round_trips_and_junk_is_refused() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(super::decode(&super::encode(id)).expect("valid"), id);
        assert!(super::decode("nope").is_err());
        assert!(super::decode("").is_err());
    }
}
