//! `GET /v1/admin/queues`: each queue now — depth and consumers from the broker, in flight,
//! retrying and dead from Postgres, live workers and the oldest live job, and the last five
//! minutes' rates, latencies and failure rate. The dashboard shows the same numbers.

use axum::{Json, extract::State};
use chrono::Utc;
use kiln_core::{
    db,
    jobs::{JobKind, kind_queue_names},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    state::AppState,
};

/// The window rates and percentiles are computed over.
const WINDOW_MINUTES: i64 = 5;

/// One queue, now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    pub queue: String,
    /// From the broker; `None` while it cannot be reached.
    pub ready: Option<u32>,
    pub consumers: Option<u32>,
    pub in_flight: i64,
    pub retrying: i64,
    /// Dead jobs kept for operators.
    pub dead: i64,
    pub rate_in_per_min: f64,
    pub rate_out_per_min: f64,
    /// Of the jobs that finished in the window, the share that died.
    pub failure_rate: Option<f64>,
    pub duration_p50_ms: Option<f64>,
    pub duration_p95_ms: Option<f64>,
    pub wait_p50_ms: Option<f64>,
    pub wait_p95_ms: Option<f64>,
    /// Workers consuming the queue whose heartbeat is fresh.
    pub workers_alive: i64,
    /// Age of the queue's oldest queued, running or failed job; `None` when it has none.
    pub oldest_live_age_seconds: Option<f64>,
    /// The video queue's video seconds transcoded per ffmpeg CPU second in the window; `null`
    /// for other queues or without transcodes.
    pub realtime_factor: Option<f64>,
}

/// Every queue's view, and whether the broker answered.
pub async fn live(state: &AppState) -> Result<(Vec<QueueView>, bool), ApiError> {
    let kinds = kind_queue_names();
    let now = Utc::now();
    let since = now - chrono::Duration::minutes(WINDOW_MINUTES);
    let activity = db::stats::queue_activity(&state.db, &kinds, since, now).await?;
    let dead = db::stats::dead_by_kind(&state.db).await?;
    let workers = db::workers::alive_by_queue(&state.db, state.config.heartbeat_timeout).await?;
    let oldest = db::rescue::oldest_live_by_kind(&state.db).await?;
    let realtime_factor = db::stats::video_realtime_factor(&state.db, since).await?;
    let broker = match state.publisher.queue_stats().await {
        Ok(stats) => Some(stats),
        Err(error) => {
            tracing::debug!(%error, "queue depths unavailable");
            None
        }
    };
    let minutes = WINDOW_MINUTES as f64;
    let views = activity
        .into_iter()
        .map(|a| {
            let depth = broker
                .as_ref()
                .and_then(|b| b.iter().find(|q| q.queue == a.queue));
            let dead_now = dead
                .iter()
                .filter(|(kind, _)| kinds.iter().any(|(k, q)| k == kind && *q == a.queue))
                .map(|(_, n)| n)
                .sum();
            let finished = a.succeeded + a.dead;
            let oldest_live_age_seconds = oldest
                .iter()
                .filter(|(kind, _)| kinds.iter().any(|(k, q)| k == kind && *q == a.queue))
                .map(|(_, age)| *age)
                .reduce(f64::max);
            let workers_alive = workers
                .iter()
                .find(|w| w.queue == a.queue)
                .map_or(0, |w| w.workers);
            QueueView {
                ready: depth.map(|q| q.ready),
                consumers: depth.map(|q| q.consumers),
                in_flight: a.in_flight,
                retrying: a.retrying,
                dead: dead_now,
                rate_in_per_min: a.enqueued as f64 / minutes,
                rate_out_per_min: finished as f64 / minutes,
                failure_rate: (finished > 0).then(|| a.dead as f64 / finished as f64),
                duration_p50_ms: a.duration_p50_ms,
                duration_p95_ms: a.duration_p95_ms,
                wait_p50_ms: a.wait_p50_ms,
                wait_p95_ms: a.wait_p95_ms,
                workers_alive,
                oldest_live_age_seconds,
                realtime_factor: realtime_factor
                    .filter(|_| a.queue == JobKind::Video.queue().as_str()),
                queue: a.queue,
            }
        })
        .collect();
    Ok((views, broker.is_some()))
}

/// Lists the queues.
#[utoipa::path(get, path = "/v1/admin/queues", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "Each queue now, and the last minutes' rates", body = crate::openapi::schemas::QueueList),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(scope::ADMIN)?;
    let (queues, broker_ok) = live(&state).await?;
    Ok(Json(json!({
        "window_minutes": WINDOW_MINUTES,
        "broker_reachable": broker_ok,
        "queues": queues,
    })))
}
