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
    let payload = payload(schedule, json!({ "schedule": schedule.name, "tick": tick }));
    let job =
        db::jobs::insert_deduplicated(db, &new_job(config, schedule.kind, payload), &key).await?;
    record(db, schedule, tick).await;
    let Some(job) = job else {
        return Ok(None);
    };
    metrics::counter!("kiln_jobs_enqueued_total", "kind" => schedule.kind.as_str()).increment(1);
    kiln_core::queue::publish_committed(db, publisher, &job).await;
    Ok(Some(job.id))
}

/// What one scheduler remembers of a schedule between callbacks: the last tick it fired.
#[derive(Debug, Default)]
pub struct LastFired(std::sync::Mutex<Option<DateTime<Utc>>>);

/// Ticks one callback fires at most: the ones the cron library skipped (a callback runs up to
/// half a second late, and later on a loaded machine, and may then name the next tick).
const CATCH_UP_CAP: usize = 60;

/// Fires every tick of `schedule` due at `now` that this scheduler has not fired yet: the
/// current one, and any it skipped since its last callback. Each goes through [`fire`], so the
/// ticks several schedulers share are still enqueued once.
pub async fn fire_due(
    db: &PgPool,
    publisher: &Publisher,
    config: &Config,
    schedule: &Schedule,
    last: &LastFired,
    now: DateTime<Utc>,
) {
    let Some(at) = schedule.tick_at(now) else {
        return;
    };
    let due = {
        let mut last = last.0.lock().unwrap_or_else(|p| p.into_inner());
        let due = match *last {
            Some(previous) if previous >= at => Vec::new(),
            Some(previous) => schedule.ticks_after(previous, at, CATCH_UP_CAP),
            None => vec![at],
        };
        *last = Some(at);
        due
    };
    for tick in due {
        match fire(db, publisher, config, schedule, tick).await {
            Ok(Some(id)) => {
                tracing::info!(schedule = schedule.name, tick = %tick, job.id = %id, "tick enqueued")
            }
            Ok(None) => {
                tracing::debug!(schedule = schedule.name, tick = %tick, "tick already enqueued elsewhere")
            }
            // The tick is lost only if every scheduler fails it; log loudly.
            Err(error) => {
                tracing::error!(schedule = schedule.name, tick = %tick, %error, "tick not enqueued")
            }
        }
    }
}

/// Enqueues the job of `schedule` now, by hand (`kiln-scheduler enqueue`): never deduplicated.
pub async fn enqueue_now(
    db: &PgPool,
    publisher: &Publisher,
    config: &Config,
    schedule: &Schedule,
) -> anyhow::Result<Uuid> {
    let payload = payload(
        schedule,
        json!({ "schedule": schedule.name, "manual": true }),
    );
    let job = db::jobs::insert(db, &new_job(config, schedule.kind, payload)).await?;
    kiln_core::queue::publish_committed(db, publisher, &job).await;
    Ok(job.id)
}

/// The schedule's own payload with the tick's fields on top.
fn payload(schedule: &Schedule, fields: serde_json::Value) -> serde_json::Value {
    let mut payload = schedule.payload.clone();
    if let serde_json::Value::Object(fields) = fields {
        payload.extend(fields);
    }
    serde_json::Value::Object(payload)
}

/// Notes the tick in the `schedules` table and the metrics. Every scheduler does this, winner
/// or not, so the state is right whichever of them survives; failing to is only logged.
async fn record(db: &PgPool, schedule: &Schedule, tick: DateTime<Utc>) {
    let next = schedule.next_after(tick);
    if let Err(error) = db::schedules::record_tick(db, &schedule.name, tick, next).await {
        tracing::warn!(schedule = schedule.name, %error, "could not record the tick");
    }
    let name = schedule.name.clone();
    metrics::gauge!("kiln_schedule_last_fire_timestamp_seconds", "schedule" => name.clone())
        .set(tick.timestamp() as f64);
    if let Some(next) = next {
        metrics::gauge!("kiln_schedule_next_fire_timestamp_seconds", "schedule" => name)
            .set(next.timestamp() as f64);
    }
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
        // Each tick starts a trace of its own.
        traceparent: Some(kiln_core::trace_context::TraceContext::root().header()),
    }
}
