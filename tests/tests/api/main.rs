//! End-to-end tests of the API and worker binaries against real Postgres, Redis and RabbitMQ.

mod auth;
mod backups;
mod cache;
mod compose;
mod contract;
mod dashboard;
mod deletion;
mod emails;
mod health;
mod keys;
mod limits;
mod media;
mod notifications;
mod rejections;
mod run_local;
mod s3;
mod shutdown;
mod startup;
mod tasks;
mod timeouts;
mod trace_propagation;
mod usage;
mod webhooks;
