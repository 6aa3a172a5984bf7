//! Publishing a job row after its transaction committed.

use sqlx::PgPool;

use super::Publisher;
use crate::db::{self, jobs::Job};

/// Publishes a committed job and records the broker's confirm. Nothing here can lose the job:
/// if the publish fails the row stays unpublished and the scheduler's relay sends it, and if
/// only the record fails the relay may send it twice, which the job row makes a no-op. So
/// failures are logged, never returned.
pub async fn publish_committed(db: &PgPool, publisher: &Publisher, job: &Job) {
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
    if let Err(error) = db::jobs::mark_published(db, job.id).await {
        tracing::warn!(job.id = %job.id, %error, "could not record publish");
    }
}
