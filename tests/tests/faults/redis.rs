//! Redis is a cache: with it gone, uploads and reads keep working from Postgres.

use kiln_tests::{Options, Process, images, metric_value, private::PrivateRedis, spawn_app_with};
use reqwest::StatusCode;

#[tokio::test]
async fn with_redis_stopped_mid_run_uploads_and_reads_keep_working() {
    let mut redis = PrivateRedis::start().await.expect("private redis");
    let app = spawn_app_with(Options::default().env("REDIS_URL", redis.url())).await;
    let first = app.upload(images::sideways_jpeg(64, 32)).await;
    let first_id = first.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.wait_for_media(&first_id).await["status"], "ready");

    redis.stop().await.expect("redis stopped");
    let mut sent = 1;
    let mut finished = 1;
    for _ in 0..5 {
        let answer = app.upload(images::sideways_jpeg(64, 32)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        sent += 1;
        let media = app
            .wait_for_media(answer.body["id"].as_str().expect("id"))
            .await;
        assert_eq!(media["status"], "ready");
        finished += 1;
    }
    let read = app.get(&format!("/v1/media/{first_id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    let errors = metric_value(&app.api_metrics().await, "kiln_cache_errors_total", &[]);
    assert!(errors > 0.0);

    redis.resume().await.expect("redis back");
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    sent += 1;
    assert_eq!(
        app.wait_for_media(answer.body["id"].as_str().expect("id"))
            .await["status"],
        "ready"
    );
    finished += 1;
    println!(
        "sent {sent}; finished {finished}; lost {}; redis errors counted {errors}",
        sent - finished
    );
}

#[tokio::test]
async fn a_media_deleted_while_redis_could_not_be_invalidated_is_not_served_from_the_cache() {
    let redis = PrivateRedis::start().await.expect("private redis");
    // The API's Redis user may read and fill the cache but not remove from it, so the
    // deletion's own invalidation is refused (as when Redis is unreachable for that moment);
    // the worker's user may do everything.
    let acl = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "ACL",
            "SETUSER",
            "api",
            "on",
            ">api-pw",
        ])
        .args(["~*", "&*", "+@all", "-del", "-incr"])
        .output()
        .expect("redis-cli");
    assert!(
        acl.status.success(),
        "{}",
        String::from_utf8_lossy(&acl.stderr)
    );
    let api_url = format!("redis://api:api-pw@127.0.0.1:{}", redis.port);
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("REDIS_URL", api_url)
    })
    .await;
    let mut worker_env = app.env().clone();
    worker_env.insert("REDIS_URL".into(), redis.url());
    let _worker = Process::spawn("kiln-worker", &[], &worker_env).expect("worker");
    let uploaded = app.upload(images::sideways_jpeg(64, 32)).await;
    let id = uploaded.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.wait_for_media(&id).await["status"], "ready");
    // Read twice: the ready view is in Redis now.
    for _ in 0..2 {
        let read = app.get(&format!("/v1/media/{id}")).await;
        assert_eq!(read.body["status"], "ready");
    }

    let deleted = app
        .admin(reqwest::Method::DELETE, &format!("/v1/media/{id}"))
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{:?}", deleted.body);
    let cleanup = deleted.body["job_id"].as_str().expect("job").to_owned();

    // The cleanup job, committed with the deletion, removes the entry the API could not.
    assert_eq!(app.wait_for_job(&cleanup).await["status"], "succeeded");
    let read = app.get(&format!("/v1/media/{id}")).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{:?}", read.body);
    println!("deleted while the API could not invalidate; after the cleanup job: 404");
}
