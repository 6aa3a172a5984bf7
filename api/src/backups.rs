//! `kiln-api backups list` and `kiln-api backups restore <id> --into <database url>`.
//!
//! Restore downloads the backup to a temporary file while hashing it, refuses it unless size
//! and SHA-256 match what was recorded — before anything touches the target database — then
//! streams it through zstd into `pg_restore`.

use std::process::Stdio;

use anyhow::{Context, bail};
use async_compression::tokio::bufread::ZstdDecoder;
use futures::StreamExt;
use kiln_core::{db, storage::Storage};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::{AsyncWriteExt, BufReader};
use uuid::Uuid;

/// Prints every backup, newest first: id, time, bytes, server version, key.
pub async fn list(pool: &PgPool) -> anyhow::Result<()> {
    for backup in db::backups::list(pool).await? {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            backup.id,
            backup.created_at.to_rfc3339(),
            backup.bytes,
            backup.server_version,
            backup.storage_key
        );
    }
    Ok(())
}

/// Restores backup `id` into the database at `into` (which should be empty).
pub async fn restore(pool: &PgPool, storage: &Storage, id: Uuid, into: &str) -> anyhow::Result<()> {
    let backup = db::backups::find(pool, id)
        .await?
        .with_context(|| format!("no backup {id}"))?;
    let download = tempfile_path()?;
    let result = restore_from(storage, &backup, &download, into).await;
    tokio::fs::remove_file(&download).await.ok();
    result
}

async fn restore_from(
    storage: &Storage,
    backup: &db::backups::Backup,
    download: &std::path::Path,
    into: &str,
) -> anyhow::Result<()> {
    let (_, mut stream) = storage.get_stream(&backup.storage_key).await?;
    // The dump holds every row of the database: readable by this user alone, and never a
    // file someone else prepared at that path.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(download)
        .await?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    let sha256 = hex::encode(hasher.finalize());
    if sha256 != backup.sha256 || bytes as i64 != backup.bytes {
        bail!(
            "backup {} fails its checksum (recorded {} bytes, sha256 {}; stored {bytes} bytes, \
             sha256 {sha256}): refusing to restore it",
            backup.id,
            backup.bytes,
            backup.sha256
        );
    }

    let mut child = kiln_core::pg_tool::command("pg_restore", into)
        .context("the target database is not a URL")?
        .args(["--no-owner", "--no-privileges", "--exit-on-error"])
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running pg_restore (is it installed?)")?;
    let mut stdin = child.stdin.take().context("pg_restore stdin")?;
    let compressed = BufReader::new(tokio::fs::File::open(download).await?);
    let mut dump = ZstdDecoder::new(compressed);
    let copied = tokio::io::copy(&mut dump, &mut stdin).await;
    drop(stdin);
    let status = child.wait().await?;
    copied.context("feeding pg_restore")?;
    if !status.success() {
        bail!("pg_restore failed ({status})");
    }
    eprintln!(
        "restored backup {} ({} bytes) into the target database",
        backup.id, bytes
    );
    Ok(())
}

fn tempfile_path() -> anyhow::Result<std::path::PathBuf> {
    Ok(std::env::temp_dir().join(format!("kiln-restore-{}.dump.zst", Uuid::new_v4())))
}
