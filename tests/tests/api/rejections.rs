//! Every rejection has its status and stable code, creates no job and leaves no file.

use bytes::Bytes;
use futures::stream;
use kiln_tests::{Options, TestApp, images, spawn_app, spawn_app_with};
use reqwest::StatusCode;

async fn assert_nothing_kept(app: &TestApp) {
    assert_eq!(
        app.job_count().await,
        0,
        "a rejected upload must not create a job"
    );
    assert!(
        app.stored_files().is_empty(),
        "left behind: {:?}",
        app.stored_files()
    );
}

#[tokio::test]
async fn an_empty_body_is_rejected_with_400() {
    let app = spawn_app().await;
    let answer = app.upload(Vec::<u8>::new()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "empty_body");
    assert_nothing_kept(&app).await;
}

#[tokio::test]
async fn upload_of_a_zip_sent_as_jpeg_is_rejected_with_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/v1/media", app.address))
        .bearer_auth(&app.key)
        .header("content-type", "image/jpeg")
        .body(images::zip_bytes())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: serde_json::Value = response.json().await.expect("json error body");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_nothing_kept(&app).await;
}

#[tokio::test]
async fn an_image_header_claiming_too_many_pixels_is_rejected_with_422_before_decoding() {
    let app = spawn_app().await;
    let answer = app.upload(images::png_claiming(100_000, 100_000)).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        answer.body
    );
    assert_eq!(answer.error_code(), "too_many_pixels");
    assert_nothing_kept(&app).await;
}

#[tokio::test]
async fn an_upload_over_the_limit_is_rejected_with_413_and_its_partial_file_removed() {
    let app = spawn_app_with(Options::default().env("KILN_MAX_UPLOAD_BYTES", "100000")).await;
    let photo = images::bench_photo("photo-4mp.jpg");

    // Declared too large: refused from the Content-Length alone.
    let declared = app.upload(photo.clone()).await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.error_code(), "payload_too_large");

    // Streamed without a length: refused once the count passes the limit.
    let chunks: Vec<Result<Bytes, std::io::Error>> = photo
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = app
        .upload(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .await;
    assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(streamed.error_code(), "payload_too_large");
    assert_nothing_kept(&app).await;
}
