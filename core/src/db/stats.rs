//! Summaries over a time window, for the daily digest.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// What happened to one tenant's work in a window.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantSummary {
    pub media_uploaded: i64,
    pub media_ready: i64,
    pub media_failed: i64,
    pub emails_sent: i64,
    pub emails_dead: i64,
    pub jobs_dead: i64,
}

/// Counts `tenant`'s uploads, outcomes, emails and dead jobs in `[since, until)`.
pub async fn tenant_summary(
    db: impl PgExecutor<'_>,
    tenant: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<TenantSummary, sqlx::Error> {
    sqlx::query_as!(
        TenantSummary,
        r#"SELECT
             (SELECT count(*) FROM media WHERE tenant = $1
                AND created_at >= $2 AND created_at < $3) AS "media_uploaded!",
             (SELECT count(*) FROM media WHERE tenant = $1 AND status = 'ready'
                AND updated_at >= $2 AND updated_at < $3) AS "media_ready!",
             (SELECT count(*) FROM media WHERE tenant = $1 AND status = 'failed'
                AND updated_at >= $2 AND updated_at < $3) AS "media_failed!",
             (SELECT count(*) FROM jobs WHERE tenant = $1 AND kind = 'email'
                AND status = 'succeeded' AND finished_at >= $2 AND finished_at < $3)
                AS "emails_sent!",
             (SELECT count(*) FROM jobs WHERE tenant = $1 AND kind = 'email'
                AND status = 'dead' AND finished_at >= $2 AND finished_at < $3)
                AS "emails_dead!",
             (SELECT count(*) FROM jobs WHERE tenant = $1 AND status = 'dead'
                AND finished_at >= $2 AND finished_at < $3) AS "jobs_dead!""#,
        tenant,
        since,
        until,
    )
    .fetch_one(db)
    .await
}
