//! RabbitMQ stopped during a run of 300 uploads: every upload answered 202 ends ready.

use std::{sync::Arc, time::Duration};

use kiln_tests::{Options, Process, images, private::PrivateRabbit, spawn_app_with};
use reqwest::StatusCode;
use tokio::sync::Mutex;

#[tokio::test]
async fn stopping_rabbitmq_during_300_uploads_loses_none() {
    let rabbit = PrivateRabbit::start().await.expect("private rabbitmq");
    let app = Arc::new(spawn_app_with(Options::default().env("AMQP_URL", rabbit.url())).await);
    // The scheduler's outbox relay publishes what the API could not while the broker was down.
    let _scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let total = 300;

    let uploader = {
        let (app, accepted) = (app.clone(), accepted.clone());
        tokio::spawn(async move {
            for _ in 0..total {
                let answer = app.upload(images::sideways_jpeg(48, 24)).await;
                assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
                accepted
                    .lock()
                    .await
                    .push(answer.body["id"].as_str().expect("id").to_owned());
            }
        })
    };
    while accepted.lock().await.len() < 60 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rabbit.stop().await.expect("broker stopped");
    let at_stop = accepted.lock().await.len();
    while accepted.lock().await.len() < at_stop + 60 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rabbit.resume().await.expect("broker back");
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
