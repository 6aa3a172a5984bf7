//! Turning a cron tick into exactly one job, however many schedulers run.
//!
//! Every scheduler that sees a tick inserts the job with `dedupe_key = "<schedule>@<tick>"` and
//! `ON CONFLICT DO NOTHING`; only the one whose insert wins publishes. If that publish fails the
//! row stays unpublished and the outbox relay sends it.

use chrono::{DateTime, Utc};
use kiln_core::{Config, db, jobs::JobKind, queue::Publisher};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::schedule::Schedule;

/// Enqueues the job of `schedule` for `tick`; returns its id when this call created it, `None`
/// when another scheduler already had.
pub async fn fire(
    db: &PgPool,
    publisher: &Publisher,
    config: &Config,
    schedule: &Schedule,
    tick: DateTime<Utc>,
) -> anyhow::Result<Option<Uuid>> {
    let key = schedule.dedupe_key(tick);
    let payload = json!({ "schedule": schedule.name, "tick": tick });
    let job =
        db::jobs::insert_deduplicated(db, &new_job(config, schedule.kind, payload), &key).await?;
    let Some(job) = job else {
        return Ok(None);
    };
    metrics::counter!("kiln_jobs_enqueued_total", "kind" => schedule.kind.as_str()).increment(1);
    kiln_core::queue::publish_committed(db, publisher, &job).await;
    Ok(Some(job.id))
}

/// Enqueues the job of `schedule` now, by hand (`kiln-scheduler enqueue`): never deduplicated.
pub async fn enqueue_now(
    db: &PgPool,
    publisher: &Publisher,
    config: &Config,
    schedule: &Schedule,
) -> anyhow::Result<Uuid> {
    let payload = json!({ "schedule": schedule.name, "manual": true });
    let job = db::jobs::insert(db, &new_job(config, schedule.kind, payload)).await?;
    kiln_core::queue::publish_committed(db, publisher, &job).await;
    Ok(job.id)
}

fn new_job(
    config: &Config,
    kind: JobKind,
    payload: serde_json::Value,
) -> db::jobs::NewJob<'static> {
    db::jobs::NewJob {
        id: Uuid::now_v7(),
        tenant: None,
        kind,
        payload,
        max_attempts: config.max_attempts(kind),
    }
}
