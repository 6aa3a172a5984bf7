//! What one client may take: request rates per key (shared by API processes, per process when
//! Redis is down), failed authentications per address, uploads in flight per process and per
//! tenant, and the minimum pace of an upload.

use std::time::Duration;

use kiln_tests::{Answer, Options, Process, TestApp, images, metric_value, spawn_app_with};
use reqwest::StatusCode;
use tokio::{io::AsyncWriteExt, net::TcpStream};

async fn app_with(env: &[(&str, &str)]) -> TestApp {
    let mut options = Options {
        without_worker: true,
        ..Options::default()
    };
    for (key, value) in env {
        options = options.env(key, *value);
    }
    spawn_app_with(options).await
}

/// Another API process on the same services (and Redis namespace), and its address.
async fn second_api(app: &TestApp) -> (Process, String) {
    let second = Process::spawn("kiln-api", &[], app.env()).expect("second api");
    let address = second
        .wait_for_field("listening", "addr")
        .await
        .expect("listening");
    (second, format!("http://{address}"))
}

/// Any authenticated read: a job that does not exist (404) counts like any other request.
fn some_path() -> String {
    format!("/v1/jobs/{}", uuid::Uuid::now_v7())
}

async fn get_on(app: &TestApp, address: &str, key: Option<&str>, path: &str) -> Answer {
    let mut request = app.client.get(format!("{address}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body,
    }
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_the_ratelimit_fields() {
    let app = app_with(&[("KILN_RATE_LIMIT", "5/m:5")]).await;
    for left in (0..5).rev() {
        let answer = app.get(&some_path()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(header(&answer, "ratelimit-policy"), "\"media\";q=5;w=60");
        let current = header(&answer, "ratelimit");
        assert!(
            current.starts_with(&format!("\"media\";r={left};t=")),
            "{current}"
        );
    }
    let refused = app.get(&some_path()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "rate_limited");
    let retry_after: u64 = header(&refused, "retry-after").parse().expect("seconds");
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    assert!(header(&refused, "ratelimit").starts_with("\"media\";r=0;"));

    // Each scope is a bucket of its own; another key has its own buckets too.
    let email = app.send_email_as(&app.key, &serde_json::json!({})).await;
    assert_eq!(
        email.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        email.body
    );
    assert!(header(&email, "ratelimit-policy").starts_with("\"email\";"));
    let other = app.key_for("tenant-b", "media");
    let answer = get_on(&app, &app.address, Some(&other), &some_path()).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn zero_turns_the_rate_limit_off() {
    let app = app_with(&[("KILN_RATE_LIMIT", "0")]).await;
    for _ in 0..300 {
        let answer = app.get(&some_path()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert!(answer.headers.get("ratelimit").is_none());
    }
}

#[tokio::test]
async fn api_processes_share_a_key_s_rate_through_redis() {
    // A burst far larger than the syncs it takes: the second process must learn of the first
    // one's use long before it could spend a burst of its own, however slow the machine.
    let app = app_with(&[("KILN_RATE_LIMIT", "100/h:100")]).await;
    let (_second, second_address) = second_api(&app).await;
    for _ in 0..100 {
        assert_eq!(app.get(&some_path()).await.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        app.get(&some_path()).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The second process learns of the first one's use within its sync interval, long before
    // it could have spent a burst of its own.
    let mut admitted = 0;
    loop {
        let answer = get_on(&app, &second_address, Some(&app.key), &some_path()).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        admitted += 1;
        assert!(
            admitted < 100,
            "the second process never saw the first one's use"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn with_redis_down_each_process_still_limits() {
    let app = app_with(&[
        ("KILN_RATE_LIMIT", "3/m:3"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(app.get(&some_path()).await.status, StatusCode::NOT_FOUND);
    }
    let refused = app.get(&some_path()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let app = app_with(&[("KILN_AUTH_FAILURE_LIMIT", "3/m:3")]).await;
    let bad = "kiln_0000000000000000000000000000000000000000000000000000000000000000";
    for _ in 0..3 {
        let answer = get_on(&app, &app.address, Some(bad), &some_path()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    // Refused before any key is looked at, a good one included: this address is guessing.
    let answer = get_on(&app, &app.address, Some(bad), &some_path()).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.error_code(), "rate_limited");
    assert!(answer.headers.get("retry-after").is_some());
    let good = get_on(&app, &app.address, Some(&app.key), &some_path()).await;
    assert_eq!(good.status, StatusCode::TOO_MANY_REQUESTS);
    // The dashboard's login form is held to the same limit.
    let login = app
        .client
        .post(format!("{}/admin/login", app.address))
        .form(&[("key", bad)])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::TOO_MANY_REQUESTS);
    // From this untrusted peer, X-Forwarded-For changes nothing.
    let forged = app
        .client
        .get(format!("{}{}", app.address, some_path()))
        .bearer_auth(&app.key)
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let app = app_with(&[
        ("KILN_AUTH_FAILURE_LIMIT", "2/m:2"),
        ("KILN_TRUSTED_PROXIES", "127.0.0.1/32,::1"),
    ])
    .await;
    let bad = "kiln_0000000000000000000000000000000000000000000000000000000000000000";
    let as_client = |client: &'static str, key: String| {
        app.client
            .get(format!("{}{}", app.address, some_path()))
            .bearer_auth(key)
            .header("x-forwarded-for", client)
            .send()
    };
    for _ in 0..2 {
        let answer = as_client("203.0.113.7", bad.into()).await.expect("request");
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let blocked = as_client("203.0.113.7", app.key.clone())
        .await
        .expect("request");
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = as_client("203.0.113.8", app.key.clone())
        .await
        .expect("request");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

/// Starts an upload that sends a few bytes and then holds on: it keeps its slot.
async fn held_upload(address: &str, key: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/media HTTP/1.1\r\nHost: kiln\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&images::sideways_jpeg(64, 32)[..100])
        .await
        .expect("start");
    stream
}

/// Uploads until the answer is not `too_many_uploads` (the held upload's slot may take a moment
/// to be released once its connection closes).
async fn upload_once_free(app: &TestApp, key: &str) -> Answer {
    for _ in 0..100 {
        let answer = app.upload_as(key, images::sideways_jpeg(64, 32)).await;
        if answer.error_code() != "too_many_uploads" {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the slot was never released");
}

#[tokio::test]
async fn uploads_in_flight_are_capped_per_process() {
    let app = app_with(&[("KILN_MAX_UPLOADS_IN_FLIGHT", "1")]).await;
    let held = held_upload(&app.address, &app.key).await;
    // The held upload has its slot once the server has read its headers.
    for _ in 0..200 {
        let metrics = app.api_metrics().await;
        if metric_value(&metrics, "kiln_uploads_in_flight", &[]) == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.error_code(), "too_many_uploads");
    assert!(refused.headers.get("retry-after").is_some());
    drop(held);
    let answer = upload_once_free(&app, &app.key).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
}

#[tokio::test]
async fn a_tenant_s_uploads_in_flight_are_capped_across_processes() {
    let app = app_with(&[("KILN_TENANT_UPLOADS_IN_FLIGHT", "1")]).await;
    let (_second, second_address) = second_api(&app).await;
    let held = held_upload(&second_address, &app.key).await;
    // The lease is in Redis before the other process is asked.
    let lease_key = format!("{}:uploads:tenant-a", app.env()["KILN_NAMESPACE"]);
    let mut redis = redis::Client::open(kiln_tests::redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    for _ in 0..100 {
        let leases: i64 = redis::cmd("ZCARD")
            .arg(&lease_key)
            .query_async(&mut redis)
            .await
            .expect("zcard");
        if leases == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut refused = false;
    for _ in 0..100 {
        let answer = app.upload(images::sideways_jpeg(64, 32)).await;
        if answer.error_code() == "too_many_uploads" {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "the tenant's second upload, on another process, is refused"
    );
    // Another tenant is not held back by this one.
    let other = app.key_for("tenant-b", "media");
    let answer = app.upload_as(&other, images::sideways_jpeg(64, 32)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    drop(held);
    let answer = upload_once_free(&app, &app.key).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
}

#[tokio::test]
async fn an_upload_slower_than_the_minimum_pace_is_cut_off_and_leaves_no_file() {
    let app = app_with(&[
        ("KILN_UPLOAD_MIN_BYTES_PER_SEC", "1000"),
        ("KILN_UPLOAD_RATE_WINDOW_SECS", "1"),
    ])
    .await;
    let jpeg = images::sideways_jpeg(64, 32);
    // A trickle: 20 bytes in the first window, far below 1000 bytes/s, then nothing more while
    // the body stays open. (Bytes still arriving after the server answered and closed would
    // make the kernel reset the connection, and the client could lose the 408 it was sent.)
    let (sender, body) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let trickle = {
        let jpeg = jpeg.clone();
        tokio::spawn(async move {
            for chunk in jpeg.chunks(10).take(2) {
                if sender.send(Ok(chunk.to_vec())).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(sender);
        })
    };
    let stream = receiver_stream(body);
    let answer = app.upload(reqwest::Body::wrap_stream(stream)).await;
    trickle.abort();
    assert_eq!(
        answer.status,
        StatusCode::REQUEST_TIMEOUT,
        "{:?}",
        answer.body
    );
    assert_eq!(answer.error_code(), "upload_timeout");
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());

    // Slow but steady passes: 2 KB every half second for three seconds.
    let mut padded = jpeg.clone();
    padded.resize(jpeg.len().max(12_000), 0);
    let (sender, body) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tokio::spawn(async move {
        for chunk in padded.chunks(2_000) {
            sender.send(Ok(chunk.to_vec())).await.ok();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let stream = receiver_stream(body);
    let answer = app.upload(reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
}

/// The chunks sent into `receiver`, as a request body stream.
fn receiver_stream(
    receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
