//! Liveness and readiness.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = crate::openapi::schemas::Health)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness, with each dependency checked and reported. Only Postgres is required: without
/// Redis reads are slower, and without RabbitMQ uploads are still accepted (their jobs wait in
/// the outbox), so both only make the answer `degraded`.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Postgres is up (`ok`), or Redis or RabbitMQ is down (`degraded`: still serving)", body = crate::openapi::schemas::Readiness),
        (status = 503, description = "Postgres is down (`unavailable`)", body = crate::openapi::schemas::Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (status, mut checks) = dependencies(&state).await;
    // The public answer says up or down per dependency; why (an address, a driver's message) is
    // for operators: logged here, and the admin dashboard shows it.
    if let Some(checks) = checks.as_object_mut() {
        for (dependency, check) in checks.iter_mut() {
            let up = check["ok"] == true;
            metrics::gauge!("kiln_dependency_up", "dependency" => dependency.clone()).set(if up {
                1.0
            } else {
                0.0
            });
            if let Some(error) = check.as_object_mut().and_then(|c| c.remove("error")) {
                tracing::warn!(dependency, %error, "readiness check failed");
            }
        }
    }
    let code = if status == "unavailable" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(json!({ "status": status, "checks": checks })))
}

/// Checks Postgres, Redis and RabbitMQ at once: the overall status (`ok`, `degraded`,
/// `unavailable`) and each one's report.
pub async fn dependencies(state: &AppState) -> (&'static str, Value) {
    let postgres = async {
        sqlx::query("SELECT 1")
            .execute(&state.db)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let redis = async { state.cache.ping().await.map_err(|e| e.to_string()) };
    let rabbitmq = async { state.publisher.check().await.map_err(|e| e.to_string()) };
    let (postgres, redis, rabbitmq) = tokio::join!(
        with_timeout(postgres),
        with_timeout(redis),
        with_timeout(rabbitmq)
    );
    let status = match (&postgres, &redis, &rabbitmq) {
        (Err(_), _, _) => "unavailable",
        (Ok(()), Ok(()), Ok(())) => "ok",
        _ => "degraded",
    };
    let checks = json!({
        "postgres": report(&postgres),
        "redis": report(&redis),
        "rabbitmq": report(&rabbitmq),
    });
    (status, checks)
}

async fn with_timeout(check: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

fn report(result: &Result<(), String>) -> Value {
    match result {
        Ok(()) => json!({ "ok": true }),
        Err(error) => json!({ "ok": false, "error": error }),
    }
}
