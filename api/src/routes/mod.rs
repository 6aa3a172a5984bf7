//! The router: one module per resource, one file per action.

mod admin;
mod health;
mod jobs;
pub mod media;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{delete, get, post},
};
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// Every route of the public API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/v1/media",
            // The upload handler streams and counts the body itself, against
            // KILN_MAX_UPLOAD_BYTES, so axum's buffering limit does not apply.
            post(media::upload::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/media/{id}", get(media::get::get_media))
        .route(
            "/v1/media/{id}/variants/{file}",
            get(media::variant::get_variant),
        )
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/admin/jobs", get(admin::jobs::list))
        .route("/v1/admin/jobs/retry", post(admin::jobs::retry_matching))
        .route("/v1/admin/jobs/{id}/retry", post(admin::jobs::retry_one))
        .route("/v1/admin/jobs/{id}", delete(admin::jobs::discard))
        .fallback(|| async { crate::error::ApiError::not_found("route") })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
