//! `GET /admin/data?range=hour|day`: everything the dashboard shows, in one JSON document.

use axum::{Json, extract::State};
use chrono::Utc;
use kiln_core::db;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiQuery,
    routes::{admin::queues, health},
    state::AppState,
};

/// How far back the charts go.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Range {
    #[default]
    Hour,
    Day,
}

#[derive(Debug, Deserialize)]
pub struct DataQuery {
    #[serde(default)]
    range: Range,
}

/// Recent failures and dead jobs shown.
const LIST_LIMIT: i64 = 50;

/// The dashboard's numbers, for an admin (session cookie or bearer key).
pub async fn data(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DataQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(scope::ADMIN)?;
    let now = Utc::now();
    let since = now
        - match query.range {
            Range::Hour => chrono::Duration::hours(1),
            Range::Day => chrono::Duration::days(1),
        };
    let (health_status, health) = health::dependencies(&state).await;
    let (queues, broker_reachable) = queues::live(&state).await?;
    let outbox = db::stats::outbox_backlog(&state.db).await?;
    let samples = db::stats::samples(&state.db, since).await?;
    let failures = db::jobs::recent_failures(&state.db, LIST_LIMIT).await?;
    let dead = db::jobs::list(
        &state.db,
        &db::jobs::JobFilter {
            status: Some("dead".into()),
            kind: None,
        },
        LIST_LIMIT,
        false,
    )
    .await?;
    let workers = db::workers::list_alive(&state.db, state.config.heartbeat_timeout).await?;
    let schedules = db::schedules::list(&state.db).await?;
    let backups = db::backups::list(&state.db).await?;
    let usage = crate::routes::usage::dashboard_panel(&state).await?;
    let endpoints = db::webhooks::list_all_endpoints(&state.db, LIST_LIMIT).await?;
    let webhooks = crate::routes::webhooks::EndpointList::of(&state, endpoints).await?;
    let task_queues = db::tasks::queue_stats(&state.db).await?;
    let job = |j: &db::jobs::Job| {
        json!({
            "id": j.id, "kind": j.kind, "status": j.status, "tenant": j.tenant,
            "attempts": j.attempts, "max_attempts": j.max_attempts, "last_error": j.last_error,
            "created_at": j.created_at, "finished_at": j.finished_at,
        })
    };
    Ok(Json(json!({
        "generated_at": now,
        "health": { "status": health_status, "checks": health },
        "broker_reachable": broker_reachable,
        "queues": queues,
        "outbox": outbox,
        "samples": samples,
        "failures": failures.iter().map(job).collect::<Vec<_>>(),
        "dead": dead.iter().map(job).collect::<Vec<_>>(),
        "workers": workers.iter().map(|w| json!({
            "id": w.id, "host": w.host, "pid": w.pid, "queues": w.queues,
            "started_at": w.started_at, "heartbeat_at": w.heartbeat_at, "running": w.running,
        })).collect::<Vec<_>>(),
        "usage": usage,
        "webhooks": webhooks.endpoints,
        "task_queues": task_queues,
        "schedules": schedules,
        "backups": {
            "last_good": backups.first(),
            "count": backups.len(),
            "recent": backups.iter().take(10).collect::<Vec<_>>(),
        },
    })))
}
