//! Start-up bookkeeping: record each schedule, and deal with the ticks that passed while no
//! scheduler ran, by the schedule's policy (`skip`: count them; `once`: count them and fire the
//! latest one).
//!
//! The schedule's row is locked while its gap is measured and recorded, so schedulers starting
//! together count a gap once; the fired tick carries the usual dedupe key, so it is one job
//! however many of them fire it.

use chrono::{DateTime, Utc};
use kiln_core::{Config, db, queue::Publisher};
use sqlx::PgPool;

use crate::{
    schedule::{MissedPolicy, Schedule},
    tick,
};

/// A tick this recent may still be fired by a running scheduler: not counted as missed.
const IN_FLIGHT: chrono::Duration = chrono::Duration::seconds(5);
/// Counting stops here (a per-second schedule down for weeks).
const COUNT_CAP: u64 = 1_000_000;

/// Records `schedule` and catches up its missed ticks; returns how many were missed.
pub async fn start(
    db: &PgPool,
    publisher: &Publisher,
    config: &Config,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    db::schedules::register(
        db,
        &db::schedules::Registration {
            name: &schedule.name,
            cron: &schedule.cron,
            kind: schedule.kind.as_str(),
            missed_policy: schedule.missed.as_str(),
            next_tick: schedule.next_after(now),
        },
    )
    .await?;
    if let Some(next) = schedule.next_after(now) {
        metrics::gauge!("kiln_schedule_next_fire_timestamp_seconds", "schedule" => schedule.name.clone())
            .set(next.timestamp() as f64);
    }
    let mut tx = db.begin().await?;
    let Some(last) = db::schedules::lock_last_tick(&mut *tx, &schedule.name).await? else {
        // Never fired: there is no gap to speak of, only a history that starts now.
        return Ok(0);
    };
    let (missed, latest) = schedule.ticks_between(last, now - IN_FLIGHT, COUNT_CAP);
    let Some(latest) = latest else {
        return Ok(0);
    };
    db::schedules::record_missed(&mut *tx, &schedule.name, missed as i64, latest).await?;
    tx.commit().await?;
    metrics::counter!("kiln_schedule_missed_ticks_total", "schedule" => schedule.name.clone())
        .increment(missed);
    tracing::warn!(
        schedule = schedule.name,
        missed,
        since = %last,
        policy = schedule.missed.as_str(),
        "ticks were missed while no scheduler ran"
    );
    if schedule.missed == MissedPolicy::Once {
        match tick::fire(db, publisher, config, schedule, latest).await? {
            Some(id) => {
                tracing::info!(schedule = schedule.name, tick = %latest, job.id = %id, "missed tick fired once")
            }
            None => tracing::debug!(schedule = schedule.name, "missed tick already fired"),
        }
    }
    Ok(missed)
}
