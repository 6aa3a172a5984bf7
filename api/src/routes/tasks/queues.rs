//! `/v1/task-queues`: a tenant's named queues, their limits (rate, burst, concurrency, pause)
//! and the secret that signs their tasks. A queue a task names is made with no limits.

use axum::{Json, extract::State};
use kiln_core::{
    db::{self, tasks::TaskQueue},
    delivery::signing,
};
use serde::{Deserialize, Serialize};

use super::validate::queue_name_ok;
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiJson, ApiPath},
    state::AppState,
};

/// A queue's limits; absent ones are off.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskQueueRequest {
    /// Tasks sent per second at most (absent: no rate limit).
    #[schema(minimum = 0.001, maximum = 100000)]
    pub rate_per_sec: Option<f64>,
    /// How many may be sent at once after a quiet spell (1 by default).
    #[schema(minimum = 1, maximum = 100000)]
    pub burst: Option<i32>,
    /// Tasks sent and not yet finished at most (absent: no limit).
    #[schema(minimum = 1, maximum = 100000)]
    pub max_concurrent: Option<i32>,
    /// A paused queue's tasks wait (in Postgres) until it is resumed.
    pub paused: Option<bool>,
}

/// The tenant's queues.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskQueueList {
    pub queues: Vec<TaskQueue>,
}

/// A queue's signing secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskQueueSecret {
    /// `whsec_` + base64: verify each task request's `webhook-signature` with it.
    pub secret: String,
}

/// Creates a queue or replaces its limits. The limits hold across every worker and scheduler
/// and survive any restart: they are applied in Postgres when tasks are sent.
#[utoipa::path(put, path = "/v1/task-queues/{name}", tag = "tasks", security(("bearer" = [])),
    params(("name" = String, Path, description = "The queue's name: [a-z0-9][a-z0-9_-]{0,63}")),
    request_body(content = TaskQueueRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The queue", body = TaskQueue),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: not a queue name", body = crate::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with error.fields), `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn put_queue(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<TaskQueueRequest>,
) -> Result<Json<TaskQueue>, ApiError> {
    caller.require(scope::TASKS)?;
    if !queue_name_ok(&name) {
        return Err(ApiError::not_found("task queue"));
    }
    let mut fields = serde_json::Map::new();
    if request
        .rate_per_sec
        .is_some_and(|r| !(0.001..=100_000.0).contains(&r))
    {
        fields.insert("rate_per_sec".into(), "0.001 to 100000".into());
    }
    for (field, value) in [
        ("burst", request.burst),
        ("max_concurrent", request.max_concurrent),
    ] {
        if value.is_some_and(|n| !(1..=100_000).contains(&n)) {
            fields.insert(field.into(), "1 to 100000".into());
        }
    }
    if !fields.is_empty() {
        return Err(ApiError::invalid_fields(fields));
    }
    let settings = db::tasks::QueueSettings {
        rate_per_sec: request.rate_per_sec,
        burst: request.burst.unwrap_or(1),
        max_concurrent: request.max_concurrent,
        paused: request.paused.unwrap_or(false),
    };
    let queue = db::tasks::put_queue(
        &state.db,
        &caller.tenant,
        &name,
        &settings,
        &signing::new_secret(),
    )
    .await?;
    tracing::info!(queue = name, paused = queue.paused, "task queue set");
    Ok(Json(queue))
}

/// The tenant's queues, by name.
#[utoipa::path(get, path = "/v1/task-queues", tag = "tasks", security(("bearer" = [])),
    responses(
        (status = 200, description = "The queues", body = TaskQueueList),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
    ))]
pub async fn list_queues(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TaskQueueList>, ApiError> {
    caller.require(scope::TASKS)?;
    let queues = db::tasks::list_queues(&state.db, &caller.tenant).await?;
    Ok(Json(TaskQueueList { queues }))
}

/// The secret that signs a queue's task requests (Standard Webhooks, as webhook deliveries).
#[utoipa::path(get, path = "/v1/task-queues/{name}/secret", tag = "tasks", security(("bearer" = [])),
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "The secret", body = TaskQueueSecret),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such queue in this tenant", body = crate::openapi::ErrorBody),
    ))]
pub async fn queue_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<TaskQueueSecret>, ApiError> {
    caller.require(scope::TASKS)?;
    if !queue_name_ok(&name) {
        return Err(ApiError::not_found("task queue"));
    }
    let secret = db::tasks::queue_secret(&state.db, &caller.tenant, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("task queue"))?;
    Ok(Json(TaskQueueSecret { secret }))
}
