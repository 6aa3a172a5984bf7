//! Publishing a job row after its transaction committed.

use std::future::Future;

use sqlx::PgPool;
use uuid::Uuid;

use super::Publisher;
use crate::db::{self, job_writes::JobWrites, jobs::Job};

/// Where a confirmed publish is recorded (`published_at`): straight to Postgres, or deferred
/// and batched by [`JobWrites`] on hot paths.
pub trait RecordPublished: Sync {
    fn record_published(&self, id: Uuid) -> impl Future<Output = Result<(), String>> + Send;
}

impl RecordPublished for PgPool {
    async fn record_published(&self, id: Uuid) -> Result<(), String> {
        db::jobs::mark_published(self, id)
            .await
            .map_err(|e| e.to_string())
    }
}

impl RecordPublished for JobWrites {
    async fn record_published(&self, id: Uuid) -> Result<(), String> {
        JobWrites::record_published(self, id).await;
        Ok(())
    }
}

/// Publishes a committed job and records the broker's confirm. Nothing here can lose the job:
/// if the publish fails the row stays unpublished and the scheduler's relay sends it, and if
/// only the record fails the relay may send it twice, which the job row makes a no-op. So
/// failures are logged, never returned.
pub async fn publish_committed(record: &impl RecordPublished, publisher: &Publisher, job: &Job) {
    let envelope = match job.envelope() {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::error!(job.id = %job.id, %error, "unpublishable job");
            return;
        }
    };
    if let Err(error) = publisher.publish(&envelope).await {
        tracing::warn!(job.id = %job.id, %error, "publish failed; the relay will retry");
        return;
    }
    if let Err(error) = record.record_published(job.id).await {
        tracing::warn!(job.id = %job.id, %error, "could not record publish");
    }
}
