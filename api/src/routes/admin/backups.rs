//! `GET /v1/admin/backups`: the stored backups, newest first.

use axum::{Json, extract::State};
use kiln_core::db;
use serde_json::{Value, json};

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    state::AppState,
};

/// Lists backups with size, checksum, duration and server version.
#[utoipa::path(get, path = "/v1/admin/backups", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored backups, newest first", body = crate::openapi::schemas::BackupList),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(scope::ADMIN)?;
    let backups = db::backups::list(&state.db).await?;
    Ok(Json(json!({ "backups": backups })))
}
