//! HTTP tasks end to end: sent by the real worker to a receiver that verifies every signature
//! with PyPI's `standardwebhooks`; dedupe per tenant, delays, cancel, pause, retries, and a
//! queue's rate holding across two workers.

use std::time::Duration;

use kiln_tests::{Answer, Options, Process, TestApp, spawn_app_with, webhooks::Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn app(with_worker: bool) -> TestApp {
    spawn_app_with(Options {
        with_scheduler: with_worker,
        without_worker: !with_worker,
        ..Options::default().env("KILN_WEBHOOK_ALLOW_NETS", "127.0.0.0/8")
    })
    .await
}

/// Creates (or resets) a queue as `key`; returns its signing secret.
async fn queue(app: &TestApp, key: &str, name: &str, limits: Value) -> String {
    let path = format!("/v1/task-queues/{name}");
    let put = app.send_as(key, Method::PUT, &path, Some(&limits)).await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let secret = app.get_as(Some(key), &format!("{path}/secret")).await;
    secret.body["secret"].as_str().expect("secret").to_owned()
}

async fn task(app: &TestApp, body: Value) -> Answer {
    app.send(Method::POST, "/v1/tasks", Some(&body)).await
}

/// Waits (two minutes at most) until the task has `status`.
async fn wait_for_task(app: &TestApp, key: &str, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let answer = app.get_as(Some(key), &format!("/v1/tasks/{id}")).await;
        if answer.body["status"] == status {
            return answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} never {status}: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seconds(time: &Value) -> f64 {
    let parsed =
        chrono::DateTime::parse_from_rfc3339(time.as_str().expect("a time")).expect("rfc3339");
    parsed.timestamp_micros() as f64 / 1e6
}

#[tokio::test]
async fn a_task_is_sent_signed_as_asked_and_its_dedupe_key_is_the_tenant_s_own() {
    let app = app(true).await;
    let receiver = Receiver::start().expect("receiver");
    let other = app.key_for("tenant-b", "tasks");
    let ours = queue(&app, &app.key, "default", json!({})).await;
    let theirs = queue(&app, &other, "default", json!({})).await;
    assert_ne!(ours, theirs);
    receiver.verify_with(&[&ours, &theirs]).await;

    let request = json!({
        "url": receiver.url("/reports"), "method": "PUT", "body": "hello",
        "headers": {"x-app": "42", "content-type": "text/plain"}, "dedupe_key": "report-7",
    });
    let made = task(&app, request.clone()).await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{:?}", made.body);
    let id = made.body["id"].as_str().expect("id").to_owned();
    assert_eq!(made.headers["location"], format!("/v1/tasks/{id}").as_str());
    let again = task(&app, request.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "a repeat returns the first");
    assert_eq!(again.body["id"], id.as_str());
    let elsewhere = app
        .send_as(&other, Method::POST, "/v1/tasks", Some(&request))
        .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::ACCEPTED,
        "another tenant's key is its own"
    );
    assert_ne!(elsewhere.body["id"], id.as_str());

    let done = wait_for_task(&app, &app.key, &id, "succeeded").await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["response_status"], 200);
    let log = receiver.wait_for(2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    for entry in &log {
        assert_eq!(entry["method"], "PUT");
        assert_eq!(entry["body"], "hello");
        assert_eq!(entry["headers"]["x-app"], "42");
        assert_eq!(entry["headers"]["content-type"], "text/plain");
    }
    let verified: Vec<&Value> = log.iter().map(|e| &e["verified_with"]).collect();
    assert!(
        verified.contains(&&json!([0])) && verified.contains(&&json!([1])),
        "{verified:?}"
    );
    // Another tenant sees none of it.
    let hidden = app.get_as(Some(&other), &format!("/v1/tasks/{id}")).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delays_pauses_cancels_and_retries_hold() {
    let app = app(true).await;
    let receiver = Receiver::start().expect("receiver");
    let secret = queue(&app, &app.key, "default", json!({})).await;
    receiver.verify_with(&[&secret]).await;
    receiver.script(json!([{"status": 503}])).await;

    // A 503, then a 200: the same webhook-id twice, after the task's own backoff.
    let retried = task(
        &app,
        json!({"url": receiver.url("/retried"), "retry": {"min_backoff": 0.5, "max_backoff": 1}}),
    )
    .await;
    let retried_id = retried.body["id"].as_str().expect("id").to_owned();
    let done = wait_for_task(&app, &app.key, &retried_id, "succeeded").await;
    assert_eq!(done["attempts"], 2);
    let log = receiver.wait_for(2).await;
    assert_eq!(log[0]["answered"], 503);
    assert_eq!(log[1]["id"], log[0]["id"]);
    assert!(log.iter().all(|e| e["verified_with"] == json!([0])));

    // A delayed task is not sent before its time.
    let asked = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let delayed = task(
        &app,
        json!({"url": receiver.url("/delayed"), "delay_secs": 2}),
    )
    .await;
    let delayed_id = delayed.body["id"].as_str().expect("id").to_owned();
    let created = asked;
    assert!(seconds(&delayed.body["run_at"]) >= asked + 2.0);
    wait_for_task(&app, &app.key, &delayed_id, "succeeded").await;
    let log = receiver.wait_for(3).await;
    let sent = log
        .iter()
        .find(|e| e["path"] == "/delayed")
        .expect("delayed");
    let waited = sent["received_at"].as_f64().expect("time") - created;
    assert!(
        waited >= 2.0,
        "sent {waited:.2}s after it was made with a 2 s delay"
    );

    // A task that has not started can be cancelled, and is never sent.
    let later = task(
        &app,
        json!({"url": receiver.url("/later"), "delay_secs": 3600}),
    )
    .await;
    let later_id = later.body["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/tasks/{later_id}");
    let cancelled = app.send(Method::DELETE, &path, None).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(
        app.send(Method::DELETE, &path, None).await.error_code(),
        "task_started"
    );

    // A paused queue's tasks wait; resumed, they are sent.
    queue(&app, &app.key, "held", json!({"paused": true})).await;
    let held = task(&app, json!({"url": receiver.url("/held"), "queue": "held"})).await;
    let held_id = held.body["id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = app.get(&format!("/v1/tasks/{held_id}")).await;
    assert_eq!(
        waiting.body["status"], "waiting",
        "a paused queue sends nothing"
    );
    queue(&app, &app.key, "held", json!({"paused": false})).await;
    wait_for_task(&app, &app.key, &held_id, "succeeded").await;
    let log = receiver.log().await;
    assert!(log.iter().all(|e| e["path"] != "/later"), "{log:?}");
}

#[tokio::test]
async fn a_queue_limited_to_5_a_second_never_starts_more_than_10_in_any_second_on_two_workers() {
    let app = app(true).await;
    let _second = Process::spawn("kiln-worker", &[], app.env()).expect("a second worker");
    let receiver = Receiver::start().expect("receiver");
    queue(
        &app,
        &app.key,
        "slow",
        json!({"rate_per_sec": 5, "burst": 5}),
    )
    .await;
    let tasks: Vec<Value> = (0..30)
        .map(|i| json!({"url": receiver.url(&format!("/t{i}")), "queue": "slow"}))
        .collect();
    let batch = app
        .send(
            Method::POST,
            "/v1/tasks/batch",
            Some(&json!({"tasks": tasks})),
        )
        .await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{:?}", batch.body);
    receiver.wait_for(30).await;

    let db = app.services.db().await;
    let mut started: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at)::float8 FROM jobs WHERE kind = 'task'",
    )
    .fetch_all(&db)
    .await
    .expect("start times");
    started.sort_by(f64::total_cmp);
    assert_eq!(started.len(), 30);
    let busiest = (0..started.len())
        .map(|i| {
            started[i..]
                .iter()
                .take_while(|t| **t - started[i] < 1.0)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest <= 10,
        "{busiest} tasks started within one second: {started:?}"
    );
    let workers: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT worker_id) FROM jobs WHERE kind = 'task'")
            .fetch_one(&db)
            .await
            .expect("workers");
    assert!(workers >= 1);
}

#[tokio::test]
async fn bad_tasks_are_refused_field_by_field_and_a_bad_batch_writes_nothing() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
    })
    .await;
    let bad = task(
        &app,
        json!({
            "url": "http://127.0.0.1:9/x", "method": "TRACE", "headers": {"Connection": "close",
            "webhook-id": "x", "x-ok": "1"}, "body": "a", "body_base64": "YQ==",
            "run_at": "2026-01-01T00:00:00Z", "delay_secs": 5, "queue": "No Spaces",
            "max_attempts": 0, "timeout_secs": 301, "retry": {"min_backoff": 10, "max_backoff": 1},
        }),
    )
    .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    let fields = &bad.body["error"]["fields"];
    for field in [
        "url",
        "method",
        "headers.Connection",
        "headers.webhook-id",
        "body",
        "run_at",
        "queue",
        "max_attempts",
        "timeout_secs",
        "retry",
    ] {
        assert!(fields[field].is_string(), "{field}: {fields}");
    }
    assert!(fields.get("headers.x-ok").is_none());

    let batch = json!({"tasks": [
        {"url": "https://example.com/a"},
        {"url": "ftp://example.com/b"},
    ]});
    let refused = app
        .send(Method::POST, "/v1/tasks/batch", Some(&batch))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body["error"]["fields"]["tasks[1].url"].is_string(),
        "{:?}",
        refused.body
    );
    assert_eq!(app.job_count().await, 0, "all of a batch, or none");
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"url": "https://example.com"}))
        .collect();
    let refused = app
        .send(
            Method::POST,
            "/v1/tasks/batch",
            Some(&json!({"tasks": too_many})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);

    let queue_path = "/v1/task-queues/Bad Name";
    assert_eq!(
        app.send(Method::PUT, queue_path, Some(&json!({})))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let rate = app
        .send(
            Method::PUT,
            "/v1/task-queues/q",
            Some(&json!({"rate_per_sec": 0})),
        )
        .await;
    assert_eq!(rate.status, StatusCode::UNPROCESSABLE_ENTITY);
    let media_only = app.key_for("tenant-a", "media");
    assert_eq!(
        app.get_as(Some(&media_only), "/v1/task-queues")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_recurring_task_fires_once_per_tick_however_many_schedulers_run() {
    let app = app(true).await;
    let _second = Process::spawn("kiln-scheduler", &[], app.env()).expect("a second scheduler");
    let receiver = Receiver::start().expect("receiver");
    let secret = queue(&app, &app.key, "default", json!({})).await;
    receiver.verify_with(&[&secret]).await;
    let schedule = json!({"name": "every-minute", "cron": "* * * * *",
                          "task": {"url": receiver.url("/tick"), "body": "tick"}});
    let made = app
        .send(Method::POST, "/v1/schedules", Some(&schedule))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let again = app
        .send(Method::POST, "/v1/schedules", Some(&schedule))
        .await;
    assert_eq!(again.error_code(), "schedule_exists");
    for (bad, field) in [
        (
            json!({"name": "s", "cron": "* * * * * *", "task": {"url": "https://example.com"}}),
            "cron",
        ),
        (
            json!({"name": "s", "cron": "* * * * *", "task": {"url": "https://example.com", "delay_secs": 5}}),
            "task.delay_secs",
        ),
        (
            json!({"name": "S S", "cron": "* * * * *", "task": {"url": "ftp://x"}}),
            "task.url",
        ),
    ] {
        let refused = app.send(Method::POST, "/v1/schedules", Some(&bad)).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            refused.body["error"]["fields"][field].is_string(),
            "{field}: {:?}",
            refused.body
        );
    }

    // Rather than wait for the minute to turn, make a tick of long ago due; both schedulers
    // see it. (The minute may also turn meanwhile: that tick is another task.)
    let db = app.services.db().await;
    sqlx::query("UPDATE task_schedules SET next_tick = '2000-01-01T00:00:00Z'")
        .execute(&db)
        .await
        .expect("tick made due");
    let log = receiver.wait_for(1).await;
    assert!(
        log.iter()
            .all(|e| e["path"] == "/tick" && e["verified_with"] == json!([0]))
    );
    // Both schedulers have had several passes since: still one task for that tick.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let made: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE dedupe_key LIKE 'schedule:%@2000-01-01T00:00:00+00:00'",
    )
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(made, 1);
    let listed = app.get("/v1/schedules").await;
    let next = seconds(&listed.body["schedules"][0]["next_tick"]);
    assert!(listed.body["schedules"][0]["last_tick"].is_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(next > now - 1.0, "the next tick is ahead");
    let deleted = app
        .send(Method::DELETE, "/v1/schedules/every-minute", None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
}
