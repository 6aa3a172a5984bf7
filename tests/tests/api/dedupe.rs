//! Uploading bytes the tenant already has: a media of its own that shares the stored files,
//! never a second job or copy; the files stay while any media uses them; tenants never share.

use kiln_tests::{Options, Process, TestApp, images, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn media_jobs(app: &TestApp, key: &str) -> usize {
    let page = app.get_as(Some(key), "/v1/jobs?kind=media&limit=100").await;
    page.body["items"].as_array().expect("items").len()
}

fn sizes(media: &Value) -> Vec<(String, String, u64, u64)> {
    let mut sizes: Vec<_> = media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_owned(),
                v["format"].as_str().unwrap_or_default().to_owned(),
                v["width"].as_u64().unwrap_or_default(),
                v["bytes"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    sizes.sort();
    sizes
}

/// Deletes a media and waits for its cleanup job.
async fn delete(app: &TestApp, id: &str) {
    let answer = app
        .send(Method::DELETE, &format!("/v1/media/{id}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let job = app
        .wait_for_job(answer.body["job_id"].as_str().expect("job"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test]
async fn a_second_upload_of_the_same_bytes_shares_the_first_ones_files() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
    })
    .await;
    let photo = images::sideways_jpeg(300, 200);

    // Two uploads before any worker runs: the second waits for the first one's job.
    let first = app.upload(photo.clone()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let first_id = first.body["id"].as_str().expect("id").to_owned();
    let second = app.upload(photo.clone()).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{:?}", second.body);
    assert_eq!(second.body["duplicate_of"], first_id.as_str());
    assert_eq!(second.body["status"], "pending");
    assert_eq!(second.body["job_id"], first.body["job_id"]);
    let second_id = second.body["id"].as_str().expect("id").to_owned();
    assert_ne!(second_id, first_id);
    assert_eq!(
        media_jobs(&app, &app.key).await,
        1,
        "a second job was queued"
    );

    let _worker = Process::spawn("kiln-worker", &[], app.env()).expect("worker");
    let first = app.wait_for_media(&first_id).await;
    let second = app.wait_for_media(&second_id).await;
    assert_eq!(first["status"], "ready", "{first}");
    assert_eq!(second["status"], "ready", "{second}");
    assert_eq!(sizes(&first), sizes(&second));
    assert_eq!(second["placeholder"], first["placeholder"]);

    // A third, once the first is ready: ready at once, no job.
    let third = app.upload(photo.clone()).await;
    assert_eq!(third.status, StatusCode::OK, "{:?}", third.body);
    assert_eq!(third.body["status"], "ready");
    assert_eq!(third.body["duplicate_of"], first_id.as_str());
    let third_id = third.body["id"].as_str().expect("id").to_owned();
    let url = third.body["variants"][0]["url"]
        .as_str()
        .expect("a signed url");
    assert_eq!(app.download(url).await.status(), StatusCode::OK);
    assert_eq!(media_jobs(&app, &app.key).await, 1);
    let originals = |app: &TestApp| {
        app.stored_files()
            .into_iter()
            .filter(|f| f.starts_with("originals"))
            .count()
    };
    assert_eq!(originals(&app), 1, "{:?}", app.stored_files());

    // Another tenant's identical bytes are its own: a job and a copy.
    let other = app.key_for("tenant-b", "media");
    let foreign = app.upload_as(&other, photo.clone()).await;
    assert_eq!(foreign.status, StatusCode::ACCEPTED, "{:?}", foreign.body);
    assert!(
        foreign.body.get("duplicate_of").is_none(),
        "{:?}",
        foreign.body
    );
    assert_eq!(media_jobs(&app, &other).await, 1);
    let foreign_id = foreign.body["id"].as_str().expect("id").to_owned();
    app.wait_for_media_as(&other, &foreign_id).await;

    // Deleting the first keeps the files the others use.
    delete(&app, &first_id).await;
    let third = app.get(&format!("/v1/media/{third_id}")).await;
    for variant in third.body["variants"].as_array().expect("variants") {
        let response = app.download(variant["url"].as_str().expect("url")).await;
        assert_eq!(response.status(), StatusCode::OK, "{variant}");
    }
    // With the last of them gone, so are the files (the other tenant's stay).
    delete(&app, &second_id).await;
    delete(&app, &third_id).await;
    let left: Vec<_> = app
        .stored_files()
        .into_iter()
        .filter(|f| !f.to_string_lossy().contains(&foreign_id))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_pending_duplicate_still_becomes_ready_when_its_owner_is_deleted_first() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
    })
    .await;
    let photo = images::sideways_jpeg(300, 200);
    let owner = app.upload(photo.clone()).await;
    assert_eq!(owner.status, StatusCode::ACCEPTED, "{:?}", owner.body);
    let owner_id = owner.body["id"].as_str().expect("id").to_owned();
    let duplicate = app.upload(photo).await;
    assert_eq!(duplicate.body["duplicate_of"], owner_id.as_str());
    let duplicate_id = duplicate.body["id"].as_str().expect("id").to_owned();

    // The owner goes before its job has run: its job and its cleanup are both queued, and
    // whichever the worker takes first, the duplicate must end ready with files of its own.
    let deleted = app
        .send(Method::DELETE, &format!("/v1/media/{owner_id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{:?}", deleted.body);
    let _worker = Process::spawn("kiln-worker", &[], app.env()).expect("worker");
    let cleanup = app
        .wait_for_job(deleted.body["job_id"].as_str().expect("job"))
        .await;
    assert_eq!(cleanup["status"], "succeeded", "{cleanup}");
    let media = app.wait_for_media(&duplicate_id).await;
    assert_eq!(media["status"], "ready", "{media}");
    for variant in media["variants"].as_array().expect("variants") {
        let response = app.download(variant["url"].as_str().expect("url")).await;
        assert_eq!(response.status(), StatusCode::OK, "{variant}");
    }
    let gone = app.get(&format!("/v1/media/{owner_id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}
