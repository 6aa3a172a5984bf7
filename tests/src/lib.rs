//! The test harness: each test gets its own Postgres database, RabbitMQ namespace, Redis key
//! prefix and storage directory, runs the real `kiln-api` and `kiln-worker` binaries on random
//! ports, and leaves nothing behind when it ends (even when it fails).
//!
//! Services default to the local ones; override with `TEST_POSTGRES_URL` (a server URL without
//! a database), `TEST_REDIS_URL` and `TEST_AMQP_URL`.

pub mod images;
pub mod private;
mod process;
mod services;
pub mod smtp;
pub mod video;
pub mod webhooks;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
pub use process::{Process, binary, run};
use reqwest::{StatusCode, header};
use serde_json::Value;
pub use services::{Services, amqp_url, redis_url};
use uuid::Uuid;

/// A Kiln under test: the API and (usually) a worker, on private resources.
pub struct TestApp {
    // Field order is drop order: the processes stop before their database is dropped.
    pub api: Process,
    pub worker: Option<Process>,
    /// Started only when [`Options::with_scheduler`] asks for it.
    pub scheduler: Option<Process>,
    pub services: Services,
    pub address: String,
    pub metrics_address: String,
    pub client: reqwest::Client,
    /// A key with every scope, for tenant `tenant-a`.
    pub key: String,
    env: HashMap<String, String>,
}

/// How to start a test app.
#[derive(Default)]
pub struct Options {
    /// Extra environment variables (they override the harness's).
    pub env: Vec<(String, String)>,
    /// Start without a worker (jobs stay queued).
    pub without_worker: bool,
    /// Also start `kiln-scheduler` (relay, rescuer, cron).
    pub with_scheduler: bool,
    /// Skip `kiln-api migrate` (to test `KILN_MIGRATE=true` instead).
    pub skip_migrate: bool,
    /// A Postgres server URL (without database) to use instead of the shared one.
    pub postgres_server: Option<String>,
}

impl Options {
    /// Adds one environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }
}

/// Starts a test app with the defaults.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// Starts a test app.
pub async fn spawn_app_with(options: Options) -> TestApp {
    try_spawn(options).await.expect("the test app starts")
}

async fn try_spawn(options: Options) -> anyhow::Result<TestApp> {
    let mut services = Services::create(options.postgres_server.as_deref()).await?;
    let mut env = services.env();
    env.insert("KILN_API_ADDR".into(), "127.0.0.1:0".into());
    env.insert("KILN_METRICS_ADDR".into(), "127.0.0.1:0".into());
    env.insert("LOG_FORMAT".into(), "json".into());
    env.insert("RUST_LOG".into(), "info".into());
    env.insert("KILN_SHUTDOWN_GRACE".into(), "60".into());
    env.extend(options.env);
    if let Some(limit) = env.get("KILN_DELIVERY_LIMIT") {
        services.delivery_limit = limit.parse()?;
    }

    let migrate = process::run("kiln-api", &["migrate"], &env)?;
    if !migrate.status.success() {
        bail!(
            "kiln-api migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
    }
    let key = create_key(&env, "tenant-a", "media,email,admin,webhooks,tasks")?;

    let api = Process::spawn("kiln-api", &[], &env)?;
    let address = api.wait_for_field("listening", "addr").await?;
    let metrics_address = api.wait_for_field("metrics listening", "addr").await?;
    let worker = if options.without_worker {
        None
    } else {
        let worker = Process::spawn("kiln-worker", &[], &env)?;
        worker.wait_for_log("consuming").await?;
        Some(worker)
    };
    let scheduler = if options.with_scheduler {
        let scheduler = Process::spawn("kiln-scheduler", &[], &env)?;
        scheduler.wait_for_log("scheduler started").await?;
        Some(scheduler)
    } else {
        None
    };
    Ok(TestApp {
        services,
        api,
        worker,
        scheduler,
        address: format!("http://{address}"),
        metrics_address: format!("http://{metrics_address}"),
        // Idle connections are let go before the API's header time-out closes them (10 s by
        // default), so no request is sent on a connection the server is closing.
        client: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?,
        key,
        env,
    })
}

/// Runs `kiln-api keys create` and returns the key from its last line of stdout.
pub fn create_key(
    env: &HashMap<String, String>,
    name: &str,
    scopes: &str,
) -> anyhow::Result<String> {
    create_key_with(env, &["--name", name, "--scopes", scopes])
}

/// Runs `kiln-api keys create` with these arguments and returns the key.
pub fn create_key_with(env: &HashMap<String, String>, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    let output = process::run("kiln-api", &all, env)?;
    if !output.status.success() {
        bail!(
            "keys create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    let key = stdout
        .lines()
        .last()
        .context("keys create printed nothing")?
        .trim();
    Ok(key.to_owned())
}

/// An HTTP answer, with its JSON body when there is one.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: Value,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    /// The stable error code of an error answer.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }
}

impl TestApp {
    /// The environment the binaries were started with.
    pub fn env(&self) -> &HashMap<String, String> {
        &self.env
    }

    /// A new key for another tenant (or the same one) with the given scopes.
    pub fn key_for(&self, tenant: &str, scopes: &str) -> String {
        create_key_with(
            &self.env,
            &["--name", tenant, "--tenant", tenant, "--scopes", scopes],
        )
        .expect("key created")
    }

    /// A key for `tenant` whose notifications go to `address`.
    pub fn key_notifying(&self, tenant: &str, scopes: &str, address: &str) -> String {
        create_key_with(
            &self.env,
            &[
                "--name",
                tenant,
                "--tenant",
                tenant,
                "--scopes",
                scopes,
                "--notify-email",
                address,
            ],
        )
        .expect("key created")
    }

    /// Runs `kiln-scheduler enqueue <schedule>` and returns the job id it printed.
    pub fn enqueue_schedule(&self, schedule: &str) -> String {
        let output = run("kiln-scheduler", &["enqueue", schedule], &self.env).expect("runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `POST /v1/emails` with a JSON body and a given key.
    pub async fn send_email_as(&self, key: &str, body: &serde_json::Value) -> Answer {
        let response = self
            .client
            .post(format!("{}/v1/emails", self.address))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("email request");
        Answer::from(response).await
    }

    /// Polls `GET /v1/jobs/{id}` until the job is `succeeded` or `dead` (two minutes at most).
    pub async fn wait_for_job(&self, id: &str) -> Value {
        self.wait_for_status(&format!("/v1/jobs/{id}"), &["succeeded", "dead"])
            .await
    }

    /// `POST /v1/media` with a raw body.
    pub async fn upload(&self, body: impl Into<reqwest::Body>) -> Answer {
        self.upload_as(&self.key, body).await
    }

    /// Uploads `count` small images, each accepted; returns their media ids.
    pub async fn upload_small(&self, count: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let answer = self.upload(images::sideways_jpeg(64, 32)).await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
            ids.push(answer.body["id"].as_str().expect("id").to_owned());
        }
        ids
    }

    /// `POST /v1/media` with a raw body and a given key.
    pub async fn upload_as(&self, key: &str, body: impl Into<reqwest::Body>) -> Answer {
        let response = self
            .client
            .post(format!("{}/v1/media", self.address))
            .bearer_auth(key)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .expect("upload request");
        Answer::from(response).await
    }

    /// `POST /v1/media` as `multipart/form-data` with the bytes in field `file`.
    pub async fn upload_multipart(&self, bytes: Vec<u8>, file_name: &str) -> Answer {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned());
        let form = reqwest::multipart::Form::new()
            .text("note", "fields before the file are skipped")
            .part("file", part);
        let response = self
            .client
            .post(format!("{}/v1/media", self.address))
            .bearer_auth(&self.key)
            .multipart(form)
            .send()
            .await
            .expect("upload request");
        Answer::from(response).await
    }

    /// `GET path` with a key (or none).
    pub async fn get_as(&self, key: Option<&str>, path: &str) -> Answer {
        let mut request = self.client.get(format!("{}{path}", self.address));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        Answer::from(request.send().await.expect("get request")).await
    }

    /// Any request with the default key and an optional JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        self.send_as(&self.key, method, path, body).await
    }

    /// Any request with a given key and an optional JSON body.
    pub async fn send_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        Answer::from(request.send().await.expect("request")).await
    }

    /// `GET path` with the default key.
    pub async fn get(&self, path: &str) -> Answer {
        self.get_as(Some(&self.key), path).await
    }

    /// Downloads raw bytes with the default key.
    pub async fn download(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("download request")
    }

    /// Polls `GET /v1/media/{id}` until it is `ready` or `failed`, for at most two minutes.
    pub async fn wait_for_media(&self, id: &str) -> Value {
        self.wait_for_status(&format!("/v1/media/{id}"), &["ready", "failed"])
            .await
    }

    /// [`Self::wait_for_media`] with another key.
    pub async fn wait_for_media_as(&self, key: &str, id: &str) -> Value {
        self.wait_for_status_as(key, &format!("/v1/media/{id}"), &["ready", "failed"])
            .await
    }

    /// Polls `GET path` until its `status` is one of `terminal` (two minutes at most).
    async fn wait_for_status(&self, path: &str, terminal: &[&str]) -> Value {
        self.wait_for_status_as(&self.key, path, terminal).await
    }

    async fn wait_for_status_as(&self, key: &str, path: &str, terminal: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let answer = self.get_as(Some(key), path).await;
            let status = answer.body["status"].as_str().unwrap_or_default();
            if terminal.contains(&status) {
                return answer.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} still {status:?} after two minutes: {}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The API's Prometheus text.
    pub async fn api_metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    }

    /// Number of job rows in this test's database.
    pub async fn job_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&self.services.db().await)
            .await
            .expect("count jobs")
    }

    /// Files under this test's storage directory (relative paths).
    pub fn stored_files(&self) -> Vec<PathBuf> {
        self.services.stored_files()
    }
}

/// The sum of a counter's samples whose labels contain every `label="value"` in `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.split(['{', ' '])
                .next()
                .is_some_and(|metric| metric == name)
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A job message as Kiln's publisher writes it, for tests that put one in a queue by hand (a
/// duplicate, a poison message): `{id, kind, attempt: 1, enqueued_at, payload}`.
pub fn envelope(id: impl std::fmt::Display, kind: &str, payload: Value) -> Vec<u8> {
    serde_json::json!({
        "id": id.to_string(),
        "kind": kind,
        "attempt": 1,
        "enqueued_at": "2026-01-01T00:00:00Z",
        "payload": payload
    })
    .to_string()
    .into_bytes()
}

/// A unique, valid namespace for one test: letters, digits and `_`.
pub fn unique_name() -> String {
    format!("kt_{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// A message found in the dead queue.
#[derive(Debug)]
pub struct DeadMessage {
    pub body: Vec<u8>,
    /// The `x-kiln-error` header: why it died.
    pub reason: Option<String>,
}

impl TestApp {
    /// Sends an admin request with the default (all-scopes) key.
    pub async fn admin(&self, method: reqwest::Method, path: &str) -> Answer {
        let response = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("admin request");
        Answer::from(response).await
    }

    /// Opens a channel on the test's broker.
    pub async fn amqp_channel(&self) -> (lapin::Connection, lapin::Channel) {
        let connection = lapin::Connection::connect(&self.env["AMQP_URL"], Default::default())
            .await
            .expect("amqp connection");
        let channel = connection.create_channel().await.expect("channel");
        (connection, channel)
    }

    /// The broker's name of one of this test's queues: a work queue by its short name
    /// (`media`, `maintenance`...), or `dead` or `reconcile`.
    pub fn queue_name(&self, queue: &str) -> String {
        let topology = self.services.topology();
        match queue {
            "dead" => topology.dead(),
            "reconcile" => topology.reconcile(),
            _ => {
                let kind = kiln_core::jobs::QueueKind::ALL
                    .into_iter()
                    .find(|q| q.as_str() == queue)
                    .unwrap_or_else(|| panic!("no queue {queue:?}"));
                topology.queue(kind)
            }
        }
    }

    /// The ready messages of one of this test's queues (see [`Self::queue_name`]).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let (connection, channel) = self.amqp_channel().await;
        let name = self.queue_name(queue);
        let declared = channel
            .queue_declare(
                name.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("passive declare");
        connection.close(200, "done".into()).await.ok();
        declared.message_count()
    }

    /// Publishes raw bytes straight into one of this test's queues (see [`Self::queue_name`]).
    pub async fn publish_raw(&self, queue: &str, body: &[u8]) {
        let (connection, channel) = self.amqp_channel().await;
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirms");
        let name = self.queue_name(queue);
        channel
            .basic_publish(
                "".into(),
                name.as_str().into(),
                Default::default(),
                body,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        connection.close(200, "done".into()).await.ok();
    }

    /// Waits (up to a minute) until the dead queue holds at least `count` messages, then takes
    /// them all out.
    pub async fn dead_messages(&self, count: usize) -> Vec<DeadMessage> {
        let (connection, channel) = self.amqp_channel().await;
        let queue = self.queue_name("dead");
        let mut messages = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while messages.len() < count {
            let got = channel
                .basic_get(
                    queue.as_str().into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic.get");
            match got {
                Some(message) => {
                    let reason = message
                        .delivery
                        .properties
                        .headers()
                        .as_ref()
                        .and_then(|h| h.inner().get("x-kiln-error").cloned())
                        .and_then(|v| match v {
                            lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
                            _ => None,
                        });
                    messages.push(DeadMessage {
                        body: message.delivery.data.clone(),
                        reason,
                    });
                }
                None => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "only {} of {count} dead messages arrived",
                        messages.len()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        connection.close(200, "done".into()).await.ok();
        messages
    }

    /// Polls the job's row (two minutes at most) until its status is `status`.
    pub async fn wait_for_job_row(&self, id: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (now, _) = self.job_row(id).await;
            if now == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} is {now}, never {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A job row's status and attempts, read from Postgres.
    pub async fn job_row(&self, id: &str) -> (String, i32) {
        let id: Uuid = id.parse().expect("uuid");
        sqlx::query_as("SELECT status, attempts FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&self.services.db().await)
            .await
            .expect("job row")
    }
}
