//! The total deadline of every request but an upload (`KILN_REQUEST_TIMEOUT_SECS`), body
//! included: a client trickling a JSON body, or a handler stuck behind a dependency, gives up
//! its connection and memory with a 408 instead of holding them. Uploads are bounded by their
//! transfer instead, since a slow phone sending a large file must finish.

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, state::AppState};

/// Runs the request within the deadline, or answers 408 `request_timeout`.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // A resumable upload's PATCH is an upload too, and its last one (or a HEAD after an
    // interruption) joins every chunk into the original.
    let is_upload = (request.method() == Method::POST && path == "/v1/media")
        || (matches!(*request.method(), Method::PATCH | Method::HEAD)
            && path.starts_with("/v1/uploads/tus/"));
    if is_upload {
        return next.run(request).await;
    }
    let deadline = state.config.request_timeout;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("kiln_http_request_timeouts_total").increment(1);
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request took longer than {}s (KILN_REQUEST_TIMEOUT_SECS)",
                    deadline.as_secs()
                ),
            )
            .into_response()
        }
    }
}
