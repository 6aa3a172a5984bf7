//! Uploads straight from a browser: upload tokens and resumable tus 1.0 uploads, resumed by
//! tuspy (a tus client Kiln did not write), and CORS for the app's pages.

use std::time::Duration;

use image::ImageFormat;
use kiln_tests::{Options, TestApp, images, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A JPEG of noise: a few hundred KB that do not compress away.
fn noisy_jpeg() -> Vec<u8> {
    images::noise(640, 480, ImageFormat::Jpeg)
}

pub async fn token(app: &TestApp, body: Value) -> String {
    let answer = app
        .send(Method::POST, "/v1/upload-tokens", Some(&body))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body["token"].as_str().expect("token").to_owned()
}

/// `POST /v1/uploads/tus/` with a bearer credential.
pub async fn create(app: &TestApp, bearer: &str, length: usize) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/uploads/tus/", app.address))
        .bearer_auth(bearer)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length.to_string())
        .header("upload-metadata", "filename cGhvdG8uanBn")
        .send()
        .await
        .expect("create")
}

pub async fn patch(
    app: &TestApp,
    bearer: &str,
    location: &str,
    offset: usize,
    body: reqwest::Body,
) -> reqwest::Result<reqwest::Response> {
    app.client
        .patch(format!("{}{location}", app.address))
        .bearer_auth(bearer)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header(header::CONTENT_TYPE, "application/offset+octet-stream")
        .body(body)
        .send()
        .await
}

/// A PATCH announcing `announced` bytes that sends only `bytes`, then closes its connection,
/// as a phone losing its network does.
async fn broken_patch(
    app: &TestApp,
    bearer: &str,
    location: &str,
    offset: usize,
    bytes: &[u8],
    announced: usize,
) {
    use tokio::io::AsyncWriteExt;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {bearer}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {announced}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("headers");
    stream.write_all(bytes).await.expect("body");
    stream.flush().await.expect("flush");
    stream.shutdown().await.expect("close");
}

pub async fn head(app: &TestApp, bearer: &str, location: &str) -> reqwest::Response {
    app.client
        .head(format!("{}{location}", app.address))
        .bearer_auth(bearer)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .expect("head")
}

pub fn offset_of(response: &reqwest::Response) -> usize {
    response.headers()["upload-offset"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number")
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("a JSON error");
    body["error"]["code"]
        .as_str()
        .unwrap_or("<none>")
        .to_owned()
}

#[tokio::test]
async fn an_interrupted_upload_resumes_with_tuspy_from_its_offset_and_ends_ready() {
    let app = spawn_app().await;
    let photo = noisy_jpeg();
    let half = photo.len() / 2;
    let upload_token = token(
        &app,
        json!({
            "max_bytes": 4_000_000,
            "content_types": ["image/jpeg"],
            "metadata": { "contact": "42" },
        }),
    )
    .await;

    let created = create(&app, &upload_token, photo.len()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["tus-resumable"], "1.0.0");
    assert!(created.headers().contains_key("upload-expires"));
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();

    // The first half arrives whole; the next PATCH breaks off: its connection closes after
    // `sent` of the quarter it announced. Those bytes are kept, and no others.
    let first = patch(
        &app,
        &upload_token,
        &location,
        0,
        photo[..half].to_vec().into(),
    )
    .await
    .expect("first half");
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset_of(&first), half);
    let sent = photo.len() / 8;
    broken_patch(
        &app,
        &upload_token,
        &location,
        half,
        &photo[half..half + sent],
        photo.len() / 4,
    )
    .await;
    // The server notices the broken body when the connection closes: wait for its record.
    let resumed_at = half + sent;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let offset = offset_of(&head(&app, &upload_token, &location).await);
        if offset == resumed_at {
            break;
        }
        assert!(
            offset == half,
            "offset {offset}, neither {half} nor {resumed_at}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken PATCH was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // tuspy takes over from the offset the server gives.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &photo).expect("write");
    let python = std::env::var("KILN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/tus_resume.py");
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .arg(format!("{}/v1/uploads/tus/", app.address))
        .arg(format!("{}{location}", app.address))
        .arg(&upload_token)
        .arg(file.path())
        .output()
        .await
        .expect("tuspy runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let offsets: Vec<usize> = stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(offsets, [resumed_at, photo.len()], "{stdout}");

    let done = head(&app, &upload_token, &location).await;
    assert_eq!(offset_of(&done), photo.len());
    let media_id = done.headers()["kiln-media-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let media = app.wait_for_media(&media_id).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(media["metadata"], json!({ "contact": "42" }));
    assert_eq!(media["bytes"], photo.len());
    assert_eq!(media["sha256"], hex::encode(Sha256::digest(&photo)));

    // One token, one upload.
    let again = create(&app, &upload_token, photo.len()).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(again).await, "token_used");
}

#[tokio::test]
async fn tokens_refuse_what_the_app_did_not_allow() {
    let app = spawn_app().await;
    let photo = noisy_jpeg();

    let small = token(&app, json!({ "max_bytes": 1000 })).await;
    let answer = create(&app, &small, 2000).await;
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(answer).await, "payload_too_large");

    let png_only = token(&app, json!({ "content_types": ["image/png"] })).await;
    let created = create(&app, &png_only, photo.len()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let refused = patch(&app, &png_only, &location, 0, photo.clone().into())
        .await
        .expect("patch");
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(refused).await, "unsupported_media_type");
    assert_eq!(
        head(&app, &png_only, &location).await.status(),
        StatusCode::NOT_FOUND
    );

    let brief = token(&app, json!({ "expires_in": 1 })).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let expired = create(&app, &brief, photo.len()).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(expired).await, "token_expired");

    let unknown = create(&app, "kut_not-a-token", photo.len()).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    for body in [
        json!({ "max_bytes": 0 }),
        json!({ "content_types": ["text/html"] }),
        json!({ "expires_in": 999_999 }),
    ] {
        let answer = app
            .send(Method::POST, "/v1/upload-tokens", Some(&body))
            .await;
        assert_eq!(answer.error_code(), "invalid_token_request", "{body}");
    }

    // With the API key itself, a whole upload in one PATCH; a wrong offset is a conflict.
    let created = create(&app, &app.key, photo.len()).await;
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let wrong = patch(&app, &app.key, &location, 5, photo.clone().into())
        .await
        .expect("patch");
    assert_eq!(wrong.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(wrong).await, "offset_mismatch");
    let whole = patch(&app, &app.key, &location, 0, photo.clone().into())
        .await
        .expect("patch");
    assert_eq!(whole.status(), StatusCode::NO_CONTENT);
    let media_id = whole.headers()["kiln-media-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(app.wait_for_media(&media_id).await["status"], "ready");
    // Another tenant's key does not see it.
    let other = app.key_for("tenant-b", "media");
    assert_eq!(
        head(&app, &other, &location).await.status(),
        StatusCode::NOT_FOUND
    );
    let terminated = app
        .client
        .delete(format!("{}{location}", app.address))
        .bearer_auth(&app.key)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .expect("delete");
    assert_eq!(terminated.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        head(&app, &app.key, &location).await.status(),
        StatusCode::NOT_FOUND
    );
    let no_version = app
        .client
        .post(format!("{}/v1/uploads/tus/", app.address))
        .bearer_auth(&app.key)
        .header("upload-length", "10")
        .send()
        .await
        .expect("post");
    assert_eq!(no_version.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(no_version).await, "tus_resumable_missing");
    let old_version = app
        .client
        .post(format!("{}/v1/uploads/tus/", app.address))
        .bearer_auth(&app.key)
        .header("tus-resumable", "0.2.2")
        .header("upload-length", "10")
        .send()
        .await
        .expect("post");
    assert_eq!(old_version.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(error_code(old_version).await, "tus_version_unsupported");
}

#[tokio::test]
async fn pages_of_the_configured_origins_may_call_the_api() {
    let app = spawn_app_with(Options::default().env(
        "KILN_CORS_ORIGINS",
        "https://app.example, https://admin.example",
    ))
    .await;
    let preflight = app
        .client
        .request(Method::OPTIONS, format!("{}/v1/uploads/tus/", app.address))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization,tus-resumable,upload-offset",
        )
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = headers["access-control-allow-methods"]
        .to_str()
        .expect("ascii");
    assert!(methods.contains("PATCH"), "{methods}");
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    assert!(
        allowed.contains("upload-offset") && allowed.contains("tus-resumable"),
        "{allowed}"
    );

    let created = app
        .client
        .post(format!("{}/v1/uploads/tus/", app.address))
        .header("origin", "https://app.example")
        .bearer_auth(&app.key)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "100")
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    for name in [
        "location",
        "upload-offset",
        "tus-resumable",
        "upload-expires",
        "kiln-media-id",
    ] {
        assert!(exposed.contains(name), "{name} not in {exposed}");
    }

    let stranger = app
        .client
        .request(Method::OPTIONS, format!("{}/v1/uploads/tus/", app.address))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "PATCH")
        .send()
        .await
        .expect("preflight");
    assert!(
        !stranger
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

/// Files under `tus/<upload>/` in the test's storage.
fn chunks_of(app: &TestApp, upload: &str) -> Vec<std::path::PathBuf> {
    let dir = app.services.storage.path().join("tus").join(upload);
    std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_sweep_removes_expired_uploads_and_chunks_no_upload_lists() {
    let app = kiln_tests::spawn_app_with(
        kiln_tests::Options::default().env("KILN_CLEANUP_GRACE_SECS", "0"),
    )
    .await;
    let photo = noisy_jpeg();
    let half = photo.len() / 2;
    let mut uploads = Vec::new();
    for _ in 0..2 {
        let created = create(&app, &app.key, photo.len()).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let location = created.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let first = patch(&app, &app.key, &location, 0, photo[..half].to_vec().into())
            .await
            .expect("first half");
        assert_eq!(first.status(), StatusCode::NO_CONTENT);
        let id = location
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .expect("id");
        uploads.push((location.clone(), id.to_owned()));
    }
    let (expired_location, expired_id) = &uploads[0];
    let (live_location, live_id) = &uploads[1];
    assert!(!chunks_of(&app, expired_id).is_empty());
    let live_chunks = chunks_of(&app, live_id);

    // One upload's time runs out; the other gains a chunk its upload never recorded (the
    // request that wrote it died first), and a chunk of an upload that no longer exists.
    sqlx::query("UPDATE tus_uploads SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(uuid::Uuid::parse_str(expired_id).expect("uuid"))
        .execute(&app.services.db().await)
        .await
        .expect("expire");
    let storage = app.services.storage.path().join("tus");
    let unrecorded = storage.join(live_id).join(format!("{half}-9"));
    std::fs::write(&unrecorded, b"unrecorded").expect("write");
    let gone = uuid::Uuid::now_v7().to_string();
    std::fs::create_dir_all(storage.join(&gone)).expect("dir");
    std::fs::write(storage.join(&gone).join("0-5"), b"stale").expect("write");

    let job = app.enqueue_schedule("hourly-cleanup");
    app.wait_for_job_row(&job, "succeeded").await;

    assert!(
        chunks_of(&app, expired_id).is_empty(),
        "the expired upload's chunks"
    );
    assert_eq!(
        head(&app, &app.key, expired_location).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(!unrecorded.exists(), "the unrecorded chunk");
    assert!(chunks_of(&app, &gone).is_empty(), "the gone upload's chunk");
    assert_eq!(
        chunks_of(&app, live_id),
        live_chunks,
        "the live upload's chunks"
    );

    // The live upload finishes as if nothing happened.
    let rest = patch(
        &app,
        &app.key,
        live_location,
        half,
        photo[half..].to_vec().into(),
    )
    .await
    .expect("second half");
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    let media_id = rest.headers()["kiln-media-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let media = app.wait_for_media(&media_id).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(media["sha256"], hex::encode(Sha256::digest(&photo)));
}

#[tokio::test]
async fn a_request_that_finds_the_upload_being_recorded_gets_423_and_one_media_results() {
    let app = spawn_app().await;
    let photo = noisy_jpeg();
    let half = photo.len() / 2;
    let created = create(&app, &app.key, photo.len()).await;
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let id: uuid::Uuid = location
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("uuid");
    let first = patch(&app, &app.key, &location, 0, photo[..half].to_vec().into())
        .await
        .expect("first half");
    assert_eq!(first.status(), StatusCode::NO_CONTENT);

    // Another request is recording the upload: it holds the upload's finishing lock (the
    // session lock kiln-api takes, keyed by the upload id), here held by the test itself.
    let mut recorder =
        <sqlx::PgConnection as sqlx::Connection>::connect(&app.env()["DATABASE_URL"])
            .await
            .expect("connect");
    let bytes = id.as_bytes();
    let key = i64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) ^ 0x6b75_735f_6669_6e69;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut recorder)
        .await
        .expect("lock");

    let last = patch(
        &app,
        &app.key,
        &location,
        half,
        photo[half..].to_vec().into(),
    )
    .await
    .expect("second half");
    assert_eq!(last.status(), StatusCode::LOCKED);
    assert_eq!(error_code(last).await, "upload_finishing");
    let asked = head(&app, &app.key, &location).await;
    assert_eq!(
        asked.status(),
        StatusCode::LOCKED,
        "HEAD waits for the recorder too"
    );

    // The recorder goes away (its connection closes, as a crashed request's does): the next
    // HEAD records the upload, once.
    sqlx::Connection::close(recorder).await.expect("close");
    let done = head(&app, &app.key, &location).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(offset_of(&done), photo.len());
    let media_id = done.headers()["kiln-media-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let again = head(&app, &app.key, &location).await;
    assert_eq!(again.headers()["kiln-media-id"], media_id.as_str());
    let media = app.wait_for_media(&media_id).await;
    assert_eq!(media["status"], "ready", "{media}");
    let listed = app.get("/v1/media?limit=100").await;
    assert_eq!(
        listed.body["items"].as_array().expect("items").len(),
        1,
        "{:?}",
        listed.body
    );
}

#[tokio::test]
async fn an_image_is_held_to_the_image_limit_even_when_its_first_patch_is_too_short_to_judge() {
    // The creation may announce up to the video limit; the image limit applies once the
    // bytes say it is an image, here only when the upload is put together at its end.
    let app = spawn_app_with(Options::default().env("KILN_MAX_UPLOAD_BYTES", "100000")).await;
    let photo = noisy_jpeg();
    assert!(photo.len() > 100_000, "{}", photo.len());
    let created = create(&app, &app.key, photo.len()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let first = patch(&app, &app.key, &location, 0, photo[..1].to_vec().into())
        .await
        .expect("one byte");
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    let rest = patch(&app, &app.key, &location, 1, photo[1..].to_vec().into())
        .await
        .expect("the rest");
    assert_eq!(rest.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(rest).await, "payload_too_large");
    assert_eq!(
        head(&app, &app.key, &location).await.status(),
        StatusCode::NOT_FOUND,
        "the upload is removed"
    );
    let listed = app.get("/v1/media?limit=10").await;
    assert_eq!(listed.body["items"], json!([]), "{:?}", listed.body);
}
