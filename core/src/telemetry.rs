//! Logs (tracing), traces (OTLP export, when configured) and metrics (the `metrics` facade,
//! exported in Prometheus text).

use std::{net::SocketAddr, sync::OnceLock};

use axum::{Router, routing::get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{config::LogFormat, trace_context::TraceContext};

/// Whether spans are exported over OTLP (set once, by [`init`]).
static OTLP: OnceLock<bool> = OnceLock::new();

/// What [`init`] started; [`Telemetry::shutdown`] flushes the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered (up to a few seconds) and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The SDK's shutdown blocks; keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Installs the global tracing subscriber: `RUST_LOG` filters (default `info`), `LOG_FORMAT`
/// picks text or JSON lines, to stdout where containers expect them. When
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans are
/// also exported over OTLP/HTTP (JSON) as `service`.
pub fn init(format: LogFormat, service: &'static str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lapin=warn,object_store=warn"));
    let provider = otlp_provider(service);
    OTLP.get_or_init(|| provider.is_some());
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // A second init (tests that build two apps in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(false)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer()).try_init(),
    };
    Telemetry { provider }
}

fn otlp_provider(service: &'static str) -> Option<SdkTracerProvider> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()));
    if !configured {
        return None;
    }
    // The endpoint, headers and timeout come from the standard OTEL_* variables.
    let exporter = match SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("OTLP export disabled: {error}");
            return None;
        }
    };
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build(),
    )
}

/// Makes `parent` (a caller's or a job's traceparent) the parent of `span` in the exported
/// trace. Call it before the span is first entered; without OTLP export it does nothing.
pub fn adopt_parent(span: &tracing::Span, parent: &TraceContext) {
    if !OTLP.get().copied().unwrap_or(false) {
        return;
    }
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(&parent.trace_id),
        SpanId::from_hex(&parent.span_id),
    ) else {
        return;
    };
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    };
    let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::NONE);
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The exported identity of `span` (its trace and span id) when OTLP export is on, so what it
/// enqueues names it as the parent; `None` otherwise.
pub fn exported_context(span: &tracing::Span) -> Option<TraceContext> {
    if !OTLP.get().copied().unwrap_or(false) {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| TraceContext {
        trace_id: span_context.trace_id().to_string(),
        span_id: span_context.span_id().to_string(),
        sampled: span_context.is_sampled(),
    })
}

/// Installs the process-wide Prometheus recorder and returns the handle that renders it.
pub fn install_metrics_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ])?
        // Transcodes and the clips they read last minutes, not milliseconds.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Prefix("kiln_video_".into()),
            &[
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            ],
        )?
        .install_recorder()?;
    Ok(handle)
}

/// Serves `GET /metrics` on its own listener (never the public one) until `cancel` fires.
/// Returns the bound address, which differs from `addr` when its port is 0.
pub async fn serve_metrics(
    addr: SocketAddr,
    handle: PrometheusHandle,
    cancel: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    tracing::info!(addr = %bound, "metrics listening");
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "metrics listener failed");
        }
    });
    Ok((bound, task))
}

/// Masks an email address for logs: `alice@example.com` → `a***@example.com`.
pub fn mask_email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}
