//! Variants as a browser gets them: signed URLs with no header, their expiry and tampering,
//! deletion, permanent public URLs, format negotiation, ETag/304, HEAD and Range.

use std::time::Duration;

use kiln_tests::{TestApp, images, spawn_app};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Uploads a small photo and waits for it to be ready.
async fn ready_media(app: &TestApp) -> Value {
    let answer = app.upload(images::sideways_jpeg(400, 300)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    media
}

/// The signed URL of the variant `name` in `format`.
fn url_of(media: &Value, name: &str, format: &str) -> String {
    media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .find(|v| v["name"] == name && v["format"] == format)
        .and_then(|v| v["url"].as_str())
        .unwrap_or_else(|| panic!("no {name}/{format} in {media}"))
        .to_owned()
}

/// A GET with no key at all, as an `<img src>` makes it.
async fn fetch(
    app: &TestApp,
    url: &str,
    headers: &[(header::HeaderName, &str)],
) -> reqwest::Response {
    fetch_with(app, Method::GET, url, headers).await
}

async fn fetch_with(
    app: &TestApp,
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, &str)],
) -> reqwest::Response {
    let mut request = app.client.request(method, format!("{}{url}", app.address));
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    request.send().await.expect("request")
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("a JSON error");
    body["error"]["code"]
        .as_str()
        .unwrap_or("<none>")
        .to_owned()
}

#[tokio::test]
async fn a_signed_url_works_without_a_header_until_it_expires_is_tampered_with_or_deleted() {
    let app = spawn_app().await;
    let media = ready_media(&app).await;
    let id = media["id"].as_str().expect("id");
    let url = url_of(&media, "thumb", "webp");
    assert!(url.contains("?expires=") && url.contains("&sig="), "{url}");

    let response = fetch(&app, &url, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/webp");
    let cache_control = response.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let max_age: u64 = cache_control
        .strip_prefix("private, max-age=")
        .and_then(|age| age.parse().ok())
        .unwrap_or_else(|| panic!("{cache_control}"));
    // The default lifetime is an hour, its expiry rounded up by at most an eighth.
    assert!((1..=3_600 + 450).contains(&max_age), "{cache_control}");
    let etag = response.headers()["etag"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let bytes = response.bytes().await.expect("body");
    assert_eq!(etag, format!("\"{}\"", hex::encode(Sha256::digest(&bytes))));
    image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP).expect("a WebP");

    // Tampered: another signature, another variant under the same signature, no signature.
    let (path, query) = url.split_once('?').expect("query");
    let tampered = format!("{url}x");
    assert_eq!(
        error_code(fetch(&app, &tampered, &[]).await).await,
        "bad_signature"
    );
    let other = format!("{}?{query}", path.replace("thumb.webp", "thumb.jpg"));
    assert_eq!(
        error_code(fetch(&app, &other, &[]).await).await,
        "bad_signature"
    );
    let longer = url.replace("expires=", "expires=9");
    assert_eq!(
        error_code(fetch(&app, &longer, &[]).await).await,
        "bad_signature"
    );
    assert_eq!(
        fetch(&app, path, &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A lifetime of one second, asked for with ?url_ttl=, and out-of-bounds lifetimes.
    let short = app.get(&format!("/v1/media/{id}?url_ttl=1")).await;
    let short_url = url_of(&short.body, "thumb", "jpeg");
    let bad = app.get(&format!("/v1/media/{id}?url_ttl=0")).await;
    assert_eq!(bad.error_code(), "invalid_url_ttl", "{:?}", bad.body);
    let bad = app.get(&format!("/v1/media/{id}?url_ttl=99999999")).await;
    assert_eq!(bad.error_code(), "invalid_url_ttl", "{:?}", bad.body);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let expired = fetch(&app, &short_url, &[]).await;
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(expired).await, "bad_signature");

    // Deleted: gone, whatever the signature says.
    let deleted = app
        .send(Method::DELETE, &format!("/v1/media/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{:?}", deleted.body);
    let gone = fetch(&app, &url, &[]).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(gone).await, "not_found");
}

#[tokio::test]
async fn the_format_follows_accept_and_downloads_revalidate_and_resume() {
    let app = spawn_app().await;
    let media = ready_media(&app).await;
    let negotiated = media["variant_urls"]["small"]
        .as_str()
        .expect("a negotiated URL");

    for (accept, content_type) in [
        ("image/avif,image/webp,image/apng,*/*;q=0.8", "image/webp"),
        ("image/webp;q=0, image/jpeg", "image/jpeg"),
        ("*/*", "image/jpeg"),
    ] {
        let response = fetch(&app, negotiated, &[(header::ACCEPT, accept)]).await;
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
        assert_eq!(response.headers()["content-type"], content_type, "{accept}");
        assert_eq!(response.headers()["vary"], "Accept", "{accept}");
    }

    let url = url_of(&media, "small", "jpeg");
    let whole = fetch(&app, &url, &[]).await;
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let etag = whole.headers()["etag"].to_str().expect("ascii").to_owned();
    let whole = whole.bytes().await.expect("body");
    let size = whole.len();

    // The client's copy is current: 304, no body, the same ETag (also for a negotiated URL).
    let revalidated = fetch(&app, &url, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()["etag"], etag.as_str());
    assert!(revalidated.bytes().await.expect("body").is_empty());
    let changed = fetch(&app, &url, &[(header::IF_NONE_MATCH, "\"something-else\"")]).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let negotiated_304 = fetch(
        &app,
        negotiated,
        &[
            (header::ACCEPT, "image/jpeg"),
            (header::IF_NONE_MATCH, &etag),
        ],
    )
    .await;
    assert_eq!(negotiated_304.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(negotiated_304.headers()["vary"], "Accept");

    // A range, the rest of it, a range past the end, and a range whose If-Range is stale.
    let part = fetch(&app, &url, &[(header::RANGE, "bytes=0-9")]).await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-9/{size}").as_str()
    );
    assert_eq!(part.bytes().await.expect("body"), whole.slice(0..10));
    let rest = fetch(&app, &url, &[(header::RANGE, "bytes=10-")]).await;
    assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(rest.bytes().await.expect("body"), whole.slice(10..));
    let past = fetch(&app, &url, &[(header::RANGE, &format!("bytes={size}-"))]).await;
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    assert_eq!(error_code(past).await, "range_not_satisfiable");
    let stale = fetch(
        &app,
        &url,
        &[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, "\"old\"")],
    )
    .await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.bytes().await.expect("body").len(), size);

    // HEAD: the headers alone.
    let head = fetch_with(&app, Method::HEAD, &url, &[]).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    assert_eq!(head.headers()["etag"], etag.as_str());

    // With a key instead of a signature, every use is checked again (the ETag makes it cheap).
    let path = url.split_once('?').expect("query").0;
    let keyed = app.download(path).await;
    assert_eq!(keyed.status(), StatusCode::OK);
    assert_eq!(keyed.headers()["cache-control"], "private, no-cache");
}

#[tokio::test]
async fn a_tenant_may_opt_into_permanent_public_urls_and_out_again() {
    let app = spawn_app().await;
    let media = ready_media(&app).await;
    let id = media["id"].as_str().expect("id");
    let settings = app.get("/v1/media-settings").await;
    assert_eq!(settings.body, json!({ "public_urls": false }));

    let on = json!({ "public_urls": true });
    let answer = app.send(Method::PUT, "/v1/media-settings", Some(&on)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let media = app.get(&format!("/v1/media/{id}")).await.body;
    let url = url_of(&media, "thumb", "jpeg");
    assert!(url.contains("?sig=") && !url.contains("expires="), "{url}");
    let response = fetch(&app, &url, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );

    let off = json!({ "public_urls": false });
    let answer = app
        .send(Method::PUT, "/v1/media-settings", Some(&off))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(
        error_code(fetch(&app, &url, &[]).await).await,
        "bad_signature"
    );
    let unknown = json!({ "public_urls": true, "other": 1 });
    let answer = app
        .send(Method::PUT, "/v1/media-settings", Some(&unknown))
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        answer.body
    );
}

#[tokio::test]
async fn media_made_before_etags_and_placeholders_are_backfilled_by_the_next_worker() {
    let app = spawn_app().await;
    let media = ready_media(&app).await;
    let id: uuid::Uuid = media["id"].as_str().expect("id").parse().expect("uuid");
    let db = app.services.db().await;
    sqlx::query("UPDATE media_variants SET sha256 = NULL WHERE media_id = $1")
        .bind(id)
        .execute(&db)
        .await
        .expect("forget the hashes");
    let placeholder = media["placeholder"].clone();
    assert!(placeholder["blurhash"].is_string(), "{media}");
    sqlx::query("UPDATE media SET placeholder = NULL WHERE id = $1")
        .bind(id)
        .execute(&db)
        .await
        .expect("forget the placeholder");

    let worker = kiln_tests::Process::spawn("kiln-worker", &[], app.env()).expect("worker");
    worker.wait_for_log("consuming").await.expect("worker up");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let missing: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM media_variants WHERE media_id = $1 AND sha256 IS NULL)
                  + (SELECT count(*) FROM media WHERE id = $1 AND placeholder IS NULL)",
        )
        .bind(id)
        .fetch_one(&db)
        .await
        .expect("count");
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {missing} unhashed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let media = app.get(&format!("/v1/media/{id}")).await.body;
    // From the stored JPEG now, not the pixels before encoding: close, not identical.
    assert_eq!(
        media["placeholder"]["dominant_color"]
            .as_str()
            .map(str::len),
        Some(7),
        "{media}"
    );
    assert!(media["placeholder"]["thumbhash"].is_string(), "{media}");
    let response = fetch(&app, &url_of(&media, "thumb", "jpeg"), &[]).await;
    let etag = response.headers()["etag"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let bytes = response.bytes().await.expect("body");
    assert_eq!(etag, format!("\"{}\"", hex::encode(Sha256::digest(&bytes))));
}

#[tokio::test]
async fn behind_nginx_the_bytes_are_left_to_nginx_once_the_signature_is_checked() {
    let app = kiln_tests::spawn_app_with(
        kiln_tests::Options::default().env("KILN_ACCEL_REDIRECT_PREFIX", "/_kiln_files/"),
    )
    .await;
    let media = ready_media(&app).await;
    let id = media["id"].as_str().expect("id");
    let response = fetch(&app, &url_of(&media, "thumb", "webp"), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-accel-redirect"],
        format!("/_kiln_files/variants/{id}/thumb.webp").as_str()
    );
    assert_eq!(response.headers()["content-type"], "image/webp");
    assert!(response.bytes().await.expect("body").is_empty());
    let tampered = format!("{}x", url_of(&media, "thumb", "webp"));
    let refused = fetch(&app, &tampered, &[]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(!refused.headers().contains_key("x-accel-redirect"));
}

#[tokio::test]
async fn signed_urls_outlive_a_key_rotation_and_die_when_the_old_key_is_dropped() {
    const OLD: &str = "old-url-signing-key-0123456789abcdef";
    const NEW: &str = "new-url-signing-key-0123456789abcdef";
    let app =
        kiln_tests::spawn_app_with(kiln_tests::Options::default().env("KILN_URL_SIGNING_KEY", OLD))
            .await;
    let media = ready_media(&app).await;
    let old_url = url_of(&media, "small", "jpeg");

    // Another API process on the same data, as a deploy brings it up.
    let api_with = |keys: &[(&str, &str)]| {
        let mut env = app.env().clone();
        env.remove("KILN_URL_SIGNING_KEY_PREVIOUS");
        for (name, value) in keys {
            env.insert((*name).to_owned(), (*value).to_owned());
        }
        kiln_tests::Process::spawn("kiln-api", &[], &env).expect("api")
    };
    let get = |address: String, url: String| async move {
        reqwest::get(format!("http://{address}{url}"))
            .await
            .expect("request")
            .status()
    };

    let rotated = api_with(&[
        ("KILN_URL_SIGNING_KEY", NEW),
        ("KILN_URL_SIGNING_KEY_PREVIOUS", OLD),
    ]);
    let rotated_address = rotated
        .wait_for_field("listening", "addr")
        .await
        .expect("listening");
    assert_eq!(
        get(rotated_address.clone(), old_url.clone()).await,
        StatusCode::OK,
        "a URL signed with the previous key still works"
    );
    let id = media["id"].as_str().expect("id");
    let fresh: Value = app
        .client
        .get(format!("http://{rotated_address}/v1/media/{id}"))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("media")
        .json()
        .await
        .expect("json");
    let new_url = url_of(&fresh, "small", "jpeg");
    assert_ne!(new_url, old_url, "signed with the new key");

    let dropped = api_with(&[("KILN_URL_SIGNING_KEY", NEW)]);
    let dropped_address = dropped
        .wait_for_field("listening", "addr")
        .await
        .expect("listening");
    assert_eq!(get(dropped_address.clone(), new_url).await, StatusCode::OK);
    assert_eq!(
        get(dropped_address, old_url).await,
        StatusCode::FORBIDDEN,
        "the old key's URLs end with it"
    );
}
