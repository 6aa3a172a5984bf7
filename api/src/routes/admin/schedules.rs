//! `GET /v1/admin/schedules`: each cron schedule's last and next fire and missed ticks, as the
//! schedulers recorded them.

use axum::{Json, extract::State};
use kiln_core::db;
use serde_json::{Value, json};

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    state::AppState,
};

/// Lists the schedules by name.
#[utoipa::path(get, path = "/v1/admin/schedules", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The cron schedules, by name", body = crate::openapi::schemas::ScheduleList),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(scope::ADMIN)?;
    let schedules: Vec<Value> = db::schedules::list(&state.db)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "cron": s.cron,
                "kind": s.kind,
                "missed_policy": s.missed_policy,
                "last_fire": s.last_tick,
                "next_fire": s.next_tick,
                "missed_ticks": s.missed_ticks,
                "updated_at": s.updated_at,
            })
        })
        .collect();
    Ok(Json(json!({ "schedules": schedules })))
}
