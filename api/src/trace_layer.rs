//! Trace context for every request: continue the caller's `traceparent` (or start a trace),
//! name its trace id on the request's span, and hand it to handlers that enqueue jobs so the
//! job's message and the worker's span carry it on.

use axum::{extract::Request, http::HeaderValue, middleware::Next, response::Response};
use kiln_core::trace_context::TraceContext;

/// The request's parent: the caller's traceparent, or a new trace's root.
#[derive(Debug, Clone)]
struct Parent(TraceContext);

/// Installed outside the `TraceLayer`, so the request span can read what this inserts.
pub async fn propagate(mut request: Request, next: Next) -> Response {
    let parent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .unwrap_or_else(TraceContext::root);
    let context = parent.child();
    let header = HeaderValue::from_str(&context.header()).ok();
    request.extensions_mut().insert(Parent(parent));
    request.extensions_mut().insert(context);
    let mut response = next.run(request).await;
    // Tells the client which trace to look for in the logs.
    if let Some(header) = header {
        response.headers_mut().insert("traceparent", header);
    }
    response
}

/// The request span: method, path and trace id (the raw query string stays out of logs).
pub fn request_span(request: &Request) -> tracing::Span {
    let parent = request.extensions().get::<Parent>();
    let trace_id = parent.map(|p| p.0.trace_id.as_str()).unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        trace_id,
    );
    if let Some(Parent(parent)) = parent {
        kiln_core::telemetry::adopt_parent(&span, parent);
    }
    span
}

/// The `traceparent` a job enqueued by this request continues; never rejects.
#[derive(Debug, Clone, Default)]
pub struct JobTrace(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for JobTrace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

impl JobTrace {
    /// The trace of a request's extensions.
    /// With OTLP export on, the exported request span is the parent, so the worker's span
    /// hangs under it; otherwise this hop's own context.
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        let exported = kiln_core::telemetry::exported_context(&tracing::Span::current());
        Self(
            exported
                .or_else(|| extensions.get::<TraceContext>().cloned())
                .map(|c| c.header()),
        )
    }
}
