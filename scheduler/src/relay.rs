//! The outbox relay: jobs whose row committed but whose message was never confirmed are
//! published again. Several schedulers may run it at once: `FOR UPDATE SKIP LOCKED` gives each
//! row to one of them, and a duplicate publish is harmless anyway (workers check the row).

use std::time::Duration;

use kiln_core::{db::jobs::Job, queue::Publisher};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows younger than this are left to the API, which is probably publishing them right now.
const GRACE: Duration = Duration::from_secs(5);
/// How often the relay looks: also how late a retry kept in Postgres may be sent.
const INTERVAL: Duration = Duration::from_secs(1);
/// Rows per pass.
const BATCH: i64 = 200;

/// Runs until `cancel` fires.
pub async fn run(db: PgPool, publisher: Publisher, cancel: CancellationToken) {
    loop {
        match relay_once(&db, &publisher).await {
            Ok(0) => {}
            Ok(sent) => {
                tracing::info!(sent, "relayed unpublished jobs");
                // A full batch means more are due (a backlog after an outage, retries of an
                // endpoint that was down): go on at once instead of 200 a second.
                if i64::try_from(sent).unwrap_or(i64::MAX) >= BATCH && !cancel.is_cancelled() {
                    continue;
                }
            }
            Err(error) => tracing::warn!(%error, "outbox relay pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// How long a relay owns the rows it claimed; if it dies mid-batch, another relay takes them
/// over after this.
const LEASE: Duration = Duration::from_secs(30);

/// Publishes one batch of stale unpublished rows; returns how many were confirmed.
///
/// Rows are claimed by pushing their `run_after` forward by the lease in one short statement, so
/// no lock is held while publishing (a worker may be reading the row meanwhile) and a second
/// relay skips them. Each confirmed publish is recorded at once, so a failure part-way loses no
/// progress. `run_after` rather than `created_at` decides staleness: an operator's retry resets
/// it, so the relay does not race the API publishing a revived job. The status filter carries
/// weight: a started job's row has no publish record until its attempt ends (so that the start
/// stays a HOT update), and a running job must never be sent a second time.
pub async fn relay_once(db: &PgPool, publisher: &Publisher) -> anyhow::Result<usize> {
    let grace = GRACE.as_secs_f64();
    let lease = LEASE.as_secs_f64();
    let rows = sqlx::query_as!(
        Job,
        "UPDATE jobs SET run_after = now() + make_interval(secs => $2)
         WHERE id IN (SELECT id FROM jobs
                      WHERE published_at IS NULL AND status IN ('queued', 'failed')
                        -- A failed row here is a retry kept in Postgres: nobody else sends
                        -- it, so it is due at `run_after` itself, with no grace.
                        AND run_after < now() - make_interval(
                              secs => CASE WHEN status = 'failed' THEN 0 ELSE $1::float8 END)
                        -- Bounds the index scan: rows not due (tasks waiting for their queue,
                        -- parked retries: 'infinity') are never read.
                        AND run_after < now()
                      ORDER BY run_after
                      LIMIT $3
                      FOR UPDATE SKIP LOCKED)
         RETURNING id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                   created_at, published_at, started_at, finished_at, traceparent",
        grace,
        lease,
        BATCH,
    )
    .fetch_all(db)
    .await?;
    let mut sent = 0;
    for job in &rows {
        let envelope = job.envelope()?;
        // Stop at the first failure: the broker is probably down, and the rest can wait for
        // their lease to run out.
        publisher.publish(&envelope).await?;
        kiln_core::db::jobs::mark_relayed(db, job.id, job.attempts).await?;
        sent += 1;
        metrics::counter!("kiln_outbox_relayed_total").increment(1);
    }
    Ok(sent)
}
