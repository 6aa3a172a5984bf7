//! `GET /v1/media`: the tenant's media, newest first, a page at a time, filtered by status,
//! creation time and app metadata.

use axum::{
    extract::{RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use kiln_core::{db, views::MediaView};
use serde_json::{Map, Value};

use super::{get::url_mode, metadata, sign::sign_view};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    routes::cursor,
    state::AppState,
};

/// `GET /v1/media`'s query (documented; `metadata.<key>=<value>` filters come on top).
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct MediaListQuery {
    /// Only media in this state.
    #[param(inline, value_type = Option<String>, pattern = "^(pending|processing|ready|failed)$")]
    status: Option<String>,
    /// Only media created after this instant (RFC 3339).
    created_after: Option<chrono::DateTime<chrono::Utc>>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Only media whose metadata has these values: `metadata[contact]=42` (or
    /// `metadata.contact=42`); several must all match.
    #[param(style = DeepObject, explode, value_type = Option<std::collections::HashMap<String, String>>)]
    metadata: Option<String>,
    /// Seconds the signed variant URLs work, as for `GET /v1/media/{id}`.
    #[param(minimum = 1)]
    url_ttl: Option<u64>,
}

/// A page of media.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct MediaPage {
    items: Vec<MediaView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// Most metadata filters one list may carry.
const MAX_METADATA_FILTERS: usize = 10;

/// Lists the tenant's media (never deleted ones), newest first.
#[utoipa::path(get, path = "/v1/media", tag = "media", security(("bearer" = [])),
    params(MediaListQuery),
    responses(
        (status = 200, description = "A page of media, newest first, with signed variant URLs", body = MediaPage),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_filter`, `invalid_cursor`, `invalid_url_ttl`", body = crate::openapi::ErrorBody),
    ))]
pub async fn list_media(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    caller.require(scope::MEDIA)?;
    let parsed = Parsed::from_query(query.as_deref().unwrap_or_default())?;
    let mode = url_mode(&state, &caller.tenant, parsed.url_ttl).await?;
    let limit = cursor::page_size(parsed.limit)?;
    let filter = db::media::MediaFilter {
        status: parsed.status.as_deref(),
        created_after: parsed.created_after,
        before: parsed.cursor,
        metadata: (!parsed.metadata.is_empty()).then(|| Value::Object(parsed.metadata.clone())),
    };
    let media = db::media::list(&state.db, &caller.tenant, &filter, limit).await?;
    let ids: Vec<_> = media.iter().map(|m| m.id).collect();
    let mut variants = db::media::variants_of(&state.db, &ids).await?;
    let now = chrono::Utc::now().timestamp();
    let mut body = String::from("{\"items\":[");
    for (i, item) in media.iter().enumerate() {
        let own: Vec<_> = variants
            .iter()
            .filter(|(id, _)| *id == item.id)
            .map(|(_, v)| v.clone())
            .collect();
        variants.retain(|(id, _)| *id != item.id);
        let view =
            serde_json::to_string(&MediaView::build(item, &own)).map_err(ApiError::internal)?;
        if i > 0 {
            body.push(',');
        }
        body.push_str(&sign_view(&view, &state.signer, mode, now));
    }
    body.push_str("],\"next_cursor\":");
    match media.last() {
        Some(last) if media.len() as i64 == limit => {
            body.push_str(&Value::String(cursor::encode(last.id)).to_string());
        }
        _ => body.push_str("null"),
    }
    body.push('}');
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The query, read by hand: `metadata.<key>` names are open-ended.
#[derive(Debug, Default)]
struct Parsed {
    status: Option<String>,
    created_after: Option<chrono::DateTime<chrono::Utc>>,
    cursor: Option<uuid::Uuid>,
    limit: Option<i64>,
    url_ttl: Option<u64>,
    metadata: Map<String, Value>,
}

impl Parsed {
    fn from_query(query: &str) -> Result<Self, ApiError> {
        let mut parsed = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            match name.as_ref() {
                "status" => match value.as_str() {
                    "pending" | "processing" | "ready" | "failed" => parsed.status = Some(value),
                    other => {
                        return Err(invalid(format!(
                            "status {other:?} is not pending, processing, ready or failed"
                        )));
                    }
                },
                "created_after" => {
                    let at = chrono::DateTime::parse_from_rfc3339(&value).map_err(|e| {
                        invalid(format!("created_after {value:?} is not RFC 3339: {e}"))
                    })?;
                    parsed.created_after = Some(at.to_utc());
                }
                "cursor" => parsed.cursor = Some(cursor::decode(&value)?),
                "limit" => {
                    parsed.limit = Some(
                        value
                            .parse()
                            .map_err(|_| invalid(format!("limit {value:?} is not a number")))?,
                    );
                }
                "url_ttl" => {
                    parsed.url_ttl = Some(
                        value
                            .parse()
                            .map_err(|_| invalid(format!("url_ttl {value:?} is not a number")))?,
                    );
                }
                other => {
                    let key = other
                        .strip_prefix("metadata.")
                        .or_else(|| {
                            other
                                .strip_prefix("metadata[")
                                .and_then(|k| k.strip_suffix(']'))
                        })
                        .ok_or_else(|| invalid(format!("unknown parameter {other:?}")))?;
                    if !metadata::valid_key(key) {
                        return Err(invalid(format!("metadata key {key:?} is not a valid key")));
                    }
                    if !metadata::valid_value(&value) {
                        return Err(invalid(format!(
                            "metadata.{key}: values are at most 500 characters, without control \
                             characters"
                        )));
                    }
                    parsed.metadata.insert(key.to_owned(), Value::String(value));
                    if parsed.metadata.len() > MAX_METADATA_FILTERS {
                        return Err(invalid(format!(
                            "at most {MAX_METADATA_FILTERS} metadata filters"
                        )));
                    }
                }
            }
        }
        Ok(parsed)
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter", message)
}

#[cfg(test)]
mod tests {
    use super::Parsed;

    #[test]
    fn metadata_filters_take_both_spellings_and_unknown_parameters_are_refused() {
        let parsed = Parsed::from_query("metadata.contact=42&metadata%5Brole%5D=avatar&limit=5")
            .expect("valid");
        assert_eq!(parsed.metadata["contact"], "42");
        assert_eq!(parsed.metadata["role"], "avatar");
        assert_eq!(parsed.limit, Some(5));
        assert!(Parsed::from_query("colour=red").is_err());
        assert!(Parsed::from_query("status=deleted").is_err());
        assert!(Parsed::from_query("metadata.a%20b=1").is_err());
        assert!(Parsed::from_query("created_after=yesterday").is_err());
        assert!(Parsed::from_query("metadata.contact=%00").is_err());
    }
}
