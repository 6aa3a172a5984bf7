//! `POST /v1/upload-tokens`: a short-lived token, bound to the tenant and good for one upload,
//! with the limits the app chose. The browser holds it instead of an API key.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use kiln_core::db;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiJson,
    state::AppState,
};

/// The prefix of every upload token (API keys start with `kiln_`).
pub const TOKEN_PREFIX: &str = "kut_";

/// Image types an upload may be, by their bytes: a token's default.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "image/gif"];
/// Every type a token may name: the images and, when the app asks, videos.
const ACCEPTED_TYPES: [&str; 7] = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "video/mp4",
    "video/quicktime",
    "video/webm",
];

/// What the app allows the upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUploadToken {
    /// The largest upload allowed, in bytes (default: KILN_MAX_UPLOAD_BYTES, or
    /// KILN_VIDEO_MAX_UPLOAD_BYTES when `content_types` names a video; at most the larger of
    /// the two: each type is still held to its own limit).
    #[schema(minimum = 1)]
    pub max_bytes: Option<u64>,
    /// Types the upload may be, judged by its bytes (default: every image type Kiln takes;
    /// name `video/mp4`, `video/quicktime` or `video/webm` to allow videos).
    pub content_types: Option<Vec<String>>,
    /// Metadata the media gets (string values, as for `PATCH /v1/media/{id}`).
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub metadata: Option<Map<String, Value>>,
    /// Seconds the token may be used to start its upload (default 900, at most
    /// KILN_UPLOAD_TOKEN_MAX_TTL_SECS). Once started, the upload may be resumed until it
    /// expires (KILN_TUS_EXPIRE_SECS).
    #[schema(minimum = 1)]
    pub expires_in: Option<u64>,
}

/// A token, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadTokenCreated {
    pub id: Uuid,
    /// `kut_...`: send as `Authorization: Bearer <token>` on the tus requests of one upload.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub max_bytes: u64,
    pub content_types: Vec<String>,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub metadata: Value,
}

/// Makes a token for one upload.
#[utoipa::path(post, path = "/v1/upload-tokens", tag = "uploads", security(("bearer" = [])),
    request_body = NewUploadToken,
    responses(
        (status = 201, description = "The token (shown once)", body = UploadTokenCreated),
        (status = 403, description = "`forbidden`: the key lacks the media scope", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_token_request`: a limit out of bounds or an unknown type; `invalid_metadata`; `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<NewUploadToken>,
) -> Result<Response, ApiError> {
    caller.require(scope::MEDIA)?;
    let invalid = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_token_request",
            message,
        )
    };
    let limit = state.config.largest_upload();
    let content_types = match request.content_types {
        None => IMAGE_TYPES.map(str::to_owned).to_vec(),
        Some(types) if types.is_empty() => {
            return Err(invalid("content_types must name at least one type".into()));
        }
        Some(types) => {
            if let Some(unknown) = types.iter().find(|t| !ACCEPTED_TYPES.contains(&t.as_str())) {
                return Err(invalid(format!(
                    "{unknown:?} is not one of {}",
                    ACCEPTED_TYPES.join(", ")
                )));
            }
            types
        }
    };
    // By default the largest its types may be: the video limit once it allows a video.
    let default_max = if content_types.iter().any(|t| t.starts_with("video/")) {
        state.config.video.max_upload_bytes
    } else {
        state.config.max_upload_bytes
    };
    let max_bytes = request.max_bytes.unwrap_or(default_max);
    if !(1..=limit).contains(&max_bytes) {
        return Err(invalid(format!(
            "max_bytes {max_bytes} is outside 1..={limit}"
        )));
    }
    let metadata = request.metadata.unwrap_or_default();
    crate::routes::media::metadata::check_patch(&metadata)?;
    let metadata: Map<String, Value> = metadata.into_iter().filter(|(_, v)| !v.is_null()).collect();
    let most = state.config.browser_uploads.token_max_ttl.as_secs();
    let expires_in = request.expires_in.unwrap_or(900.min(most));
    if !(1..=most).contains(&expires_in) {
        return Err(invalid(format!(
            "expires_in {expires_in} is outside 1..={most}"
        )));
    }
    let expires_at = Utc::now() + chrono::Duration::seconds(expires_in as i64);

    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let id = Uuid::now_v7();
    let metadata = Value::Object(metadata);
    db::tus::insert_token(
        &state.db,
        &db::tus::NewToken {
            id,
            token_hash: &crate::auth::hash_key(&token),
            tenant: &caller.tenant,
            api_key_id: caller.key_id,
            max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
            content_types: &content_types,
            metadata: &metadata,
            expires_at,
        },
    )
    .await?;
    tracing::info!(token.id = %id, tenant = %caller.tenant, "upload token made");
    let created = UploadTokenCreated {
        id,
        token,
        expires_at,
        max_bytes,
        content_types,
        metadata,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}
