//! API keys: 401 without a valid key, 403 without the scope, 404 across tenants.

use kiln_tests::{images, spawn_app};
use reqwest::StatusCode;

#[tokio::test]
async fn requests_without_a_valid_key_are_rejected_with_401() {
    let app = spawn_app().await;
    let missing = app
        .get_as(None, "/v1/jobs/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.error_code(), "unauthorized");
    let wrong = app
        .get_as(
            Some("kiln_not_a_real_key"),
            "/v1/jobs/00000000-0000-0000-0000-000000000000",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let upload = app
        .upload_as("kiln_not_a_real_key", images::sideways_jpeg(32, 16))
        .await;
    assert_eq!(upload.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn a_key_without_the_media_scope_is_rejected_with_403() {
    let app = spawn_app().await;
    let email_only = app.key_for("tenant-a", "email");
    let answer = app
        .upload_as(&email_only, images::sideways_jpeg(32, 16))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.error_code(), "forbidden");
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn another_tenants_media_and_jobs_are_not_found() {
    let app = spawn_app().await;
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let id = answer.body["id"].as_str().expect("id").to_owned();
    let job_id = answer.body["job_id"].as_str().expect("job").to_owned();
    let media = app.wait_for_media(&id).await;
    // The path without its signature: a key of another tenant does not open it. (The signed
    // URL itself opens it for anyone who holds it: that is what it is for.)
    let variant_url = media["variants"][0]["url"]
        .as_str()
        .and_then(|url| url.split('?').next())
        .expect("url")
        .to_owned();

    let other = app.key_for("tenant-b", "media,email");
    for path in [
        format!("/v1/media/{id}"),
        format!("/v1/jobs/{job_id}"),
        variant_url.clone(),
    ] {
        let answer = app.get_as(Some(&other), &path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.error_code(), "not_found");
    }
    // A second key of the same tenant sees it.
    let same_tenant = app.key_for("tenant-a", "media");
    assert_eq!(
        app.get_as(Some(&same_tenant), &format!("/v1/media/{id}"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_new_key_may_not_join_an_existing_tenant_by_its_name_alone() {
    let app = spawn_app().await;
    // tenant-a exists (the harness's key): a second customer named the same is refused…
    let refused = kiln_tests::create_key(app.env(), "tenant-a", "media");
    let error = format!("{:#}", refused.expect_err("refused"));
    assert!(error.contains("--tenant tenant-a"), "{error}");
    // …and joining it takes saying so; that key sees the tenant's media.
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    let id = answer.body["id"].as_str().expect("id");
    let joined = kiln_tests::create_key_with(
        app.env(),
        &[
            "--name",
            "tenant-a-ci",
            "--tenant",
            "tenant-a",
            "--scopes",
            "media",
        ],
    )
    .expect("joined");
    let seen = app.get_as(Some(&joined), &format!("/v1/media/{id}")).await;
    assert_eq!(seen.status, StatusCode::OK);
    // A new name starts a tenant of its own.
    let other = kiln_tests::create_key(app.env(), "tenant-c", "media").expect("created");
    let unseen = app.get_as(Some(&other), &format!("/v1/media/{id}")).await;
    assert_eq!(unseen.status, StatusCode::NOT_FOUND);
}
