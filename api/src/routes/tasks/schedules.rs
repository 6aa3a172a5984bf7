//! `/v1/schedules` (scope `tasks`): recurring tasks. Each tick of a tenant's cron schedule makes
//! one task, exactly once however many schedulers run (see `kiln_core::db::task_schedules`).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use kiln_core::db::{
    self,
    task_schedules::{self, TaskSchedule},
    tasks::TaskTemplate,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::validate::{TaskRequest, check};
use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::{ApiJson, ApiPath},
    state::AppState,
};

/// The most schedules a tenant may have.
pub const MAX_SCHEDULES: i64 = 100;

/// A recurring task.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "nightly-report", "cron": "0 3 * * *", "task": {"url": "https://app.example.com/jobs/report"}}))]
pub struct TaskScheduleRequest {
    /// Unique in the tenant: 1 to 64 of `[a-z0-9_-]`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: String,
    /// Five fields (minute hour day month weekday), UTC: at most once a minute.
    pub cron: String,
    /// The task each tick makes, as `POST /v1/tasks` takes it, without `run_at`, `delay_secs`
    /// or `dedupe_key` (each tick is due at its time and made once).
    pub task: TaskRequest,
}

/// The tenant's schedules.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskScheduleList {
    pub schedules: Vec<TaskSchedule>,
}

/// Makes a schedule: 201 with its next tick.
#[utoipa::path(post, path = "/v1/schedules", tag = "tasks", security(("bearer" = [])),
    request_body(content = TaskScheduleRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The schedule", body = TaskSchedule),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
        (status = 409, description = "`schedule_exists`: the name is taken; `too_many_schedules`: the tenant has 100", body = crate::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with error.fields), `invalid_body`", body = crate::openapi::ErrorBody),
    ))]
pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<TaskScheduleRequest>,
) -> Result<Response, ApiError> {
    caller.require(scope::TASKS)?;
    let mut fields = Map::new();
    if !super::validate::queue_name_ok(&request.name) {
        fields.insert(
            "name".into(),
            json!("1 to 64 of [a-z0-9_-], starting with one of [a-z0-9]"),
        );
    }
    let cron = task_schedules::parse(&request.cron);
    if let Err(error) = &cron {
        fields.insert("cron".into(), json!(format!("five fields, UTC: {error}")));
    }
    let task = request.task;
    for (field, given) in [
        ("run_at", task.run_at.is_some()),
        ("delay_secs", task.delay_secs.is_some()),
        ("dedupe_key", task.dedupe_key.is_some()),
    ] {
        if given {
            fields.insert(format!("task.{field}"), json!("not for a recurring task"));
        }
    }
    let checked = check(&state, task, "task.", &mut fields);
    let (Some(checked), Ok(cron)) = (checked, cron) else {
        return Err(ApiError::invalid_fields(fields));
    };
    if !fields.is_empty() {
        return Err(ApiError::invalid_fields(fields));
    }
    let Some(first) = task_schedules::next_tick(&cron, chrono::Utc::now()) else {
        fields.insert("cron".into(), json!("it never fires"));
        return Err(ApiError::invalid_fields(fields));
    };
    let mut tx = state.db.begin().await?;
    if task_schedules::count(&mut tx, &caller.tenant).await? >= MAX_SCHEDULES {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_schedules",
            format!("a tenant may have at most {MAX_SCHEDULES} schedules"),
        ));
    }
    let template = TaskTemplate {
        queue: checked.queue,
        url: checked.url,
        method: checked.method,
        headers: checked.headers,
        body: STANDARD.encode(&checked.body),
        max_attempts: checked.max_attempts,
        timeout_secs: checked.timeout_secs,
        min_backoff_ms: checked.min_backoff_ms,
        max_backoff_ms: checked.max_backoff_ms,
    };
    let made = task_schedules::insert(
        &mut *tx,
        &caller.tenant,
        &request.name,
        &request.cron,
        &template,
        first,
    )
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "schedule_exists",
            "this tenant has a schedule of that name",
        )
    })?;
    tx.commit().await?;
    tracing::info!(
        schedule = request.name,
        cron = request.cron,
        "recurring task scheduled"
    );
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

/// The tenant's schedules, by name.
#[utoipa::path(get, path = "/v1/schedules", tag = "tasks", security(("bearer" = [])),
    responses(
        (status = 200, description = "The schedules", body = TaskScheduleList),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
    ))]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TaskScheduleList>, ApiError> {
    caller.require(scope::TASKS)?;
    let schedules = task_schedules::list(&state.db, &caller.tenant).await?;
    Ok(Json(TaskScheduleList { schedules }))
}

/// Deletes a schedule; the tasks it made stay.
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "tasks", security(("bearer" = [])),
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: the key lacks the tasks scope", body = crate::openapi::ErrorBody),
        (status = 404, description = "`not_found`: no such schedule in this tenant", body = crate::openapi::ErrorBody),
    ))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require(scope::TASKS)?;
    if name.contains('\0') || !db::task_schedules::delete(&state.db, &caller.tenant, &name).await? {
        return Err(ApiError::not_found("schedule"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
