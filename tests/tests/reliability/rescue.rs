//! No job is ever stranded: when a job's message is gone (a purged queue, a killed worker's
//! unacked deliveries) the scheduler's rescuer republishes it, and a job whose worker is alive
//! is never taken from it however long it runs.

use std::time::Duration;

use kiln_tests::{Options, Process, TestApp, images, metric_value, spawn_app_with};
use lapin::options::QueuePurgeOptions;
use uuid::Uuid;

/// Waits (a minute at most) until the media queue holds `count` ready messages, then purges it:
/// those messages are lost, as when a queue is purged or a node is lost.
async fn lose_media_messages(app: &TestApp, count: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.queue_depth("media").await < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages never queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (connection, channel) = app.amqp_channel().await;
    let name = app.queue_name("media");
    let purged = channel
        .queue_purge(name.as_str().into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert_eq!(purged, count);
    connection.close(200, "done".into()).await.ok();
}

/// Uploads `count` small images; returns (media id, job id) of each.
async fn upload(app: &TestApp, count: usize) -> Vec<(String, String)> {
    let mut uploaded = Vec::new();
    for _ in 0..count {
        let answer = app.upload(images::sideways_jpeg(64, 32)).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        let id = |field: &str| answer.body[field].as_str().expect("id").to_owned();
        uploaded.push((id("id"), id("job_id")));
    }
    uploaded
}

/// (attempts, whether the rescuer republished it) of a job.
async fn rescue_record(app: &TestApp, job: &str) -> (i32, bool) {
    let id: Uuid = job.parse().expect("uuid");
    sqlx::query_as("SELECT attempts, rescued_at IS NOT NULL FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&app.services.db().await)
        .await
        .expect("job row")
}

#[tokio::test]
async fn jobs_whose_messages_were_purged_are_rescued_and_succeed() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("KILN_RESCUE_AFTER", "1s")
    })
    .await;
    let uploaded = upload(&app, 6).await;
    lose_media_messages(&app, 6).await;

    let scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let _worker = Process::spawn("kiln-worker", &[], app.env()).expect("worker");

    for (media, job) in &uploaded {
        assert_eq!(
            app.wait_for_media(media).await["status"],
            "ready",
            "{media}"
        );
        // Each ran once, from the rescuer's message.
        assert_eq!(rescue_record(&app, job).await, (1, true), "{job}");
    }
    // Operators see it: each rescue is counted, and the live worker per queue.
    let metrics = scheduler
        .wait_for_field("metrics listening", "addr")
        .await
        .expect("metrics address");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(format!("http://{metrics}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        let rescued = metric_value(&text, "kiln_jobs_rescued_total", &["from=\"queued\""]);
        let alive = metric_value(&text, "kiln_workers_alive", &["queue=\"media\""]);
        if rescued >= 6.0 && alive == 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rescued {rescued}, media workers alive {alive}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("6 media jobs lost from their queue; rescued and ready 6");
}

#[tokio::test]
async fn a_killed_workers_jobs_are_rescued_once_its_heartbeat_lapses() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("KILN_HEARTBEAT_TIMEOUT", "3s")
    })
    .await;
    let mut hanging = app.env().clone();
    hanging.insert("KILN_TEST_FAULT".into(), "hang".into());
    let mut first = Process::spawn("kiln-worker", &[], &hanging).expect("worker");
    let uploaded = upload(&app, 2).await;
    for (_, job) in &uploaded {
        app.wait_for_job_row(job, "running").await;
    }

    first.signal("KILL");
    first
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    // The broker puts the dead worker's unacked deliveries back; drop them too.
    lose_media_messages(&app, 2).await;
    let _scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let _second = Process::spawn("kiln-worker", &[], app.env()).expect("worker");

    for (media, job) in &uploaded {
        assert_eq!(
            app.wait_for_media(media).await["status"],
            "ready",
            "{media}"
        );
        assert_eq!(rescue_record(&app, job).await, (2, true), "{job}");
    }
    println!("2 jobs running on a killed worker, their messages dropped; rescued and ready 2");
}

#[tokio::test]
async fn a_long_job_on_a_live_worker_is_never_rescued_and_its_duplicate_is_dropped() {
    // The job runs 10 s: two heartbeat time-outs and two rescue windows.
    let app = spawn_app_with(Options {
        with_scheduler: true,
        ..Options::default()
            .env("KILN_HEARTBEAT_TIMEOUT", "5s")
            .env("KILN_RESCUE_AFTER", "5s")
            .env("KILN_TEST_FAULT", "slow")
    })
    .await;
    let (media, job) = upload(&app, 1).await.remove(0);
    app.wait_for_job_row(&job, "running").await;
    // A second message for the running job, as a rescue racing a long backlog would send.
    let duplicate = kiln_tests::envelope(&job, "media", serde_json::json!({}));
    app.publish_raw("media", &duplicate).await;
    let worker = app.worker.as_ref().expect("worker");
    worker
        .wait_for_log("job finished or held by a live worker; duplicate message acked")
        .await
        .expect("the duplicate is dropped");

    assert_eq!(app.wait_for_media(&media).await["status"], "ready");
    assert_eq!(
        rescue_record(&app, &job).await,
        (1, false),
        "ran once, never rescued"
    );
    println!("1 job of 10 s on a live worker with a 5 s heartbeat time-out: ran once");
}
