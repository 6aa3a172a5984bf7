//! Reads go through Redis; writes invalidate; without Redis everything still works.

use kiln_tests::{Options, Process, images, metric_value, spawn_app_with};
use redis::AsyncCommands;
use reqwest::StatusCode;

#[tokio::test]
async fn the_second_read_is_a_cache_hit_and_the_workers_write_invalidates_it() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
    })
    .await;
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    let id = answer.body["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/media/{id}");
    // The API connects to Redis lazily; a read of a media that does not exist (never cached)
    // makes that connection before anything is counted.
    let absent = app
        .get(&format!("/v1/media/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);

    let first = app.get(&path).await;
    let hits_before = metric_value(
        &app.api_metrics().await,
        "kiln_cache_lookups_total",
        &["outcome=\"hit\""],
    );
    let second = app.get(&path).await;
    let hits_after = metric_value(
        &app.api_metrics().await,
        "kiln_cache_lookups_total",
        &["outcome=\"hit\""],
    );

    assert_eq!(first.body, second.body);
    assert_eq!(second.body["status"], "pending");
    assert_eq!(
        hits_after,
        hits_before + 1.0,
        "the second read must be a hit"
    );
    let key = format!("{}:media:{id}", app.services.name);
    let mut redis = app.services.redis().await;
    let cached: Option<String> = redis.get(&key).await.expect("redis get");
    assert!(
        cached.is_some_and(|c| c.contains("pending")),
        "the entry lives under {key}"
    );

    // The worker commits `ready` and deletes the key; well within the TTL the API says ready.
    let _worker = Process::spawn("kiln-worker", &[], app.env()).expect("worker starts");
    let media = app.wait_for_media(&id).await;
    assert_eq!(media["status"], "ready");
}

#[tokio::test]
async fn with_redis_unreachable_uploads_and_reads_still_work_from_postgres() {
    let app = spawn_app_with(Options::default().env("REDIS_URL", "redis://127.0.0.1:1")).await;

    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;

    assert_eq!(media["status"], "ready");
    let metrics = app.api_metrics().await;
    assert!(
        metric_value(&metrics, "kiln_cache_errors_total", &[]) > 0.0,
        "errors are counted"
    );
    let ready = app.get_as(None, "/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "Redis is a cache: its absence is not fatal"
    );
    assert_eq!(ready.body["status"], "degraded");
    assert_eq!(ready.body["checks"]["redis"]["ok"], false);
}
