//! Jobs are never lost and never take effect twice: retries through the delay ladder, dead
//! jobs and operators' retries, poison messages, duplicates and a killed worker — each test
//! runs the real binaries against the real services and prints its numbers.

mod admin;
mod batching;
mod concurrency;
mod crash;
mod cron;
mod delivery_limit;
mod poison;
mod rescue;
mod retention;
mod retries;
mod upgrade;
mod video_crash;
