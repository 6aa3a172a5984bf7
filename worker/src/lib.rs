//! kiln-worker: consumes jobs from RabbitMQ and runs them.
//!
//! - [`heartbeat`]: the `workers` row that says this process is alive, and [`held`]: the jobs
//!   it lists there as running.
//! - [`consumer`]: the delivery loop: connect, consume with prefetch = concurrency, reconnect
//!   with backoff, drain on shutdown.
//! - [`acks`]: acks coalesced with `multiple`, never covering a job still running.
//! - [`runner`]: one delivery, start to finish: load the row, run the handler behind a panic
//!   boundary and a timeout, record the outcome, then ack, retry or dead-letter.
//! - [`jobs`]: one module per job kind, and the `Retry`/`Abort` classification of failures.
//! - [`notify`]: the built-in "media ready/failed" emails.
//! - [`events`]: the webhook events a job's outcome raises, in its transaction.
//! - [`reconcile`]: messages the broker dead-lettered by itself (delivery limit), settled
//!   against their rows before they go on to the dead queue.
//! - [`imaging`]: decode, resize and encode, pure CPU work.
//! - [`slots`]: the configured bound on jobs running at once, per queue or shared.
//! - [`cpu`]: the bounded pool that CPU work runs on, off the async runtime.

pub mod acks;
pub mod backfill;
pub mod consumer;
pub mod cpu;
pub mod events;
pub mod heartbeat;
pub mod held;
pub mod imaging;
pub mod jobs;
pub mod notify;
pub mod reconcile;
pub mod runner;
pub mod slots;
pub mod video;

use std::sync::Arc;

use kiln_core::{
    Config, cache::Cache, db::job_writes::JobWrites, db::workers::Starter, queue::Publisher,
    storage::Storage, templates::Templates,
};
use lettre::{AsyncSmtpTransport, Tokio1Executor, message::Mailbox};
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// Everything a job handler may use; cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub db: PgPool,
    /// The hot path's single-row job writes (start, success, publish record), group-committed.
    pub writes: JobWrites,
    pub cache: Cache,
    pub storage: Storage,
    /// Publishes retries (to the delay ladder) and dead messages (with their reason).
    pub publisher: Publisher,
    pub cpu: cpu::CpuPool,
    /// Pooled SMTP connections (lettre, rustls), connected on first use.
    pub mailer: AsyncSmtpTransport<Tokio1Executor>,
    /// The `From` of every email.
    pub email_from: Mailbox,
    /// Templates of the built-in notifications and the digest.
    pub templates: Templates,
    pub config: Arc<Config>,
    /// This process as the starter of attempts: its worker id, made at start-up.
    pub starter: Starter,
    /// Slots a delivery waits for before its job starts.
    pub slots: slots::Slots,
    /// The jobs running here, reported with each heartbeat.
    pub held: held::Held,
    /// Usage per tenant (processing time, variant bytes, emails sent), written in batches.
    pub usage: kiln_core::db::usage::Recorder,
    /// The signed HTTP client of webhook deliveries (its own connection pool).
    pub delivery: kiln_core::delivery::Client,
    /// Deliveries in flight per endpoint.
    pub endpoint_slots: jobs::http::EndpointSlots,
}

impl Context {
    /// Builds the context from configuration; connections are made lazily.
    pub fn from_config(config: Config) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let slots = slots::Slots::new(&config);
        let db = kiln_core::db::connect_lazy(&config.database_url, pool_size(&slots))
            .context("DATABASE_URL")?;
        let cache = Cache::new(&config.redis_url, &config.namespace, config.cache_ttl)
            .context("REDIS_URL")?;
        let storage = Storage::from_url(&config.storage_url)
            .context("KILN_STORAGE_URL")?
            .fail_next_writes(config.fail_storage_writes);
        let publisher = Publisher::new(
            config.amqp_url.clone(),
            "kiln-worker-publisher",
            config.topology(),
        );
        let mailer =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose_secret())
                .context("KILN_SMTP_URL")?
                .timeout(Some(std::time::Duration::from_secs(30)))
                .build();
        let email_from = config
            .email_from
            .parse()
            .context("KILN_EMAIL_FROM is not a valid mailbox")?;
        let templates =
            Templates::load(config.email_templates.as_deref()).context("KILN_EMAIL_TEMPLATES")?;
        let delivery = kiln_core::delivery::Client::new(
            config.webhooks.timeout,
            config.webhooks.allow_nets.clone(),
        )
        .context("the webhook HTTP client")?;
        Ok(Self {
            delivery,
            endpoint_slots: jobs::http::EndpointSlots::new(config.webhooks.endpoint_concurrency),
            usage: kiln_core::db::usage::Recorder::spawn(db.clone()),
            writes: JobWrites::spawn(db.clone()),
            db,
            templates,
            cache,
            storage,
            publisher,
            mailer,
            email_from,
            cpu: cpu::CpuPool::new(config.cpu_threads),
            slots,
            held: held::Held::default(),
            starter: Starter {
                worker: uuid::Uuid::now_v7(),
                heartbeat_timeout: config.heartbeat_timeout,
            },
            config: Arc::new(config),
        })
    }
}

/// Connections the worker's pool may open. The group-committed writes hold up to three per
/// round with three rounds in flight, plus one for deferred publish records; a running job holds
/// one at a time, and only while it reads or commits, so a connection per slot is an upper
/// bound, capped because most jobs spend their time elsewhere (decoding, SMTP, HTTP) and
/// Postgres allows 100 connections in all by default.
fn pool_size(slots: &slots::Slots) -> u32 {
    const WRITERS: u32 = 3 * 3 + 1;
    WRITERS + slots.total().min(30)
}
