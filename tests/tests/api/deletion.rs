//! Deleting media and the `cleanup` job: a deleted media is gone from the API at once and its
//! files soon after; the hourly sweep removes orphaned files and the staging files of uploads a
//! crash interrupted, and nothing that is still wanted.

use std::time::Duration;

use kiln_tests::{Options, images, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};

fn files_of(app: &kiln_tests::TestApp, id: &str) -> Vec<String> {
    app.stored_files()
        .iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.contains(id))
        .collect()
}

/// Polls the job's row (the API may be dead) until it has finished.
async fn wait_for_job_row(app: &kiln_tests::TestApp, id: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, _) = app.job_row(id).await;
        if status == "succeeded" || status == "dead" {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} is {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_deleted_media_disappears_and_its_files_are_removed() {
    let app = spawn_app().await;
    let uploaded = app.upload(images::sideways_jpeg(64, 32)).await;
    let id = uploaded.body["id"].as_str().expect("id").to_owned();
    let media = app.wait_for_media(&id).await;
    let variant = media["variants"][0]["url"]
        .as_str()
        .expect("a variant")
        .to_owned();
    assert!(
        files_of(&app, &id).len() > 1,
        "original and variants stored"
    );
    let other_tenant = app.key_for("tenant-b", "media");
    let foreign = app
        .client
        .delete(format!("{}/v1/media/{id}", app.address))
        .bearer_auth(&other_tenant)
        .send()
        .await
        .expect("delete");
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND, "another tenant's");

    let deleted = app.admin(Method::DELETE, &format!("/v1/media/{id}")).await;

    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{:?}", deleted.body);
    assert_eq!(deleted.body["status"], "deleted");
    assert_eq!(
        app.get(&format!("/v1/media/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.download(&variant).await.status(), StatusCode::NOT_FOUND);
    let job = app
        .wait_for_job(deleted.body["job_id"].as_str().expect("job"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        files_of(&app, &id),
        Vec::<String>::new(),
        "every file removed"
    );
    let again = app.admin(Method::DELETE, &format!("/v1/media/{id}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.error_code(), "not_found");
}

#[tokio::test]
async fn the_sweep_removes_orphans_and_interrupted_uploads_but_keeps_live_files() {
    let app = spawn_app_with(Options::default().env("KILN_CLEANUP_GRACE_SECS", "0")).await;
    let storage = app.services.storage.path().to_owned();
    let live = app.upload(images::sideways_jpeg(64, 32)).await;
    let live_id = live.body["id"].as_str().expect("id").to_owned();
    app.wait_for_media(&live_id).await;
    let live_files = files_of(&app, &live_id);
    // An original whose row never committed, and variants of a media that never existed.
    let orphan = uuid::Uuid::now_v7().to_string();
    std::fs::write(storage.join(format!("originals/{orphan}")), b"orphan").expect("write");
    std::fs::create_dir_all(storage.join(format!("variants/{orphan}"))).expect("dir");
    std::fs::write(storage.join(format!("variants/{orphan}/w320.jpg")), b"x").expect("write");
    // A file Kiln did not name is not Kiln's to remove.
    std::fs::write(storage.join("originals/README"), b"keep me").expect("write");

    // An upload interrupted by a crash: the API dies mid-stream, leaving a staging file.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(receiver));
    let upload = {
        let request = app
            .client
            .post(format!("{}/v1/media", app.address))
            .bearer_auth(&app.key)
            .header("content-type", "application/octet-stream")
            .body(body);
        tokio::spawn(async move { request.send().await })
    };
    let photo = images::bench_photo("photo-4mp.jpg");
    sender
        .send(Ok(photo[..photo.len() / 2].to_vec()))
        .await
        .expect("first half sent");
    let staging = wait_for_staging_file(&storage).await;
    app.api.signal("KILL");
    drop(sender);
    let _ = upload.await;

    let job_id = app.enqueue_schedule("hourly-cleanup");
    assert_eq!(wait_for_job_row(&app, &job_id).await, "succeeded");

    assert!(
        !staging.exists(),
        "the interrupted upload's staging file is removed"
    );
    assert_eq!(
        files_of(&app, &orphan),
        Vec::<String>::new(),
        "orphans removed"
    );
    assert_eq!(files_of(&app, &live_id), live_files, "live files kept");
    assert!(
        storage.join("originals/README").exists(),
        "foreign files kept"
    );
}

/// Waits for a streamed upload's staging file (`originals/<id>#<n>`) to appear.
async fn wait_for_staging_file(storage: &std::path::Path) -> std::path::PathBuf {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = std::fs::read_dir(storage.join("originals"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains('#'));
        if let Some(path) = found {
            return path;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no staging file appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
