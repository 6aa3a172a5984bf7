//! `POST /v1/tasks` (one) and `POST /v1/tasks/batch` (up to 1,000 in one transaction).

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use kiln_core::db::tasks::Task;
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::{
    insert_all,
    validate::{TaskRequest, check},
};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiJson,
    state::AppState,
    trace_layer::JobTrace,
};

/// The most tasks in one batch.
pub const MAX_BATCH: usize = 1000;

/// Accepts a task: 202 with it, or 200 with the task a repeat of its `dedupe_key` made first.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", security(("bearer" = [])),
    request_body(content = TaskRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: the task waits for its time and its queue", body = Task,
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 200, description = "A repeat of a dedupe_key: the task it made first", body = Task),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
        (status = 413, description = "`payload_too_large`: the request is over 2 MiB", body = crate::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with error.fields), `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    JobTrace(trace): JobTrace,
    ApiJson(request): ApiJson<TaskRequest>,
) -> Result<Response, ApiError> {
    caller.require(scope::TASKS)?;
    let mut fields = Map::new();
    let Some(task) = check(&state, request, "", &mut fields) else {
        return Err(ApiError::invalid_fields(fields));
    };
    let mut made = insert_all(&state, &caller, trace, vec![task]).await?;
    let (task, new) = made
        .pop()
        .ok_or_else(|| ApiError::internal("no task was made"))?;
    if !new {
        return Ok((StatusCode::OK, Json(task)).into_response());
    }
    tracing::info!(task.id = %task.id, queue = task.queue, "task accepted");
    let location =
        HeaderValue::from_str(&format!("/v1/tasks/{}", task.id)).map_err(ApiError::internal)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(task),
    )
        .into_response())
}

/// Up to 1,000 tasks.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBatch {
    #[schema(min_items = 1, max_items = 1000)]
    pub tasks: Vec<TaskRequest>,
}

/// The batch's tasks, in order (a repeat of a dedupe_key: the task it made first).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
}

/// Accepts up to 1,000 tasks in one transaction: all of them, or (422) none.
#[utoipa::path(post, path = "/v1/tasks/batch", tag = "tasks", security(("bearer" = [])),
    request_body(content = TaskBatch, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted, in order", body = TaskList),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
        (status = 413, description = "`payload_too_large`: the request is over 64 MiB", body = crate::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (error.fields by `tasks[i].field`), `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn create_batch(
    State(state): State<AppState>,
    caller: Caller,
    JobTrace(trace): JobTrace,
    ApiJson(batch): ApiJson<TaskBatch>,
) -> Result<Response, ApiError> {
    caller.require(scope::TASKS)?;
    let mut fields = Map::new();
    if batch.tasks.is_empty() || batch.tasks.len() > MAX_BATCH {
        fields.insert("tasks".into(), format!("1 to {MAX_BATCH} tasks").into());
        return Err(ApiError::invalid_fields(fields));
    }
    let checked: Vec<_> = batch
        .tasks
        .into_iter()
        .enumerate()
        .filter_map(|(i, request)| check(&state, request, &format!("tasks[{i}]."), &mut fields))
        .collect();
    if !fields.is_empty() {
        return Err(ApiError::invalid_fields(fields));
    }
    let made = insert_all(&state, &caller, trace, checked).await?;
    tracing::info!(tasks = made.len(), "task batch accepted");
    let tasks = made.into_iter().map(|(task, _)| task).collect();
    Ok((StatusCode::ACCEPTED, Json(TaskList { tasks })).into_response())
}
