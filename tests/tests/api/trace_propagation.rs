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
    let worker_logs = app.worker.as_ref().expect("worker").logs();
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
