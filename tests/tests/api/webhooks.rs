//! Webhooks end to end: events from real uploads, delivered by the real worker to a receiver
//! that verifies every signature with the Standard Webhooks reference library (PyPI's
//! `standardwebhooks`), through retries, `Retry-After`, 410, secret rotation, the address
//! filter, replays and a worker killed mid-delivery.

use std::time::Duration;

use kiln_tests::{
    Options, Process, TestApp, images,
    smtp::{Mode, SmtpServer},
    spawn_app_with,
    webhooks::Receiver,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An app whose deliveries may reach loopback (the receiver), retried after about a second,
/// with a scheduler (its relay sends retries when due).
async fn app_reaching_loopback(extra: &[(&str, &str)]) -> TestApp {
    let mut options = Options::default()
        .env("KILN_WEBHOOK_ALLOW_NETS", "127.0.0.0/8,::1/128")
        .env("KILN_WEBHOOK_RETRY_DELAYS", "1s");
    for (key, value) in extra {
        options = options.env(key, *value);
    }
    spawn_app_with(Options {
        with_scheduler: true,
        ..options
    })
    .await
}

/// Creates an endpoint; returns its id and secret.
async fn endpoint(app: &TestApp, url: &str, events: Value) -> (String, String) {
    let created = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": url, "events": events})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let secret = created.body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (id, secret)
}

/// Uploads a small image and waits until it is ready; returns its id.
async fn ready_media(app: &TestApp) -> String {
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let id = answer.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.wait_for_media(&id).await["status"], "ready");
    id
}

/// The endpoint's deliveries, newest first.
async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let answer = app
        .get(&format!("/v1/webhooks/{endpoint}/deliveries"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["deliveries"]
        .as_array()
        .expect("deliveries")
        .clone()
}

/// Waits (two minutes at most) until the endpoint's newest delivery has `status`.
async fn wait_for_delivery(app: &TestApp, endpoint: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let found = deliveries(app, endpoint).await;
        if let Some(newest) = found.first()
            && newest["status"] == status
        {
            return newest.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {status} delivery: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn body_of(delivery: &Value) -> Value {
    serde_json::from_str(delivery["body"].as_str().expect("body")).expect("a JSON body")
}

#[tokio::test]
async fn an_upload_sends_one_verified_media_ready_and_a_500_brings_the_same_id_again() {
    let app = app_reaching_loopback(&[]).await;
    let receiver = Receiver::start().expect("receiver");
    let (endpoint_id, secret) =
        endpoint(&app, &receiver.url("/hooks"), json!(["media.ready"])).await;
    receiver.verify_with(&[&secret]).await;
    receiver.script(json!([{"status": 500}])).await;

    let media = ready_media(&app).await;
    let delivery = wait_for_delivery(&app, &endpoint_id, "succeeded").await;
    let log = receiver.log().await;
    assert_eq!(log.len(), 2, "a 500, then a 200, and nothing more: {log:?}");
    for (entry, answered) in log.iter().zip([500, 200]) {
        assert_eq!(entry["verified_with"], json!([0]), "{entry}");
        assert_eq!(entry["answered"], answered);
        assert_eq!(
            entry["id"], log[0]["id"],
            "the same webhook-id on every attempt"
        );
        assert_eq!(
            entry["body"], log[0]["body"],
            "the same bytes on every attempt"
        );
    }
    let event = body_of(&log[0]);
    assert_eq!(event["type"], "media.ready");
    assert_eq!(event["data"]["id"], media.as_str());
    assert_eq!(event["data"]["status"], "ready");
    assert!(
        !event["data"]["variants"]
            .as_array()
            .expect("variants")
            .is_empty()
    );
    assert!(event["timestamp"].is_string());
    assert_eq!(delivery["attempts"], 2);
    assert_eq!(delivery["response_status"], 200);
    assert_eq!(delivery["message_id"], log[0]["id"]);
    assert_eq!(delivery["event_type"], "media.ready");
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_410_disables_the_endpoint_until_it_is_enabled() {
    let app = app_reaching_loopback(&[]).await;
    let receiver = Receiver::start().expect("receiver");
    let (endpoint_id, secret) = endpoint(&app, &receiver.url("/h"), json!(["*"])).await;
    receiver.verify_with(&[&secret]).await;
    receiver
        .script(json!([{"status": 429, "retry_after": "3"}, {"status": 410}]))
        .await;

    ready_media(&app).await;
    let failed = wait_for_delivery(&app, &endpoint_id, "failed").await;
    let log = receiver.log().await;
    assert_eq!(log.len(), 2, "{log:?}");
    let waited = log[1]["received_at"].as_f64().expect("time")
        - log[0]["received_at"].as_f64().expect("time");
    // Never before Retry-After; and a due retry starts within the relay's second plus the
    // worker's pick-up (a generous bound here: the machine may be busy).
    assert!(
        waited >= 3.0,
        "the retry came {waited:.2}s after a Retry-After of 3"
    );
    assert!(
        waited < 30.0,
        "the retry came {waited:.2}s after being due in 3"
    );
    assert_eq!(failed["response_status"], 410);
    let endpoint_now = app.get(&format!("/v1/webhooks/{endpoint_id}")).await;
    assert_eq!(endpoint_now.body["enabled"], false);
    assert!(
        endpoint_now.body["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{:?}",
        endpoint_now.body
    );

    // A disabled endpoint gets nothing, and cannot be replayed to until it is enabled.
    let retry = format!(
        "/v1/webhooks/{endpoint_id}/deliveries/{}/retry",
        failed["id"].as_str().expect("id")
    );
    let refused = app.send(Method::POST, &retry, None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.error_code(), "endpoint_disabled");
    let enabled = app
        .send(
            Method::PATCH,
            &format!("/v1/webhooks/{endpoint_id}"),
            Some(&json!({"enabled": true})),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{:?}", enabled.body);
    assert!(enabled.body["disabled_reason"].is_null());
    let replayed = app.send(Method::POST, &retry, None).await;
    assert_eq!(replayed.status, StatusCode::ACCEPTED, "{:?}", replayed.body);
    wait_for_delivery(&app, &endpoint_id, "succeeded").await;
    let log = receiver.log().await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[2]["id"], log[0]["id"], "a replay keeps the webhook-id");
    assert_eq!(log[2]["verified_with"], json!([0]));
    // Only a failed delivery is replayed.
    let again = app.send(Method::POST, &retry, None).await;
    assert_eq!(again.error_code(), "delivery_not_failed");
}

#[tokio::test]
async fn a_rotated_secret_keeps_signing_beside_the_new_one_during_the_overlap() {
    let app = app_reaching_loopback(&[]).await;
    let receiver = Receiver::start().expect("receiver");
    let (endpoint_id, old) = endpoint(&app, &receiver.url("/h"), json!(["media.ready"])).await;
    let rotate = format!("/v1/webhooks/{endpoint_id}/rotate-secret");
    let rotated = app
        .send(Method::POST, &rotate, Some(&json!({"overlap_secs": 3600})))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new = rotated.body["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    assert!(rotated.body["previous_secret_expires_at"].is_string());
    receiver.verify_with(&[&old, &new]).await;
    ready_media(&app).await;
    let log = receiver.wait_for(1).await;
    assert_eq!(
        log[0]["verified_with"],
        json!([0, 1]),
        "both secrets verify"
    );
    let signatures = log[0]["signature"].as_str().expect("signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");

    // Without an overlap the old secret stops at once.
    let rotated = app
        .send(Method::POST, &rotate, Some(&json!({"overlap_secs": 0})))
        .await;
    let newest = rotated.body["secret"].as_str().expect("secret").to_owned();
    receiver.verify_with(&[&newest, &new]).await;
    ready_media(&app).await;
    let log = receiver.wait_for(2).await;
    assert_eq!(log[1]["verified_with"], json!([0]), "{:?}", log[1]);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
    // No KILN_WEBHOOK_ALLOW_NETS: public addresses only.
    let app = spawn_app_with(Options::default()).await;
    let receiver = Receiver::start().expect("receiver");
    let literal = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": receiver.url("/h"), "events": ["*"]})),
        )
        .await;
    assert_eq!(literal.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        literal.body["error"]["fields"]["url"].is_string(),
        "{:?}",
        literal.body
    );
    // A name is checked where it matters, on the addresses it resolves to when dialled.
    let by_name = format!("http://localhost:{}/h", receiver.port);
    let (endpoint_id, _) = endpoint(&app, &by_name, json!(["media.ready"])).await;
    ready_media(&app).await;
    let failed = wait_for_delivery(&app, &endpoint_id, "failed").await;
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("may not reach"), "{failed}");
    assert_eq!(failed["attempts"], 1, "a refused address is not retried");
    assert!(
        receiver.log().await.is_empty(),
        "nothing reached the receiver"
    );
}

#[tokio::test]
async fn endpoints_are_the_tenant_s_own_and_checked_field_by_field() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
    })
    .await;
    let bad = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": "ftp://example.com/x", "events": ["media.exploded"]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.error_code(), "validation_failed");
    assert!(bad.body["error"]["fields"]["url"].is_string());
    assert!(bad.body["error"]["fields"]["events"].is_string());
    let nul = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": "https://example.com/\u{0}", "events": ["*"], "description": "a\u{0}"})),
        )
        .await;
    assert_eq!(
        nul.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        nul.body
    );

    let (id, _) = endpoint(&app, "https://example.com/hooks", json!(["media.ready"])).await;
    let listed = app.get("/v1/webhooks").await;
    assert_eq!(listed.body["endpoints"][0]["id"], id.as_str());
    assert!(
        listed.body["endpoints"][0].get("secret").is_none(),
        "never listed"
    );
    let patched = app
        .send(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&json!({"events": ["media.ready", "media.failed"], "description": "app"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(
        patched.body["events"],
        json!(["media.ready", "media.failed"])
    );

    // Backup events are for endpoints made with an admin key.
    let webhooks_only = app.key_for("tenant-b", "webhooks");
    let body = json!({"url": "https://example.com/b", "events": ["backup.failed"]});
    let answer = app
        .send_as(&webhooks_only, Method::POST, "/v1/webhooks", Some(&body))
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Another tenant sees none of tenant-a's endpoints.
    let theirs = app
        .get_as(Some(&webhooks_only), &format!("/v1/webhooks/{id}"))
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let log = app
        .get_as(
            Some(&webhooks_only),
            &format!("/v1/webhooks/{id}/deliveries"),
        )
        .await;
    assert_eq!(log.status, StatusCode::NOT_FOUND);
    let media_only = app.key_for("tenant-a", "media");
    assert_eq!(
        app.get_as(Some(&media_only), "/v1/webhooks").await.status,
        StatusCode::FORBIDDEN
    );

    let deleted = app
        .send(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/webhooks/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_worker_killed_mid_delivery_still_leads_to_a_delivery() {
    // The killed worker's job is taken over once its heartbeat lapses (the rescuer).
    let mut app = app_reaching_loopback(&[("KILN_HEARTBEAT_TIMEOUT", "2s")]).await;
    let receiver = Receiver::start().expect("receiver");
    let (endpoint_id, secret) = endpoint(&app, &receiver.url("/h"), json!(["media.ready"])).await;
    receiver.verify_with(&[&secret]).await;
    // The first request is held long enough to kill the worker while it waits.
    receiver.script(json!([{"status": 200, "sleep": 30}])).await;
    ready_media(&app).await;
    receiver.wait_for(1).await;
    let mut worker = app.worker.take().expect("worker");
    worker.signal("KILL");
    worker
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    app.worker = Some(Process::spawn("kiln-worker", &[], app.env()).expect("restarted"));

    let delivery = wait_for_delivery(&app, &endpoint_id, "succeeded").await;
    let log = receiver.log().await;
    assert!(log.len() >= 2, "{log:?}");
    assert!(log.iter().all(|entry| entry["id"] == log[0]["id"]));
    assert!(log.iter().all(|entry| entry["verified_with"] == json!([0])));
    assert_eq!(delivery["message_id"], log[0]["id"]);
}

#[tokio::test]
async fn an_endpoint_failing_longer_than_disable_after_is_disabled_and_its_tenant_emailed() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = app_reaching_loopback(&[
        ("KILN_WEBHOOK_DISABLE_AFTER", "2s"),
        // Attempts about a second apart, enough of them to be failing for over 2 s.
        ("KILN_WEBHOOK_RETRY_DELAYS", "1s,1s,1s,1s,1s,1s,1s,1s"),
        ("KILN_SMTP_URL", &smtp.url()),
    ])
    .await;
    // The tenant's notification address is its oldest key's that has one.
    app.key_notifying("tenant-a", "media", "ops@example.com");
    let receiver = Receiver::start().expect("receiver");
    let (endpoint_id, _) = endpoint(&app, &receiver.url("/down"), json!(["media.ready"])).await;
    receiver
        .script(json!(vec![json!({"status": 500}); 50]))
        .await;
    ready_media(&app).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let disabled = loop {
        let now = app.get(&format!("/v1/webhooks/{endpoint_id}")).await;
        if now.body["enabled"] == false {
            break now.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still enabled: {:?}",
            now.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = disabled["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("longer than"), "{reason}");
    let told = smtp.wait_for(1).await;
    assert_eq!(told[0]["rcpt_tos"], json!(["ops@example.com"]));
    // The body may be quoted-printable: undo its soft line breaks before reading it.
    let message = told[0]["data"]
        .as_str()
        .unwrap_or_default()
        .replace("=\r\n", "");
    assert!(
        message.contains("Kiln disabled a webhook endpoint"),
        "{message}"
    );
    assert!(message.contains(&endpoint_id), "{message}");
    // Every attempt failed, so the endpoint had been failing since the first.
    assert!(receiver.log().await.len() >= 2);
}

#[tokio::test]
async fn each_event_type_reaches_an_endpoint_with_its_data_and_email_events_carry_no_addresses() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = app_reaching_loopback(&[("KILN_SMTP_URL", &smtp.url())]).await;
    let receiver = Receiver::start().expect("receiver");
    let (_, secret) = endpoint(&app, &receiver.url("/all"), json!(["*"])).await;
    receiver.verify_with(&[&secret]).await;

    // media.ready, then media.deleted.
    let media = ready_media(&app).await;
    let deleted = app
        .send(Method::DELETE, &format!("/v1/media/{media}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{:?}", deleted.body);
    // media.failed and job.dead: a photo cut short cannot be decoded.
    let mut broken = images::bench_photo("photo-4mp.jpg");
    broken.truncate(broken.len() / 3);
    let failed = app.upload(broken).await;
    let failed_id = failed.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.wait_for_media(&failed_id).await["status"], "failed");
    // email.sent.
    let sent = app
        .send_email_as(
            &app.key,
            &json!({"to": "ann@example.com", "subject": "Secret plans", "text": "Body"}),
        )
        .await;
    let email_job = sent.body["job_id"].as_str().expect("job").to_owned();

    let log = receiver.wait_for(5).await;
    let events: Vec<Value> = log.iter().map(body_of).collect();
    let of = |kind: &str| {
        events
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {events:?}"))
            .clone()
    };
    assert_eq!(of("media.ready")["data"]["id"], media.as_str());
    assert_eq!(of("media.deleted")["data"]["id"], media.as_str());
    assert_eq!(of("media.deleted")["data"]["status"], "deleted");
    let failure = of("media.failed");
    assert_eq!(failure["data"]["id"], failed_id.as_str());
    assert!(failure["data"]["error"].is_string());
    let dead = of("job.dead");
    assert_eq!(dead["data"]["kind"], "media");
    assert_eq!(dead["data"]["status"], "dead");
    let email = of("email.sent");
    assert_eq!(email["data"]["id"], email_job.as_str());
    assert_eq!(email["data"]["recipients"], 1);
    let text = email.to_string();
    assert!(
        !text.contains("ann@example.com") && !text.contains("Secret plans"),
        "{text}"
    );
    assert!(log.iter().all(|e| e["verified_with"] == json!([0])));
}

#[tokio::test]
async fn backup_events_reach_endpoints_made_with_an_admin_key_only() {
    let app = app_reaching_loopback(&[]).await;
    let operators = Receiver::start().expect("receiver");
    let tenant = Receiver::start().expect("receiver");
    let (_, secret) = endpoint(&app, &operators.url("/ops"), json!(["backup.succeeded"])).await;
    operators.verify_with(&[&secret]).await;
    // A key without the admin scope: its "*" is every event its tenant may see.
    let webhooks_only = app.key_for("tenant-a", "webhooks");
    let body = json!({"url": tenant.url("/app"), "events": ["*"]});
    let made = app
        .send_as(&webhooks_only, Method::POST, "/v1/webhooks", Some(&body))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);

    let output =
        kiln_tests::run("kiln-scheduler", &["enqueue", "nightly-backup"], app.env()).expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let job_id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(app.wait_for_job(&job_id).await["status"], "succeeded");

    let log = operators.wait_for(1).await;
    let event = body_of(&log[0]);
    assert_eq!(event["type"], "backup.succeeded");
    assert_eq!(event["data"]["job_id"], job_id.as_str());
    assert!(event["data"]["sha256"].is_string());
    assert_eq!(log[0]["verified_with"], json!([0]));
    // Deliveries are written in the backup's own transaction, which committed before the job
    // succeeded: the tenant key's endpoint has none.
    let tenant_endpoint = made.body["id"].as_str().expect("id");
    let theirs = app
        .get_as(
            Some(&webhooks_only),
            &format!("/v1/webhooks/{tenant_endpoint}/deliveries"),
        )
        .await;
    assert_eq!(theirs.body["deliveries"], json!([]), "{:?}", theirs.body);
    assert!(tenant.log().await.is_empty());
}
