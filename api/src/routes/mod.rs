//! The router: one module per resource, one file per action.

mod admin;
mod dashboard;
mod emails;
mod health;
mod jobs;
pub mod media;
mod usage;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::StatusCode,
    routing::{delete, get, post},
};
use tower_http::trace::TraceLayer;

use crate::{error::ApiError, state::AppState};

/// Every route of the public API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/admin", get(dashboard::page))
        .route("/admin/login", post(dashboard::login))
        .route("/admin/logout", post(dashboard::logout))
        .route("/admin/data", get(dashboard::data))
        .route("/admin/assets/{name}", get(dashboard::asset))
        .route("/readyz", get(health::readyz))
        .route(
            "/v1/media",
            // The upload handler streams and counts the body itself, against
            // KILN_MAX_UPLOAD_BYTES, so axum's buffering limit does not apply.
            post(media::upload::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/media/{id}",
            get(media::get::get_media).delete(media::delete::delete_media),
        )
        .route(
            "/v1/media/{id}/variants/{file}",
            get(media::variant::get_variant),
        )
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/usage", get(usage::tenant))
        .route("/v1/admin/usage", get(usage::all))
        .route(
            "/v1/emails",
            post(emails::send::send_email).layer(DefaultBodyLimit::max(emails::BODY_LIMIT)),
        )
        .route("/v1/admin/jobs", get(admin::jobs::list))
        .route("/v1/admin/backups", get(admin::backups::list))
        .route("/v1/admin/schedules", get(admin::schedules::list))
        .route("/v1/admin/jobs/retry", post(admin::jobs::retry_matching))
        .route(
            "/v1/admin/jobs/discard",
            post(admin::jobs::discard_matching),
        )
        .route(
            "/v1/admin/keys",
            get(admin::keys::list).post(admin::keys::create),
        )
        .route("/v1/admin/keys/{id}/revoke", post(admin::keys::revoke))
        .route("/v1/admin/keys/{id}/rotate", post(admin::keys::rotate))
        .route("/v1/admin/queues", get(admin::queues::list))
        .route("/v1/admin/jobs/{id}/retry", post(admin::jobs::retry_one))
        .route("/v1/admin/jobs/{id}", delete(admin::jobs::discard))
        // Must follow every `.route`: it is installed on the routes that exist when called.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { ApiError::not_found("route") })
        // route_layer: runs after routing, so the matched path (the route template) is known.
        .route_layer(axum::middleware::from_fn(crate::http_metrics::record))
        .layer(axum::middleware::from_fn(crate::limits::headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::deadline::limit,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(crate::trace_layer::request_span))
        .layer(axum::middleware::from_fn(crate::trace_layer::propagate))
        .with_state(state)
}

/// A known path with the wrong method: the same JSON error as everything else (axum still adds
/// the `Allow` header).
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this resource; see the Allow header",
    )
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// The router over lazy connections: enough for answers that need no backend. The
    /// storage directory lives as long as the returned guard.
    fn app() -> (Router, tempfile::TempDir) {
        let storage = tempfile::tempdir().expect("temp dir");
        let path = storage.path().display().to_string();
        let config = kiln_core::Config::from_lookup(|name| {
            (name == "KILN_STORAGE_URL").then(|| path.clone())
        })
        .expect("default configuration");
        let router = router(crate::startup::build_state(config).expect("lazy state"));
        (router, storage)
    }

    #[tokio::test]
    async fn a_wrong_method_is_a_json_405_with_allow() {
        let request = Request::post(format!("/v1/jobs/{}", uuid::Uuid::now_v7()))
            .body(Body::empty())
            .expect("request");
        let (app, _storage) = app();
        let response = app.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let allow = response.headers().get(axum::http::header::ALLOW);
        assert!(
            allow.is_some_and(|a| a.as_bytes().starts_with(b"GET")),
            "{allow:?}"
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
}
