//! `GET /v1/tasks/{id}` and `DELETE /v1/tasks/{id}` (cancel, while it has not started).

use axum::{Json, extract::State, http::StatusCode};
use kiln_core::db::{self, tasks::Task};
use uuid::Uuid;

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiPath,
    state::AppState,
};

/// A task: where it is, its attempts, and its last answer.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such task in this tenant", body = crate::openapi::ErrorBody),
    ))]
pub async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Task>, ApiError> {
    caller.require(scope::TASKS)?;
    db::tasks::find(&state.db, id, &caller.tenant)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("task"))
}

/// Cancels a task that has not started: it is never sent.
#[utoipa::path(delete, path = "/v1/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "Cancelled", body = Task),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such task in this tenant", body = crate::openapi::ErrorBody),
        (status = 409, description = "`task_started`: an attempt has started (or it ended)", body = crate::openapi::ErrorBody),
    ))]
pub async fn cancel_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Task>, ApiError> {
    caller.require(scope::TASKS)?;
    let mut tx = state.db.begin().await?;
    let cancelled = db::tasks::cancel(&mut tx, id, &caller.tenant).await?;
    tx.commit().await?;
    if let Some(task) = cancelled {
        tracing::info!(task.id = %id, "task cancelled");
        return Ok(Json(task));
    }
    match db::tasks::find(&state.db, id, &caller.tenant).await? {
        None => Err(ApiError::not_found("task")),
        Some(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "task_started",
            "the task has started (or ended): it can no longer be cancelled",
        )),
    }
}
