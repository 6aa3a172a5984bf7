//! Retention: finished jobs are deleted once past their retention, in bounded batches, and an
//! email job's payload loses its personal data once the message is sent.

use std::time::Duration;

use sqlx::PgExecutor;
use uuid::Uuid;

/// A job with a dedupe key is kept at least this long after it finished, however short the
/// retention: a scheduler whose previous callback came before a cron tick may still fire that
/// tick, and a re-run of a job's outcome may enqueue its notification again; either must still
/// meet the key to stay a single job.
pub const KEYED_AT_LEAST: Duration = Duration::from_secs(2 * 86_400);

/// Deletes up to `limit` jobs of `status` (`succeeded` or `dead`) that finished more than
/// `older_than` ago, oldest first; returns how many. Walks `jobs_finished_at_idx` from its
/// oldest end, so a batch costs what it deletes. Media and backups that name a deleted job keep
/// working (their `job_id` becomes NULL).
pub async fn prune_finished(
    db: impl PgExecutor<'_>,
    status: &str,
    older_than: Duration,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let keyed = older_than.max(KEYED_AT_LEAST);
    let deleted = sqlx::query!(
        "DELETE FROM jobs
         WHERE id IN (SELECT id FROM jobs
                      WHERE finished_at IS NOT NULL
                        AND finished_at < now() - make_interval(secs => $2)
                        AND status = $1
                        AND (dedupe_key IS NULL
                             OR finished_at < now() - make_interval(secs => $3))
                      ORDER BY finished_at
                      LIMIT $4
                      FOR UPDATE SKIP LOCKED)",
        status,
        older_than.as_secs_f64(),
        keyed.as_secs_f64(),
        limit,
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}

/// Removes the recipients, subject and bodies from a sent email's payload (personal data, and
/// no longer needed), keeping how many recipients it had.
pub async fn scrub_sent_email(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE jobs
           SET payload = (payload - 'to' - 'cc' - 'bcc' - 'subject' - 'text' - 'html')
                         || jsonb_build_object(
                                'recipients',
                                jsonb_array_length(coalesce(payload -> 'to', '[]'))
                                + jsonb_array_length(coalesce(payload -> 'cc', '[]'))
                                + jsonb_array_length(coalesce(payload -> 'bcc', '[]')),
                                'personal_data_removed', true)
           WHERE id = $1 AND kind = 'email' AND status = 'succeeded'"#,
        id,
    )
    .execute(db)
    .await?;
    Ok(())
}
