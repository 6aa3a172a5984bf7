//! The operators' dashboard: login sessions and CSRF over HTTP, the metrics every process
//! exports, and the page itself in a real browser (Debian's Chromium, driven by Playwright).

use std::{process::Command, time::Duration};

use kiln_tests::{
    Options, Process, images, metric_value,
    smtp::{Mode, SmtpServer},
    spawn_app, spawn_app_with,
    webhooks::Receiver,
};
use reqwest::{StatusCode, header};
use serde_json::json;

/// A client that neither follows redirects nor keeps cookies: the test handles both.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn login(app: &kiln_tests::TestApp, key: &str) -> reqwest::Response {
    bare_client()
        .post(format!("{}/admin/login", app.address))
        .form(&[("key", key)])
        .send()
        .await
        .expect("login")
}

#[tokio::test]
async fn an_admin_key_logs_in_to_a_cookie_session_whose_changes_need_the_csrf_token() {
    let app = spawn_app().await;
    let client = bare_client();

    let page = client
        .get(format!("{}/admin", app.address))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("login-form"));
    let not_admin = app.key_for("tenant-b", "media");
    assert_eq!(
        login(&app, &not_admin).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        login(&app, "kiln_nope").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let answer = login(&app, &app.key).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let set_cookie = answer.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let dashboard = client
        .get(format!("{}/admin", app.address))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("dashboard")
        .text()
        .await
        .expect("html");
    let csrf = dashboard
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_owned();
    assert_eq!(csrf.len(), 64);

    let data = client
        .get(format!("{}/admin/data?range=day", app.address))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("data");
    assert_eq!(data.status(), StatusCode::OK);
    let data: serde_json::Value = data.json().await.expect("json");
    assert!(
        data["queues"]
            .as_array()
            .is_some_and(|q| q.len() == kiln_core::jobs::QueueKind::ALL.len()),
        "{data}"
    );
    assert_eq!(data["health"]["status"], "ok", "{data}");

    let retry = |token: Option<String>| {
        let mut request = client
            .post(format!("{}/v1/admin/jobs/retry", app.address))
            .header(header::COOKIE, &cookie);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    let forged = retry(None).await.expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = forged.json().await.expect("json");
    assert_eq!(body["error"]["code"], "csrf_failed");
    assert_eq!(
        retry(Some("0".repeat(64))).await.expect("post").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        retry(Some(csrf.clone())).await.expect("post").status(),
        StatusCode::ACCEPTED
    );

    let logout = client
        .post(format!("{}/admin/logout", app.address))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let after = client
        .get(format!("{}/admin/data", app.address))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("data");
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "the session is gone"
    );
}

async fn scrape(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn every_process_exports_its_series_and_they_move_when_jobs_run() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = spawn_app_with(
        Options::default()
            .env(
                "KILN_SCHEDULES",
                "every-second|* * * * * *|cleanup|skip;nightly-backup|0 0 3 * * *|backup|once",
            )
            .env("KILN_SMTP_URL", smtp.url()),
    )
    .await;
    let worker = app.worker.as_ref().expect("a worker");
    let worker_metrics = worker
        .wait_for_field("metrics listening", "addr")
        .await
        .expect("worker metrics");
    let scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let scheduler_metrics = scheduler
        .wait_for_field("metrics listening", "addr")
        .await
        .expect("scheduler metrics");
    let before = scrape(&worker_metrics).await;
    let succeeded =
        |text: &str| metric_value(text, "kiln_jobs_succeeded_total", &["kind=\"media\""]);

    let uploaded = app.upload(images::sideways_jpeg(64, 32)).await;
    let id = uploaded.body["id"].as_str().expect("id").to_owned();
    app.wait_for_media(&id).await;
    app.get(&format!("/v1/media/{id}")).await;
    let email = app
        .send_email_as(
            &app.key,
            &json!({"to": "ann@example.com", "subject": "Hi", "text": "Hello"}),
        )
        .await;
    app.wait_for_job(email.body["job_id"].as_str().expect("job"))
        .await;
    let backup = app.enqueue_schedule("nightly-backup");
    assert_eq!(app.wait_for_job(&backup).await["status"], "succeeded");

    let api = app.api_metrics().await;
    for (name, labels) in [
        (
            "kiln_http_requests_total",
            &["route=\"/v1/media\"", "status=\"202\"", "method=\"POST\""][..],
        ),
        (
            "kiln_http_request_duration_seconds_count",
            &["route=\"/v1/media/{id}\"", "status=\"200\""][..],
        ),
        ("kiln_jobs_enqueued_total", &["kind=\"media\""][..]),
        ("kiln_cache_lookups_total", &[][..]),
    ] {
        assert!(metric_value(&api, name, labels) >= 1.0, "api {name}: {api}");
    }
    // The backup's gauges are set once its row is committed, which may be after the job reads
    // as succeeded: scrape until they are there (or the deadline).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let worker_text = loop {
        let text = scrape(&worker_metrics).await;
        let last_backup = "kiln_backup_last_success_timestamp_seconds";
        if metric_value(&text, last_backup, &[]) >= 1.0 || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        succeeded(&worker_text) > succeeded(&before),
        "{worker_text}"
    );
    for (name, labels) in [
        ("kiln_jobs_started_total", &["kind=\"media\""][..]),
        ("kiln_job_duration_seconds_count", &["kind=\"media\""][..]),
        ("kiln_job_queue_wait_seconds_count", &["kind=\"media\""][..]),
        ("kiln_resize_seconds_count", &["variant=\"thumb\""][..]),
        ("kiln_email_send_seconds_count", &["outcome=\"sent\""][..]),
        ("kiln_emails_total", &["outcome=\"sent\""][..]),
        ("kiln_backup_duration_seconds_count", &[][..]),
        ("kiln_backup_size_bytes", &[][..]),
        ("kiln_backup_last_success_timestamp_seconds", &[][..]),
    ] {
        assert!(
            metric_value(&worker_text, name, labels) >= 1.0,
            "worker {name}: {worker_text}"
        );
    }
    assert!(
        worker_text.contains("kiln_jobs_in_flight{kind=\"media\"} 0"),
        "{worker_text}"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let scheduler_text = loop {
        let text = scrape(&scheduler_metrics).await;
        let ready = text.contains("kiln_queue_consumers{queue=\"media\"}")
            && text
                .contains("kiln_schedule_last_fire_timestamp_seconds{schedule=\"every-second\"}");
        if ready || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        metric_value(
            &scheduler_text,
            "kiln_queue_consumers",
            &["queue=\"media\""]
        ) >= 1.0,
        "the worker consumes media: {scheduler_text}"
    );
    for series in [
        "kiln_queue_ready_messages{queue=\"email\"}",
        "kiln_queue_dead_messages",
        "kiln_outbox_unpublished_jobs",
        "kiln_outbox_oldest_age_seconds",
        "kiln_dead_jobs{kind=\"media\"}",
        "kiln_schedule_next_fire_timestamp_seconds{schedule=\"every-second\"}",
    ] {
        assert!(
            scheduler_text.contains(series),
            "{series}: {scheduler_text}"
        );
    }
    let samples = app.get("/admin/data?range=hour").await;
    assert!(
        samples.body["samples"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "the scheduler records a sample a minute: {:?}",
        samples.body
    );
}

#[tokio::test]
async fn the_dashboard_works_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/browser/dashboard.mjs");
    let modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/browser/node_modules/playwright-core"
    );
    assert!(
        std::path::Path::new(&chromium).exists() && std::path::Path::new(modules).exists(),
        "needs Debian's chromium and `npm ci --prefix tests/browser` (.ci/run installs both)"
    );
    let smtp = SmtpServer::start(Mode::TempFail(1)).expect("smtp server");
    let app = spawn_app_with(
        Options::default()
            .env("KILN_SMTP_URL", smtp.url())
            .env("KILN_MAX_ATTEMPTS_EMAIL", "1")
            .env("KILN_WEBHOOK_ALLOW_NETS", "127.0.0.0/8"),
    )
    .await;
    // An endpoint told of the failed email refuses it (400: final), for the page to replay.
    let receiver = Receiver::start().expect("webhook receiver");
    receiver.script(json!([{"status": 400}])).await;
    let endpoint = app
        .send(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(&json!({"url": receiver.url("/hooks"), "events": ["email.failed"]})),
        )
        .await;
    let endpoint_id = endpoint.body["id"].as_str().expect("endpoint").to_owned();
    // A paused, rate-limited task queue, for the page's task queue panel.
    let queue = app
        .send(
            reqwest::Method::PUT,
            "/v1/task-queues/reports",
            Some(&json!({"rate_per_sec": 5, "burst": 10, "paused": true})),
        )
        .await;
    assert_eq!(queue.status, StatusCode::OK, "{:?}", queue.body);
    let sent = app
        .send_email_as(
            &app.key,
            &json!({"to": "ann@example.com", "subject": "Hi", "text": "Hello"}),
        )
        .await;
    let job_id = sent.body["job_id"].as_str().expect("job").to_owned();
    assert_eq!(app.wait_for_job(&job_id).await["status"], "dead");
    assert_eq!(receiver.wait_for(1).await[0]["answered"], 400);
    // Its schedules and samples fill the page's schedule table and charts.
    let _scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let screenshot = format!("{}/dashboard.png", env!("CARGO_TARGET_TMPDIR"));

    let app_address = app.address.clone();
    let key = app.key.clone();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("KILN_URL", app_address)
            .env("KILN_ADMIN_KEY", key)
            .env("KILN_DEAD_JOB", &job_id)
            .env("KILN_WEBHOOK_ENDPOINT", &endpoint_id)
            .env("KILN_SCREENSHOT", &screenshot)
            .env("CHROMIUM", chromium)
            .output()
    })
    .await
    .expect("joined")
    .expect("node runs");

    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{}", String::from_utf8_lossy(&run.stdout));
    assert_eq!(smtp.wait_for(1).await.len(), 1, "the retried email arrived");
    let log = receiver.wait_for(2).await;
    assert_eq!(
        log[1]["id"], log[0]["id"],
        "the page replayed the same delivery"
    );
    assert_eq!(log[1]["answered"], 200);
}
