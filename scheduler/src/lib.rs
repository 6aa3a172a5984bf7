//! kiln-scheduler: emits cron jobs and relays the outbox.
//!
//! - [`schedule`]: the cron table from `KILN_SCHEDULES` (inline or a TOML file).
//! - [`catch_up`]: at start-up, the ticks missed while no scheduler ran, by each schedule's
//!   policy.
//! - [`tick`]: one tick → exactly one job, deduplicated in Postgres across schedulers.
//! - [`sampler`]: queue depths, outbox backlog and dead jobs as gauges, and a per-queue
//!   sample a minute for the dashboard's charts.
//! - [`dispatch`]: sends the app's HTTP tasks when they are due and their queues allow.
//! - [`relay`]: republishes job rows that were committed but never confirmed by the broker
//!   (the API crashed, or RabbitMQ was down, between commit and publish).
//! - [`rescuer`]: republishes live jobs whose confirmed message is gone, or whose worker died.
//! - [`retire`]: drains and deletes the queues of an earlier topology (another delivery limit
//!   or retry ladder, or the first topology's names).

pub mod catch_up;
pub mod dispatch;
pub mod relay;
pub mod rescuer;
pub mod retire;
pub mod sampler;
pub mod schedule;
pub mod tick;
