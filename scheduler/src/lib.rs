//! kiln-scheduler: emits cron jobs and relays the outbox.
//!
//! - [`schedule`]: the cron table from `KILN_SCHEDULES`.
//! - [`relay`]: republishes job rows that were committed but never confirmed by the broker
//!   (the API crashed, or RabbitMQ was down, between commit and publish).

pub mod relay;
pub mod schedule;
