//! kiln-scheduler: emits cron jobs and relays the outbox.
//!
//! - [`schedule`]: the cron table from `KILN_SCHEDULES` (inline or a TOML file).
//! - [`catch_up`]: at start-up, the ticks missed while no scheduler ran, by each schedule's
//!   policy.
//! - [`tick`]: one tick → exactly one job, deduplicated in Postgres across schedulers.
//! - [`relay`]: republishes job rows that were committed but never confirmed by the broker
//!   (the API crashed, or RabbitMQ was down, between commit and publish).

pub mod catch_up;
pub mod relay;
pub mod schedule;
pub mod tick;
