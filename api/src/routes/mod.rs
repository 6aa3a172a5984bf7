//! The router: one module per resource, one file per action.

pub(crate) mod admin;
pub(crate) mod cursor;
mod dashboard;
mod emails;
mod health;
mod jobs;
pub mod media;
mod tasks;
mod uploads;
mod usage;
pub(crate) mod webhooks;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::StatusCode,
    routing::{get, post},
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

use crate::{error::ApiError, state::AppState};

/// The documented routes: the health checks and everything under `/v1`. Registered through
/// `utoipa_axum`, each with its `#[utoipa::path]`, so none is served without being documented.
pub fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes({
            // The upload handler streams and counts the body itself, against
            // KILN_MAX_UPLOAD_BYTES, so axum's buffering limit does not apply.
            let (schemas, paths, method) = routes!(media::upload::upload);
            (schemas, paths, method.layer(DefaultBodyLimit::disable()))
        })
        .routes(routes!(media::list::list_media))
        .routes(routes!(uploads::tokens::create_token))
        .routes({
            // Bodies are streamed into storage chunk by chunk, bounded by Upload-Length.
            let (schemas, paths, method) = routes!(uploads::tus::create, uploads::tus::discover);
            (schemas, paths, method.layer(DefaultBodyLimit::disable()))
        })
        .routes({
            let (schemas, paths, method) = routes!(
                uploads::tus::head,
                uploads::tus::patch,
                uploads::tus::terminate
            );
            (schemas, paths, method.layer(DefaultBodyLimit::disable()))
        })
        .routes(routes!(
            media::get::get_media,
            media::patch::patch_media,
            media::delete::delete_media
        ))
        .routes(routes!(media::variant::get_variant))
        .routes(routes!(
            media::settings::get_settings,
            media::settings::put_settings
        ))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(usage::tenant))
        .routes({
            let (schemas, paths, method) = routes!(emails::send::send_email);
            let limit = DefaultBodyLimit::max(emails::BODY_LIMIT);
            (schemas, paths, method.layer(limit))
        })
        .routes(routes!(
            webhooks::create::create_endpoint,
            webhooks::manage::list_endpoints
        ))
        .routes(routes!(
            webhooks::manage::get_endpoint,
            webhooks::manage::update_endpoint,
            webhooks::manage::delete_endpoint
        ))
        .routes(routes!(webhooks::manage::rotate_secret))
        .routes(routes!(webhooks::deliveries::list_deliveries))
        .routes(routes!(webhooks::deliveries::retry_delivery))
        .routes(routes!(webhooks::deliveries::replay_failed))
        .routes({
            let (schemas, paths, method) = routes!(tasks::create::create_task);
            (schemas, paths, method.layer(DefaultBodyLimit::max(2 << 20)))
        })
        .routes({
            let (schemas, paths, method) = routes!(tasks::create::create_batch);
            (
                schemas,
                paths,
                method.layer(DefaultBodyLimit::max(64 << 20)),
            )
        })
        .routes(routes!(tasks::manage::get_task, tasks::manage::cancel_task))
        .routes(routes!(tasks::queues::list_queues))
        .routes(routes!(tasks::queues::put_queue))
        .routes(routes!(tasks::queues::queue_secret))
        .routes(routes!(
            tasks::schedules::create_schedule,
            tasks::schedules::list_schedules
        ))
        .routes(routes!(tasks::schedules::delete_schedule))
        .routes(routes!(usage::all))
        .routes(routes!(admin::jobs::list))
        .routes(routes!(admin::backups::list))
        .routes(routes!(admin::schedules::list))
        .routes(routes!(admin::jobs::retry_matching))
        .routes(routes!(admin::jobs::discard_matching))
        .routes(routes!(admin::queues::list))
        .routes(routes!(admin::keys::list, admin::keys::create))
        .routes(routes!(admin::keys::revoke))
        .routes(routes!(admin::keys::rotate))
        .routes(routes!(admin::webhooks::list))
        .routes(routes!(admin::webhooks::replay))
        .routes(routes!(admin::jobs::retry_one))
        .routes(routes!(admin::jobs::discard))
}

/// Every route: the documented ones, the document itself (`/v1/openapi.json`) and its reference
/// page (`/docs`, Swagger UI built into the binary), and the operators' dashboard (a page of
/// its own, left out of the document).
pub fn router(state: AppState) -> Router {
    let (documented, mut openapi) = documented_routes().split_for_parts();
    crate::openapi::finish(&mut openapi);
    Router::new()
        .merge(documented)
        .merge(SwaggerUi::new("/docs").url("/v1/openapi.json", openapi))
        .route("/admin", get(dashboard::page))
        .route("/admin/login", post(dashboard::login))
        .route("/admin/logout", post(dashboard::logout))
        .route("/admin/data", get(dashboard::data))
        .route("/admin/assets/{name}", get(dashboard::asset))
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
        .layer(crate::cors::layer(
            &state.config.browser_uploads.cors_origins,
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
