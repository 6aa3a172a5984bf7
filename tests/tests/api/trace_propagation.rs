//! One upload can be followed end to end: the caller's `traceparent` trace id is on the API's
//! request logs, in the job row and message, and on the worker's job logs.

use kiln_tests::{images, spawn_app};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn a_traceparent_travels_from_the_request_to_the_workers_logs() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/v1/media", app.address))
        .bearer_auth(&app.key)
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .body(images::sideways_jpeg(64, 32))
        .send()
        .await
        .expect("upload");
    let returned = response.headers()["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        returned.starts_with(&format!("00-{TRACE_ID}-")),
        "{returned}"
    );
    assert!(
        !returned.contains("00f067aa0ba902b7"),
        "a new span id for the API's hop"
    );
    let body: serde_json::Value = response.json().await.expect("json");
    let id = body["id"].as_str().expect("id").to_owned();
    app.wait_for_media(&id).await;

    let (stored,): (Option<String>,) =
        sqlx::query_as("SELECT traceparent FROM jobs WHERE id = $1::uuid")
            .bind(body["job_id"].as_str().expect("job"))
            .fetch_one(&app.services.db().await)
            .await
            .expect("row");
    assert!(
        stored.is_some_and(|t| t.starts_with(&format!("00-{TRACE_ID}-"))),
        "the job row continues the trace"
    );
    let api_logs = app.api.logs();
    assert!(
        api_logs
            .iter()
            .any(|l| l.contains(TRACE_ID) && l.contains("upload accepted")),
        "the API's log names the trace: {api_logs:#?}"
    );
    // Logged once the media's state is committed, which may be after the API shows it.
    let worker = app.worker.as_ref().expect("worker");
    worker
        .wait_for_log("media ready")
        .await
        .expect("the worker logs the outcome");
    let worker_logs = worker.logs();
    assert!(
        worker_logs
            .iter()
            .any(|l| l.contains(TRACE_ID) && l.contains("media ready")),
        "the worker's log names the trace: {worker_logs:#?}"
    );

    // Without a traceparent the API starts a trace of its own.
    let fresh = app.upload(images::sideways_jpeg(16, 16)).await;
    let header = fresh.headers["traceparent"].to_str().expect("ascii");
    assert!(
        !header.contains(TRACE_ID) && header.starts_with("00-"),
        "{header}"
    );
}

/// A span as the OTLP sink received it.
#[derive(Debug)]
struct ExportedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

fn exported_spans(dir: &std::path::Path) -> Vec<ExportedSpan> {
    let mut spans = Vec::new();
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for file in files.filter(|f| f.path().extension().is_some_and(|e| e == "json")) {
        let Ok(body) = std::fs::read(file.path()) else {
            continue;
        };
        let Ok(export) = serde_json::from_slice::<serde_json::Value>(&body) else {
            continue;
        };
        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            let scopes = resource["scopeSpans"].as_array().into_iter().flatten();
            for span in scopes.flat_map(|s| s["spans"].as_array().into_iter().flatten()) {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                spans.push(ExportedSpan {
                    service: service.clone(),
                    name: text("name"),
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent_span_id: text("parentSpanId"),
                });
            }
        }
    }
    spans
}

#[tokio::test]
async fn with_otlp_configured_the_api_and_worker_spans_form_one_exported_trace() {
    let port = kiln_tests::private::free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let python = std::env::var("KILN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut sink = std::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/support/otlp_sink.py"))
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the OTLP sink starts");
    {
        use std::io::BufRead;
        let mut line = String::new();
        let stdout = sink.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready");
    }
    let app = kiln_tests::spawn_app_with(
        kiln_tests::Options::default()
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    )
    .await;

    let response = app
        .client
        .post(format!("{}/v1/media", app.address))
        .bearer_auth(&app.key)
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .body(images::sideways_jpeg(64, 32))
        .send()
        .await
        .expect("upload");
    let body: serde_json::Value = response.json().await.expect("json");
    app.wait_for_media(body["id"].as_str().expect("id")).await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let (request, job) = loop {
        let spans = exported_spans(dir.path());
        let ours = |service: &str, name: &str| {
            spans
                .iter()
                .find(|s| s.service == service && s.name == name && s.trace_id == TRACE_ID)
                .map(|s| (s.span_id.clone(), s.parent_span_id.clone()))
        };
        if let (Some(request), Some(job)) =
            (ours("kiln-api", "request"), ours("kiln-worker", "job"))
        {
            break (request, job);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no API request and worker job spans of trace {TRACE_ID} exported: {spans:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    sink.kill().ok();
    sink.wait().ok();

    assert_eq!(
        request.1, "00f067aa0ba902b7",
        "the request continues the caller's span"
    );
    assert_eq!(
        job.1, request.0,
        "the worker's job span is a child of the API request span"
    );
}
