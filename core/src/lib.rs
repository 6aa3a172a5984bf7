//! kiln-core: everything two Kiln processes need, written once.
//!
//! The binaries (`kiln-api`, `kiln-worker`, `kiln-scheduler`) stay thin: they parse [`config`],
//! build what they need from the modules below and run until [`shutdown`] says stop.
//!
//! - [`config`]: typed configuration from environment variables, failing fast with the name.
//! - [`db`]: the Postgres pool, migrations and one repository module per aggregate.
//! - [`delivery`]: the signed HTTP client of webhooks: Standard Webhooks signing, the
//!   address filter (SSRF), limits, and what an answer means for a retry.
//! - [`cache`]: the cache-aside read in front of Postgres (Redis first, one load per key).
//! - [`storage`]: originals and variants, on a local directory or S3-compatible storage.
//! - [`jobs`]: the job contracts (kinds, statuses, the message envelope, payloads).
//! - [`media_urls`]: signed, expiring variant URLs (and permanent public ones).
//! - [`queue`]: the RabbitMQ topology and a confirmed publisher.
//! - [`pg_tool`]: `pg_dump`/`pg_restore` commands that keep the password off their argv.
//! - [`image_probe`]: format sniffing and header dimensions, without decoding pixels.
//! - [`telemetry`]: logging and the Prometheus recorder.
//! - [`templates`]: email templates (built-in notifications and the operator's own).
//! - [`trace_context`]: W3C `traceparent`, carried from API requests into jobs.
//! - [`shutdown`]: SIGINT/SIGTERM as a cancellation token.
//! - [`views`]: resources as clients see them (the API answers and webhook events).

pub mod cache;
pub mod config;
pub mod db;
pub mod delivery;
pub mod image_probe;
pub mod jobs;
pub mod media_format;
pub mod media_urls;
pub mod pg_tool;
pub mod queue;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod templates;
pub mod trace_context;
pub mod video_probe;
pub mod views;

pub use config::Config;
