//! Daily quotas per tenant (emails, Kiln's own notifications included; uploads; uploaded
//! bytes) and the usage the tenant and the operators can read.

use std::time::Duration;

use kiln_tests::{Options, TestApp, images, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn app_with(env: &[(&str, &str)], worker: bool) -> TestApp {
    let mut options = Options {
        without_worker: !worker,
        ..Options::default()
    };
    for (key, value) in env {
        options = options.env(key, *value);
    }
    spawn_app_with(options).await
}

fn email() -> Value {
    json!({"to": "bob@example.com", "subject": "Hi", "text": "Hello"})
}

#[tokio::test]
async fn a_tenant_over_its_daily_email_quota_gets_429_naming_it() {
    let app = app_with(&[("KILN_EMAIL_DAILY_LIMIT", "2")], false).await;
    for _ in 0..2 {
        let answer = app.send_email_as(&app.key, &email()).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    }
    let refused = app.send_email_as(&app.key, &email()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "quota_exceeded");
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("emails"), "{message}");
    assert_eq!(refused.body["error"]["quota"], "emails");
    assert_eq!(refused.body["error"]["limit"], 2);
    assert!(refused.headers.get("retry-after").is_some());
    // A refused email is not a job and does not count.
    assert_eq!(app.job_count().await, 2);
    // Another tenant has its own quota.
    let other = app.key_for("tenant-b", "email");
    let answer = app.send_email_as(&other, &email()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let usage = app.get("/v1/usage").await;
    assert_eq!(usage.body["totals"]["emails_accepted"], 2, "{}", usage.body);
}

#[tokio::test]
async fn kiln_s_own_notifications_count_against_the_email_quota() {
    let app = app_with(&[("KILN_EMAIL_DAILY_LIMIT", "1")], true).await;
    let notifying = app.key_notifying("tenant-b", "media,email", "ops@example.com");
    let answer = app.send_email_as(&notifying, &email()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let uploaded = app
        .upload_as(&notifying, images::sideways_jpeg(64, 32))
        .await;
    let id = uploaded.body["id"].as_str().expect("id").to_owned();
    let ready = app.wait_for_media_as(&notifying, &id).await;
    assert_eq!(ready["status"], "ready");
    // The email, the media job, and no "media ready" notification: the quota was used up.
    assert_eq!(app.job_count().await, 2);
}

#[tokio::test]
async fn daily_upload_quotas_count_uploads_and_bytes() {
    let app = app_with(&[("KILN_UPLOAD_DAILY_LIMIT", "1")], false).await;
    let first = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.error_code(), "quota_exceeded");
    assert_eq!(app.stored_files().len(), 1, "{:?}", app.stored_files());

    // Room for one image of the day's bytes, not two: the second waits for tomorrow.
    let image = images::sideways_jpeg(64, 32);
    let limit = (image.len() * 3 / 2).to_string();
    let app = app_with(&[("KILN_UPLOAD_BYTES_DAILY_LIMIT", &limit)], false).await;
    assert_eq!(app.upload(image.clone()).await.status, StatusCode::ACCEPTED);
    let refused = app.upload(image.clone()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("upload_bytes"), "{message}");
    assert_eq!(app.stored_files().len(), 1, "{:?}", app.stored_files());

    // One upload larger than a whole day's bytes can never pass: 413, not a wait.
    let app = app_with(&[("KILN_UPLOAD_BYTES_DAILY_LIMIT", "100")], false).await;
    let refused = app.upload(image).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
}

#[tokio::test]
async fn usage_is_kept_per_tenant_and_day() {
    let app = app_with(&[], true).await;
    let ids = app.upload_small(2).await;
    for id in &ids {
        app.wait_for_media(id).await;
    }
    let accepted = app.send_email_as(&app.key, &email()).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let uploaded = i64::try_from(images::sideways_jpeg(64, 32).len()).expect("size") * 2;
    // Variant bytes and processing time come from the workers a moment later.
    let mut usage = Value::Null;
    for _ in 0..100 {
        usage = app.get("/v1/usage").await.body;
        let totals = &usage["totals"];
        if totals["variant_bytes"].as_i64().unwrap_or(0) > 0
            && totals["processing_seconds"].as_f64().unwrap_or(0.0) > 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let totals = &usage["totals"];
    assert_eq!(usage["tenant"], "tenant-a");
    assert_eq!(totals["uploads"], 2, "{usage}");
    assert_eq!(totals["upload_bytes"], uploaded, "{usage}");
    assert!(totals["variant_bytes"].as_i64().unwrap_or(0) > 0, "{usage}");
    assert!(
        totals["processing_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{usage}"
    );
    assert_eq!(totals["emails_accepted"], 1, "{usage}");
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(usage["days"][0]["day"], today.as_str());

    // Another tenant sees nothing of it; the operators see every tenant.
    let other = app.key_for("tenant-b", "media");
    let theirs = app.get_as(Some(&other), "/v1/usage").await;
    assert_eq!(theirs.body["totals"]["uploads"], 0, "{}", theirs.body);
    let all = app.get("/v1/admin/usage").await;
    let tenants = all.body["tenants"].as_array().expect("tenants");
    assert!(
        tenants.iter().any(|t| t["tenant"] == "tenant-a"),
        "{}",
        all.body
    );
    let forbidden = app.get_as(Some(&other), "/v1/admin/usage").await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    // Ranges are checked.
    for bad in [
        "?from=2026-12-02&to=2026-01-01",
        "?from=2020-01-01&to=2026-01-01",
        "?from=x",
    ] {
        let answer = app.get(&format!("/v1/usage{bad}")).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(answer.error_code(), "invalid_filter");
    }
}
