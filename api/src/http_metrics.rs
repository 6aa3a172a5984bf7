//! Request metrics: `kiln_http_requests_total` and `kiln_http_request_duration_seconds`, by
//! method, route template and status. The route is axum's matched path (`/v1/media/{id}`),
//! never the raw URI, so label values stay bounded whatever clients send.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};

/// Records one request; installed with `axum::middleware::from_fn`.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = bounded_method(request.method());
    let response = next.run(request).await;
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("kiln_http_requests_total", &labels).increment(1);
    metrics::histogram!("kiln_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Standard methods by name; anything else (clients may invent methods) is `other`.
fn bounded_method(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
