//! Start-up: configuration errors, migrations, and the outbox relay catching up.

use kiln_tests::{Options, Process, images, run, spawn_app_with};
use reqwest::StatusCode;

#[tokio::test]
async fn a_bad_setting_stops_the_process_with_the_variables_name() {
    let env = [("KILN_MAX_UPLOAD_BYTES".to_owned(), "lots".to_owned())].into();
    for binary in ["kiln-api", "kiln-worker", "kiln-scheduler"] {
        let output = run(binary, &[], &env).expect("runs");
        assert!(!output.status.success(), "{binary} must refuse to start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("KILN_MAX_UPLOAD_BYTES"),
            "{binary} said: {stderr}"
        );
    }
}

#[tokio::test]
async fn kiln_migrate_true_migrates_a_fresh_database_at_start_up() {
    let app = spawn_app_with(Options {
        skip_migrate: true,
        ..Options::default().env("KILN_MIGRATE", "true")
    })
    .await;
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready");
}

#[tokio::test]
async fn uploads_accepted_while_rabbitmq_was_unreachable_are_relayed_and_processed() {
    // The API cannot reach the broker: uploads are committed with their jobs unpublished.
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
    })
    .await;
    let ids = app.upload_small(3).await;

    // A scheduler and a worker that can reach it: the relay publishes, the worker processes.
    let mut env = app.env().clone();
    env.insert("AMQP_URL".into(), kiln_tests::amqp_url());
    let _worker = Process::spawn("kiln-worker", &[], &env).expect("worker");
    let _scheduler = Process::spawn("kiln-scheduler", &[], &env).expect("scheduler");

    for id in ids {
        let media = app.wait_for_media(&id).await;
        assert_eq!(media["status"], "ready", "{media}");
    }
    let unpublished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE published_at IS NULL AND status IN ('queued', 'failed')",
    )
    .fetch_one(&app.services.db().await)
    .await
    .expect("count");
    assert_eq!(unpublished, 0);
}
