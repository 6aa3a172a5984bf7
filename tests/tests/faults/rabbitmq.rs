//! RabbitMQ stopped during a run of 300 uploads: every upload answered 202 ends ready.

use std::sync::Arc;

use kiln_tests::{Options, Process, images, private::PrivateRabbit, spawn_app_with};
use reqwest::StatusCode;
use tokio::sync::{Mutex, oneshot};

#[tokio::test]
async fn stopping_rabbitmq_during_300_uploads_loses_none() {
    let rabbit = PrivateRabbit::start().await.expect("private rabbitmq");
    let app = Arc::new(spawn_app_with(Options::default().env("AMQP_URL", rabbit.url())).await);
    // The scheduler's outbox relay publishes what the API could not while the broker was down.
    let _scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let total = 300;
    // In phases, each handed over explicitly: 60 uploads, the broker stops, 60 more, it
    // resumes, the rest. An uploader that fails drops its sender and fails the test at once.
    let (sixty_sent, sixty) = oneshot::channel();
    let (stopped, broker_stopped) = oneshot::channel::<()>();
    let (sixty_more_sent, sixty_more) = oneshot::channel();
    let (resumed, broker_resumed) = oneshot::channel::<()>();

    let uploader = {
        let (app, accepted) = (app.clone(), accepted.clone());
        tokio::spawn(async move {
            let mut phases = [
                (60, Some((sixty_sent, broker_stopped))),
                (60, Some((sixty_more_sent, broker_resumed))),
                (total - 120, None),
            ];
            for (count, handover) in &mut phases {
                for _ in 0..*count {
                    let answer = app.upload(images::sideways_jpeg(48, 24)).await;
                    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
                    accepted
                        .lock()
                        .await
                        .push(answer.body["id"].as_str().expect("id").to_owned());
                }
                if let Some((done, next)) = handover.take() {
                    done.send(()).expect("the test waits");
                    next.await.expect("the test goes on");
                }
            }
        })
    };
    sixty.await.expect("60 uploads accepted");
    rabbit.stop().await.expect("broker stopped");
    stopped.send(()).expect("uploader waits");
    sixty_more
        .await
        .expect("60 uploads accepted while the broker was down");
    rabbit.resume().await.expect("broker back");
    resumed.send(()).expect("uploader waits");
    uploader.await.expect("uploader");

    let ids = accepted.lock().await.clone();
    let mut finished = 0;
    for id in &ids {
        let media = app.wait_for_media(id).await;
        assert_eq!(media["status"], "ready", "{id}: {media}");
        finished += 1;
    }
    let duplicated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT media_id FROM media_variants GROUP BY media_id HAVING count(*) <> 8) d",
    )
    .fetch_one(&app.services.db().await)
    .await
    .expect("count");
    println!(
        "sent {total}; accepted {}; accepted while the broker was down ≥ 60; finished {finished}; lost {}; with wrong variant counts {duplicated}",
        ids.len(),
        ids.len() - finished
    );
    assert_eq!(ids.len(), total);
    assert_eq!(duplicated, 0);
}

#[tokio::test]
async fn the_worker_reconnects_after_the_broker_closes_its_connections() {
    let rabbit = PrivateRabbit::start().await.expect("private rabbitmq");
    let app = spawn_app_with(Options::default().env("AMQP_URL", rabbit.url())).await;
    // An upload accepted before the API notices its broker connection is gone is published by
    // the relay, as in production.
    let _scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let first = app.upload(images::sideways_jpeg(48, 24)).await;
    assert_eq!(
        app.wait_for_media(first.body["id"].as_str().expect("id"))
            .await["status"],
        "ready"
    );

    rabbit
        .close_all_connections()
        .await
        .expect("connections closed");
    let worker = app.worker.as_ref().expect("worker");
    worker
        .wait_for_log("consumer lost; reconnecting")
        .await
        .expect("the loss is noticed");

    let second = app.upload(images::sideways_jpeg(48, 24)).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    let media = app
        .wait_for_media(second.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "processed after the reconnect");
    println!("sent 2; finished 2; lost 0 (connections force-closed once)");
}

#[tokio::test]
async fn a_bulk_retry_with_the_broker_down_answers_at_once_and_the_relay_sends_the_jobs() {
    let rabbit = PrivateRabbit::start().await.expect("private rabbitmq");
    let app = spawn_app_with(Options::default().env("AMQP_URL", rabbit.url())).await;
    // Corrupt uploads: each job dies on its first attempt.
    let mut broken = images::bench_photo("photo-4mp.jpg");
    broken.truncate(broken.len() / 3);
    let mut jobs = Vec::new();
    for _ in 0..20 {
        // Each its own bytes: identical uploads would share one media's job.
        let answer = app.upload(images::with_unique_comment(&broken)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        jobs.push(answer.body["job_id"].as_str().expect("job").to_owned());
    }
    for job in &jobs {
        assert_eq!(app.wait_for_job(job).await["status"], "dead");
    }

    rabbit.stop().await.expect("broker stopped");
    // Bounded only so a regression fails instead of hanging: sequential publishes each
    // waiting for a confirm time-out would take minutes.
    let answer = app
        .client
        .post(format!("{}/v1/admin/jobs/retry?kind=media", app.address))
        .bearer_auth(&app.key)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .expect("the retry answers");
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let counts = (body["retried"].as_u64(), body["published"].as_u64());
    assert_eq!(counts, (Some(20), Some(0)), "{body}");

    rabbit.resume().await.expect("broker back");
    let _scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    // Relayed and run again (and dead again: the files are still corrupt).
    for job in &jobs {
        let row = app.wait_for_job(job).await;
        let outcome = (row["status"].as_str(), row["attempts"].as_i64());
        assert_eq!(outcome, (Some("dead"), Some(1)), "{row}");
    }
    println!("retried 20 dead jobs with the broker down: answered, published 0; relayed 20");
}
