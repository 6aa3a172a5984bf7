//! kiln-scheduler: emits cron jobs and relays the outbox.
//!
//! - [`schedule`]: the cron table from `KILN_SCHEDULES`.
//! - [`tick`]: one tick → exactly one job, deduplicated in Postgres across schedulers.
//! - [`relay`]: republishes job rows that were committed but never confirmed by the broker
//!   (the API crashed, or RabbitMQ was down, between commit and publish).

pub mod relay;
pub mod schedule;
pub mod tick;
