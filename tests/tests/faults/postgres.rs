//! Postgres restarted mid-run: clients get 503 with Retry-After (never a 500), nothing accepted
//! is lost, and the worker recovers by itself without spending its messages' deliveries.

use std::{sync::Arc, time::Duration};

use kiln_tests::{Options, images, private::PrivatePostgres, spawn_app_with};
use reqwest::StatusCode;
use tokio::sync::Mutex;

#[derive(Default)]
struct Tally {
    accepted: Vec<String>,
    unavailable: usize,
    other: Vec<String>,
}

#[tokio::test]
async fn restarting_postgres_mid_run_gives_503s_not_500s_and_loses_nothing() {
    let postgres = PrivatePostgres::start().await.expect("private postgres");
    // A delivery limit of 1: the worker must hold its deliveries through the outage, not
    // requeue them (each return counts), or the broker dead-letters and the jobs are buried.
    let app = Arc::new(
        spawn_app_with(Options {
            postgres_server: Some(postgres.server_url()),
            ..Options::default().env("KILN_DELIVERY_LIMIT", "1")
        })
        .await,
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let target = 40;

    let uploader = {
        let (app, tally) = (app.clone(), tally.clone());
        tokio::spawn(async move {
            while tally.lock().await.accepted.len() < target {
                let answer = app.upload(images::sideways_jpeg(64, 32)).await;
                let mut tally = tally.lock().await;
                match answer.status {
                    StatusCode::ACCEPTED => {
                        tally
                            .accepted
                            .push(answer.body["id"].as_str().expect("id").to_owned());
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert_eq!(answer.error_code(), "database_unavailable");
                        assert!(answer.headers.contains_key("retry-after"));
                        tally.unavailable += 1;
                        drop(tally);
                        // A well-behaved client waits and sends the same upload again.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    other => tally.other.push(format!("{other}: {}", answer.body)),
                }
            }
        })
    };

    wait_until(|| async { tally.lock().await.accepted.len() >= 10 }).await;
    postgres.stop().await.expect("postgres stopped");
    wait_until(|| async { tally.lock().await.unavailable >= 3 }).await;
    let ready = app.get_as(None, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.body["checks"]["postgres"]["ok"], false,
        "{:?}",
        ready.body
    );
    postgres.resume().await.expect("postgres back");
    uploader.await.expect("uploader");

    let tally = tally.lock().await;
    assert!(
        tally.other.is_empty(),
        "only 202 or 503 are acceptable: {:?}",
        tally.other
    );
    for id in &tally.accepted {
        assert_eq!(app.wait_for_media(id).await["status"], "ready", "{id}");
    }
    println!(
        "sent {} accepted; answered 503 {} times; 5xx other than 503: {}; finished {}; lost 0",
        tally.accepted.len(),
        tally.unavailable,
        tally.other.len(),
        tally.accepted.len()
    );
}

#[tokio::test]
async fn a_worker_holds_its_deliveries_while_postgres_is_down() {
    // With a delivery limit of 1, a second return of any message makes the broker dead-letter
    // it: requeueing while Postgres is down would bury these jobs.
    let postgres = PrivatePostgres::start().await.expect("private postgres");
    let app = spawn_app_with(Options {
        postgres_server: Some(postgres.server_url()),
        without_worker: true,
        ..Options::default().env("KILN_DELIVERY_LIMIT", "1")
    })
    .await;
    let ids = app.upload_small(3).await;
    wait_until(|| async { app.queue_depth("media").await == 3 }).await;
    postgres.stop().await.expect("postgres stopped");

    let worker = kiln_tests::Process::spawn("kiln-worker", &[], app.env()).expect("worker");
    // Each delivery is tried, found unwritable and kept, at least twice over.
    wait_until(|| async {
        let held = worker
            .log_events()
            .iter()
            .filter(|e| e["fields"]["message"] == "postgres unavailable; holding the delivery")
            .count();
        held >= 6
    })
    .await;
    assert_eq!(app.queue_depth("media").await, 0, "all three are held");
    postgres.resume().await.expect("postgres back");

    for id in &ids {
        assert_eq!(app.wait_for_media(id).await["status"], "ready", "{id}");
    }
    assert_eq!(app.queue_depth("reconcile").await, 0);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'dead'")
        .fetch_one(&app.services.db().await)
        .await
        .expect("count");
    assert_eq!(dead, 0);
    println!("3 deliveries held through a Postgres outage with a delivery limit of 1; 3 ready");
}

async fn wait_until<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never met"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
