//! Operators list, retry (one or all matching) and discard dead jobs; only with the admin scope.

use kiln_tests::{Options, images, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn admin_endpoints_need_the_admin_scope() {
    let app = spawn_app().await;
    let media_only = app.key_for("tenant-a", "media");
    for (method, path) in [
        (Method::GET, "/v1/admin/jobs?status=dead"),
        (Method::POST, "/v1/admin/jobs/retry"),
        (
            Method::POST,
            "/v1/admin/jobs/00000000-0000-0000-0000-000000000000/retry",
        ),
        (
            Method::DELETE,
            "/v1/admin/jobs/00000000-0000-0000-0000-000000000000",
        ),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .bearer_auth(&media_only)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
}

#[tokio::test]
async fn dead_jobs_are_listed_retried_in_bulk_and_discarded() {
    // Four failing writes and two attempts each: both jobs die, deterministically.
    let app = spawn_app_with(
        Options::default()
            .env("KILN_TEST_FAIL_STORAGE_WRITES", "4")
            .env("KILN_MAX_ATTEMPTS", "2"),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = app.upload(images::sideways_jpeg(120, 60)).await;
        ids.push(answer.body["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        assert_eq!(app.wait_for_media(id).await["status"], "failed");
    }

    let listed = app
        .admin(Method::GET, "/v1/admin/jobs?status=dead&kind=media")
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let jobs = listed.body["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{:?}", listed.body);
    assert!(
        jobs.iter()
            .all(|j| j["tenant"] == "tenant-a" && j["last_error"].is_string())
    );
    let none = app
        .admin(Method::GET, "/v1/admin/jobs?status=dead&kind=email")
        .await;
    assert_eq!(none.body["jobs"].as_array().map(Vec::len), Some(0));
    let bad = app.admin(Method::GET, "/v1/admin/jobs?status=zombie").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.error_code(), "invalid_filter");

    let bulk = app
        .admin(Method::POST, "/v1/admin/jobs/retry?kind=media")
        .await;
    assert_eq!(bulk.status, StatusCode::ACCEPTED, "{:?}", bulk.body);
    assert_eq!(bulk.body["retried"], 2);
    for id in &ids {
        assert_eq!(app.wait_for_media(id).await["status"], "ready");
    }
    println!("2 jobs dead, 2 retried in bulk, 2 ready");

    // A corrupt upload dies at once; an operator discards it.
    let mut broken = images::bench_photo("photo-4mp.jpg");
    broken.truncate(10_000);
    let answer = app.upload(broken).await;
    let media_id = answer.body["id"].as_str().expect("id").to_owned();
    let job_id = answer.body["job_id"].as_str().expect("job").to_owned();
    assert_eq!(app.wait_for_media(&media_id).await["status"], "failed");
    let succeeded = &app
        .admin(Method::GET, "/v1/admin/jobs?status=succeeded")
        .await
        .body["jobs"][0]["id"];
    let not_dead = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/jobs/{}", succeeded.as_str().expect("id")),
        )
        .await;
    assert_eq!(not_dead.status, StatusCode::CONFLICT);
    assert_eq!(not_dead.error_code(), "job_not_dead");

    let discarded = app
        .admin(Method::DELETE, &format!("/v1/admin/jobs/{job_id}"))
        .await;

    assert_eq!(discarded.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/jobs/{job_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let media = app.get(&format!("/v1/media/{media_id}")).await;
    assert_eq!(media.body["status"], "failed", "the media keeps its state");
    let again = app
        .admin(Method::DELETE, &format!("/v1/admin/jobs/{job_id}"))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}
