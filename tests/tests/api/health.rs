//! Liveness and readiness.

use kiln_tests::{Options, images, spawn_app, spawn_app_with};
use reqwest::StatusCode;

#[tokio::test]
async fn readyz_reports_each_dependency() {
    let app = spawn_app().await;
    assert_eq!(app.get_as(None, "/healthz").await.status, StatusCode::OK);
    // Connections are made lazily: a process just started may report "degraded" until they
    // are; it must become ready by itself.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let ready = loop {
        let ready = app.get_as(None, "/readyz").await;
        if ready.body["status"] == "ok" || tokio::time::Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    assert_eq!(ready.body["status"], "ok");
    for check in ["postgres", "redis", "rabbitmq"] {
        assert_eq!(
            ready.body["checks"][check]["ok"], true,
            "{check}: {:?}",
            ready.body
        );
    }
}

#[tokio::test]
async fn with_rabbitmq_unreachable_uploads_are_still_accepted_into_the_outbox() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
    })
    .await;

    let answer = app.upload(images::sideways_jpeg(64, 32)).await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE published_at IS NULL")
            .fetch_one(&app.services.db().await)
            .await
            .expect("count");
    assert_eq!(unpublished, 1, "the job waits in the outbox for the relay");
    let ready = app.get_as(None, "/readyz").await;
    assert_eq!(ready.body["status"], "degraded");
    assert_eq!(ready.body["checks"]["rabbitmq"]["ok"], false);
    // Up or down for the public; the reason only in the logs.
    assert!(
        ready.body["checks"]["rabbitmq"].get("error").is_none(),
        "{:?}",
        ready.body
    );
    let logged = app
        .api
        .wait_for_log("readiness check failed")
        .await
        .expect("logged");
    assert_eq!(logged["fields"]["dependency"], "rabbitmq", "{logged}");
}

#[tokio::test]
async fn unknown_routes_answer_a_json_404() {
    let app = spawn_app().await;
    let answer = app.get("/v1/nothing-here").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error_code(), "not_found");
}
