//! The `backup` job: `pg_dump --format=custom`, compressed with zstd on the way to storage
//! (`backups/<UTC time>.dump.zst`), recorded with its size, SHA-256, duration and server
//! version, then old backups pruned by the retention policy.

use std::{process::Stdio, time::Instant};

use async_compression::tokio::bufread::ZstdEncoder;
use chrono::{DateTime, Utc};
use kiln_core::db::{self, backups::Backup, jobs::Job};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, BufReader};
use uuid::Uuid;

use super::{Classify, JobError};
use crate::Context;

/// Most of pg_dump's stderr kept for the job's error.
const STDERR_LIMIT: usize = 8 * 1024;

/// Dumps, stores and records one backup, then prunes.
pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    let started = Instant::now();
    let created_at = Utc::now();
    let key = format!(
        "backups/{}.dump.zst",
        created_at.format("%Y%m%dT%H%M%S%.3fZ")
    );
    let url = ctx.config.backup_database_url.expose_secret().to_owned();

    let mut child = kiln_core::pg_tool::command("pg_dump", &url)
        .map_err(|e| JobError::Abort(format!("KILN_BACKUP_DATABASE_URL is not a URL: {e}")))?
        .args(["--format=custom", "--no-password"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The job's timeout drops this future; the dump must not outlive it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| JobError::Abort(format!("cannot run pg_dump (is it installed?): {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| JobError::Retry("no pg_dump stdout".into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| JobError::Retry("no pg_dump stderr".into()))?;
    let stderr_task = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = (&mut stderr)
            .take(STDERR_LIMIT as u64)
            .read_to_end(&mut text)
            .await;
        // Keep draining so pg_dump never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&text).trim().to_owned()
    });

    let mut compressed = ZstdEncoder::new(BufReader::new(stdout));
    let mut writer = ctx.storage.writer(&key).await.retry()?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    let copied = async {
        loop {
            let n = compressed.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, anyhow::Error>(());
            }
            hasher.update(&buffer[..n]);
            bytes += n as u64;
            writer.write(&buffer[..n]).await?;
        }
    }
    .await;
    if let Err(error) = copied {
        // Nobody reads pg_dump's output any more: it would block on the full pipe until the
        // job's time limit. Stop it, and drop what was uploaded so far.
        child.start_kill().ok();
        child.wait().await.ok();
        writer.abort().await.ok();
        return Err(JobError::Retry(format!("storing the backup: {error}")));
    }
    let status = child.wait().await.retry()?;
    let stderr = stderr_task.await.unwrap_or_default();
    if !status.success() {
        writer.abort().await.ok();
        // A failing pg_dump (bad URL, missing permissions, version mismatch) will fail again.
        return Err(JobError::Abort(format!(
            "pg_dump failed ({status}): {stderr}"
        )));
    }
    writer.finish().await.retry()?;

    let server_version = server_version(&url).await.retry()?;
    let backup = Backup {
        id: Uuid::now_v7(),
        storage_key: key,
        bytes: bytes as i64,
        sha256: hex::encode(hasher.finalize()),
        duration_ms: started.elapsed().as_millis() as i64,
        server_version,
        job_id: Some(job.id),
        created_at,
    };
    let mut tx = ctx.db.begin().await.retry()?;
    if !db::jobs::mark_succeeded(&mut *tx, job.id, job.attempts)
        .await
        .retry()?
    {
        ctx.storage.delete(&backup.storage_key).await.ok();
        return Ok(());
    }
    db::backups::insert(&mut *tx, &backup).await.retry()?;
    let data = serde_json::json!(backup);
    let events = crate::events::emit(
        ctx,
        &mut tx,
        None,
        "backup.succeeded",
        data,
        job.traceparent.as_deref(),
    )
    .await
    .retry()?;
    tx.commit().await.retry()?;
    for event in &events {
        kiln_core::queue::publish_committed(&ctx.writes, &ctx.publisher, event).await;
    }
    metrics::gauge!("kiln_backup_last_success_timestamp_seconds")
        .set(created_at.timestamp() as f64);
    metrics::gauge!("kiln_backup_size_bytes").set(bytes as f64);
    metrics::histogram!("kiln_backup_duration_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(backup.id = %backup.id, bytes, duration_ms = backup.duration_ms, "backup stored");

    if let Err(error) = prune(ctx).await {
        // The backup itself succeeded; pruning runs again after the next one.
        tracing::warn!(%error, "pruning old backups failed");
    }
    Ok(())
}

async fn server_version(url: &str) -> Result<String, sqlx::Error> {
    let mut connection = sqlx::PgConnection::connect(url).await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut connection)
        .await?;
    connection.close().await.ok();
    Ok(version)
}

/// Which backups the retention policy keeps: the newest `keep_last`, plus the newest backup of
/// each of the last `keep_days` days. `backups` is newest first.
pub fn retained(
    backups: &[Backup],
    keep_last: usize,
    keep_days: u32,
    now: DateTime<Utc>,
) -> Vec<Uuid> {
    let mut keep: Vec<Uuid> = backups.iter().take(keep_last).map(|b| b.id).collect();
    let oldest_day = (now - chrono::Duration::days(i64::from(keep_days))).date_naive();
    let mut days_seen = std::collections::HashSet::new();
    for backup in backups {
        let day = backup.created_at.date_naive();
        if day > oldest_day && days_seen.insert(day) && !keep.contains(&backup.id) {
            keep.push(backup.id);
        }
    }
    keep
}

/// Deletes backups the policy does not keep: the file first, then the row.
async fn prune(ctx: &Context) -> anyhow::Result<()> {
    let backups = db::backups::list(&ctx.db).await?;
    let keep = retained(
        &backups,
        ctx.config.backup_keep_last,
        ctx.config.backup_keep_days,
        Utc::now(),
    );
    for backup in backups.iter().filter(|b| !keep.contains(&b.id)) {
        ctx.storage.delete(&backup.storage_key).await?;
        db::backups::delete(&ctx.db, backup.id).await?;
        tracing::info!(backup.id = %backup.id, "old backup pruned");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(created_at: &str) -> Backup {
        Backup {
            id: Uuid::new_v4(),
            storage_key: String::new(),
            bytes: 0,
            sha256: String::new(),
            duration_ms: 0,
            server_version: String::new(),
            job_id: None,
            created_at: created_at.parse().expect("time"),
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_one_a_day() {
        let now: DateTime<Utc> = "2026-03-10T12:00:00Z".parse().expect("time");
        let backups = [
            backup("2026-03-10T03:00:00Z"),
            backup("2026-03-10T02:00:00Z"),
            backup("2026-03-09T03:00:00Z"),
            backup("2026-03-09T02:00:00Z"),
            backup("2026-03-01T03:00:00Z"),
        ];
        let keep = retained(&backups, 1, 5, now);
        assert_eq!(
            keep,
            [backups[0].id, backups[2].id],
            "newest, plus 9 March's newest"
        );
        let keep = retained(&backups, 10, 0, now);
        assert_eq!(keep.len(), 5);
    }
}
