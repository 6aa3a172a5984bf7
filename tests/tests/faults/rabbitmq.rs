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
