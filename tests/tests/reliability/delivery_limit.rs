//! The broker's delivery limit, reconciled: a message the broker gives up on by itself buries
//! its job with the broker's reason and still reaches the dead queue, instead of leaving the row
//! live for ever (or, on RabbitMQ 3.x without a limit, looping through workers for ever).

use std::time::Duration;

use kiln_tests::{Options, Process, images, private::PrivateRabbit, spawn_app_with};

const HEARTBEAT_TIMEOUT_SECS: u64 = 1;

#[tokio::test]
async fn a_message_over_its_delivery_limit_buries_its_job_with_the_brokers_reason() {
    let rabbit = PrivateRabbit::start().await.expect("private rabbitmq");
    // No scheduler: nothing but the broker's dead-lettering may end this job.
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
            .env("AMQP_URL", rabbit.url())
            .env("KILN_DELIVERY_LIMIT", "1")
            .env("KILN_MAX_ATTEMPTS", "5")
            .env(
                "KILN_HEARTBEAT_TIMEOUT",
                format!("{HEARTBEAT_TIMEOUT_SECS}s"),
            )
    })
    .await;
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(answer.status, 202);
    let job_id = answer.body["job_id"].as_str().expect("job").to_owned();
    let media_id = answer.body["id"].as_str().expect("id").to_owned();
    let db = app.services.db().await;

    // Two workers in turn die on the job. Each is replaced only once its heartbeat has lapsed,
    // so the next one takes the returned message over as a new attempt instead of dropping it
    // as a duplicate. The second return is one more than the limit allows.
    let mut crashing = app.env().clone();
    crashing.insert("KILN_TEST_FAULT".into(), "abort".into());
    for _ in 0..2 {
        let mut worker = Process::spawn("kiln-worker", &[], &crashing).expect("worker");
        let status = worker
            .wait_for_exit(Duration::from_secs(60))
            .await
            .expect("dies on the job");
        assert!(!status.success());
        wait_for_heartbeats_to_lapse(&db).await;
    }
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM jobs WHERE id = $1::uuid")
        .bind(&job_id)
        .fetch_one(&db)
        .await
        .expect("attempts");
    assert_eq!(
        attempts, 2,
        "two attempts started, well under KILN_MAX_ATTEMPTS"
    );

    // A healthy worker finds nothing in the media queue: the broker dead-lettered the message to
    // the reconcile queue, and this worker buries the job from there.
    let _survivor = Process::spawn("kiln-worker", &[], app.env()).expect("worker");
    let job = app.wait_for_job(&job_id).await;
    assert_eq!(job["status"], "dead", "{job}");
    let error = job["last_error"].as_str().expect("a reason");
    assert!(
        error.contains("dead-lettered by the broker (delivery_limit"),
        "{error}"
    );
    assert_eq!(job["attempts"], 2, "not run a third time: {job}");
    let media = app.wait_for_media(&media_id).await;
    assert_eq!(media["status"], "failed", "{media}");

    let dead = app.dead_messages(1).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("delivery_limit")),
        "{:?}",
        dead[0].reason
    );
    assert_eq!(app.queue_depth("media").await, 0);
    assert_eq!(app.queue_depth("reconcile").await, 0);
    println!(
        "1 job, 2 crashed deliveries, delivery limit 1: buried by the reconciler with {error:?}"
    );
}

/// Waits until no running worker has heartbeaten within the time-out.
async fn wait_for_heartbeats_to_lapse(db: &sqlx::PgPool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let fresh: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workers
             WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => $1)",
        )
        .bind(HEARTBEAT_TIMEOUT_SECS as f64 + 0.5)
        .fetch_one(db)
        .await
        .expect("workers");
        if fresh == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "heartbeats never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
