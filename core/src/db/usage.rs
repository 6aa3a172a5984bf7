//! Usage per tenant and UTC day (`tenant_usage`). The quota counters (emails accepted,
//! uploads, uploaded bytes) are taken by a conditional upsert, so the check and the count are
//! one atomic step across every process; the rest is added in batches by [`Recorder`].

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::NaiveDate;
use sqlx::{PgExecutor, PgPool};
use tokio::sync::Mutex;

/// One tenant's usage on one day.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageDay {
    pub tenant: String,
    pub day: NaiveDate,
    pub uploads: i64,
    pub upload_bytes: i64,
    pub variant_bytes: i64,
    pub processing_ms: i64,
    pub emails_accepted: i64,
    pub emails_sent: i64,
}

/// Counts `count` emails (one per recipient) for `tenant` today unless that would pass
/// `limit` (0: no limit). Returns whether they were counted.
pub async fn take_emails(
    db: impl PgExecutor<'_>,
    tenant: &str,
    count: i64,
    limit: u64,
) -> Result<bool, sqlx::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    if limit > 0 && count > limit {
        return Ok(false);
    }
    let taken = sqlx::query_scalar!(
        r#"INSERT INTO tenant_usage (tenant, day, emails_accepted)
           VALUES ($1, (now() AT TIME ZONE 'UTC')::date, $3)
           ON CONFLICT (tenant, day) DO UPDATE
           SET emails_accepted = tenant_usage.emails_accepted + $3
           WHERE $2::bigint = 0 OR tenant_usage.emails_accepted + $3 <= $2
           RETURNING 1 AS "one!""#,
        tenant,
        limit,
        count,
    )
    .fetch_optional(db)
    .await?;
    Ok(taken.is_some())
}

/// Gives back emails counted by [`take_emails`] whose request then failed.
pub async fn give_back_emails(
    db: impl PgExecutor<'_>,
    tenant: &str,
    count: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE tenant_usage SET emails_accepted = greatest(emails_accepted - $2, 0)
         WHERE tenant = $1 AND day = (now() AT TIME ZONE 'UTC')::date",
        tenant,
        count,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Which daily upload quota a refused upload is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadQuota {
    Uploads,
    Bytes,
}

/// Counts one upload of `bytes` for `tenant` today unless it would pass `max_uploads` or
/// `max_bytes` (0: no limit).
pub async fn take_upload(
    db: &mut sqlx::PgConnection,
    tenant: &str,
    bytes: i64,
    max_uploads: u64,
    max_bytes: u64,
) -> Result<Result<(), UploadQuota>, sqlx::Error> {
    let max_uploads = i64::try_from(max_uploads).unwrap_or(i64::MAX);
    let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    if max_bytes > 0 && bytes > max_bytes {
        return Ok(Err(UploadQuota::Bytes));
    }
    let taken = sqlx::query_scalar!(
        r#"INSERT INTO tenant_usage (tenant, day, uploads, upload_bytes)
           VALUES ($1, (now() AT TIME ZONE 'UTC')::date, 1, $2)
           ON CONFLICT (tenant, day) DO UPDATE
           SET uploads = tenant_usage.uploads + 1,
               upload_bytes = tenant_usage.upload_bytes + $2
           WHERE ($3::bigint = 0 OR tenant_usage.uploads < $3)
             AND ($4::bigint = 0 OR tenant_usage.upload_bytes + $2 <= $4)
           RETURNING 1 AS "one!""#,
        tenant,
        bytes,
        max_uploads,
        max_bytes,
    )
    .fetch_optional(&mut *db)
    .await?;
    if taken.is_some() {
        return Ok(Ok(()));
    }
    let uploads = today(&mut *db, tenant).await?.map_or(0, |d| d.uploads);
    Ok(Err(if max_uploads > 0 && uploads >= max_uploads {
        UploadQuota::Uploads
    } else {
        UploadQuota::Bytes
    }))
}

/// The tenant's usage today, if it has any.
pub async fn today(db: impl PgExecutor<'_>, tenant: &str) -> Result<Option<UsageDay>, sqlx::Error> {
    sqlx::query_as!(
        UsageDay,
        "SELECT tenant, day, uploads, upload_bytes, variant_bytes, processing_ms,
                emails_accepted, emails_sent
         FROM tenant_usage WHERE tenant = $1 AND day = (now() AT TIME ZONE 'UTC')::date",
        tenant,
    )
    .fetch_optional(db)
    .await
}

/// Usage from `from` to `to` (inclusive), of one tenant or all, by tenant then day.
pub async fn range(
    db: impl PgExecutor<'_>,
    tenant: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<UsageDay>, sqlx::Error> {
    sqlx::query_as!(
        UsageDay,
        "SELECT tenant, day, uploads, upload_bytes, variant_bytes, processing_ms,
                emails_accepted, emails_sent
         FROM tenant_usage
         WHERE day BETWEEN $2 AND $3 AND ($1::text IS NULL OR tenant = $1)
         ORDER BY tenant, day",
        tenant,
        from,
        to,
    )
    .fetch_all(db)
    .await
}

/// Usage a worker adds after the fact.
#[derive(Debug, Clone, Copy, Default)]
pub struct Added {
    pub variant_bytes: i64,
    pub processing_ms: i64,
    pub emails_sent: i64,
}

/// Adds usage in batches: one upsert per tenant and day every [`FLUSH_EVERY`], so a job costs no
/// extra round trip. What a crash loses is at most that interval's processing time.
#[derive(Clone)]
pub struct Recorder {
    pending: Arc<Mutex<HashMap<(String, NaiveDate), Added>>>,
    db: PgPool,
}

const FLUSH_EVERY: Duration = Duration::from_secs(2);

impl Recorder {
    /// A recorder flushing on the current runtime.
    pub fn spawn(db: PgPool) -> Self {
        let recorder = Self {
            pending: Arc::default(),
            db,
        };
        let flusher = recorder.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                flusher.flush().await;
            }
        });
        recorder
    }

    /// Adds `added` to `tenant`'s usage today.
    pub async fn add(&self, tenant: &str, added: Added) {
        let day = chrono::Utc::now().date_naive();
        let mut pending = self.pending.lock().await;
        let entry = pending.entry((tenant.to_owned(), day)).or_default();
        entry.variant_bytes += added.variant_bytes;
        entry.processing_ms += added.processing_ms;
        entry.emails_sent += added.emails_sent;
    }

    /// Writes what is pending; kept for the next flush if Postgres fails.
    pub async fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().await);
        for ((tenant, day), added) in batch {
            let written = sqlx::query!(
                "INSERT INTO tenant_usage (tenant, day, variant_bytes, processing_ms, emails_sent)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, day) DO UPDATE
                 SET variant_bytes = tenant_usage.variant_bytes + $3,
                     processing_ms = tenant_usage.processing_ms + $4,
                     emails_sent = tenant_usage.emails_sent + $5",
                tenant,
                day,
                added.variant_bytes,
                added.processing_ms,
                added.emails_sent,
            )
            .execute(&self.db)
            .await;
            if let Err(error) = written {
                tracing::warn!(%error, tenant, "usage not recorded yet; retrying");
                let mut pending = self.pending.lock().await;
                let entry = pending.entry((tenant, day)).or_default();
                entry.variant_bytes += added.variant_bytes;
                entry.processing_ms += added.processing_ms;
                entry.emails_sent += added.emails_sent;
            }
        }
    }
}
