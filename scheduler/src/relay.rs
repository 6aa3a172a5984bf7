//! The outbox relay: jobs whose row committed but whose message was never confirmed are
//! published again. Several schedulers may run it at once: `FOR UPDATE SKIP LOCKED` gives each
//! row to one of them, and a duplicate publish is harmless anyway (workers check the row).

use std::time::Duration;

use kiln_core::{db::jobs::Job, queue::Publisher};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows younger than this are left to the API, which is probably publishing them right now.
const GRACE: Duration = Duration::from_secs(5);
/// How often the relay looks.
const INTERVAL: Duration = Duration::from_secs(2);
/// Rows per pass.
const BATCH: i64 = 200;

/// Runs until `cancel` fires.
pub async fn run(db: PgPool, publisher: Publisher, cancel: CancellationToken) {
    loop {
        match relay_once(&db, &publisher).await {
            Ok(0) => {}
            Ok(sent) => tracing::info!(sent, "relayed unpublished jobs"),
            Err(error) => tracing::warn!(%error, "outbox relay pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Publishes one batch of stale unpublished rows; returns how many were confirmed.
pub async fn relay_once(db: &PgPool, publisher: &Publisher) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let grace = GRACE.as_secs_f64();
    let rows = sqlx::query_as!(
        Job,
        "SELECT id, tenant, kind, payload, status, attempts, max_attempts, last_error,
                created_at, published_at, started_at, finished_at
         FROM jobs
         WHERE published_at IS NULL AND status IN ('queued', 'failed')
           AND created_at < now() - make_interval(secs => $1)
         ORDER BY created_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
        grace,
        BATCH,
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut sent = 0;
    for job in &rows {
        let envelope = job.envelope()?;
        // Stop at the first failure: the broker is probably down, and the rest can wait.
        publisher.publish(&envelope).await?;
        kiln_core::db::jobs::mark_published(&mut *tx, job.id).await?;
        sent += 1;
    }
    tx.commit().await?;
    metrics::counter!("kiln_outbox_relayed_total").increment(sent as u64);
    Ok(sent)
}
