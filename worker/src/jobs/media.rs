//! The `media` job: render an upload's variants and record them.

use kiln_core::{
    db::{self, jobs::Job},
    image_probe::ImageFormat,
    jobs::{JobKind, MediaPayload},
    storage::StorageError,
};
use uuid::Uuid;

use super::{Classify, JobError};
use crate::{
    Context,
    cpu::CpuError,
    imaging::{self, Quality},
    notify::{self, MediaOutcome},
};

/// The storage key of a variant: derived only from ids and config, never from client input, and
/// the same on every run so a re-run overwrites instead of duplicating.
pub fn variant_key(media_id: Uuid, name: &str, format: &str) -> String {
    let extension = kiln_core::views::extension(format);
    format!("variants/{media_id}/{name}.{extension}")
}

/// How an attempt whose rendering outlasted its CPU budget starts its error.
const OVER_BUDGET: &str = "rendering ran over its budget";

/// Renders and stores every variant, then commits the rows, the media's `ready` state and the
/// job's success in one transaction.
pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    match ctx.config.test_fault.as_str() {
        "panic" => panic!("injected panic (KILN_TEST_FAULT)"),
        "hang" => std::future::pending::<()>().await,
        "abort" => std::process::abort(),
        // Long enough to outlive several heartbeat time-outs of a test, then done as usual.
        "slow" => tokio::time::sleep(std::time::Duration::from_secs(10)).await,
        _ => {}
    }
    let Some(media) = start(ctx, job).await? else {
        return Ok(());
    };
    let media_id = media.id;
    let format = ImageFormat::from_content_type(&media.content_type).ok_or_else(|| {
        JobError::Abort(format!("unsupported content type {}", media.content_type))
    })?;
    let original = match ctx.storage.get(&media.original_key).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound(key)) => {
            return Err(JobError::Abort(format!("the original {key} is missing")));
        }
        Err(other) => return Err(JobError::Retry(other.to_string())),
    };

    let specs = ctx.config.variants.clone();
    let max_pixels = ctx.config.max_pixels;
    let quality = Quality::of(&ctx.config);
    // Rendering that outlasts most of the attempt's time limit is likely the image's cost: a
    // retry would hold a CPU just as long. The budget ends before the attempt's own time-out
    // (retried like any other), so the two are told apart.
    let limit = ctx
        .config
        .job_timeout
        .unwrap_or_else(|| super::timeout(JobKind::Media));
    let budget = limit.mul_f64(0.75);
    let slow_cpu = ctx.config.test_fault == "cpu-slow";
    let rendered = ctx
        .cpu
        .run_within(budget, move || {
            if slow_cpu {
                std::thread::sleep(budget + std::time::Duration::from_secs(1));
            }
            imaging::render(&original, format, &specs, max_pixels, quality)
        })
        .await;
    let rendition = match rendered {
        Ok(rendition) => rendition.abort()?,
        Err(CpuError::Failed(error)) => return Err(JobError::Abort(error)),
        // Wall-clock time: a busy or throttled machine can slow one attempt, so the first time
        // is retried, and only a second attempt over budget in a row is the image's fault.
        Err(CpuError::OverBudget(budget)) => {
            let error = format!(
                "{OVER_BUDGET} ({:.1}s, three quarters of the time limit)",
                budget.as_secs_f64()
            );
            let again = job
                .last_error
                .as_deref()
                .is_some_and(|last| last.starts_with(OVER_BUDGET));
            return Err(if again {
                JobError::Abort(format!(
                    "{error} on two attempts in a row: this image costs too much to process"
                ))
            } else {
                JobError::Retry(error)
            });
        }
    };

    let rows = store_rendered(ctx, media_id, rendition.files).await?;
    let placeholder = serde_json::to_value(&rendition.placeholder).abort()?;
    let size = (rendition.width as i32, rendition.height as i32);
    commit_ready(ctx, job, &media, rows, size, placeholder).await
}

/// Starts a media or video job: its media, marked processing, or `None` when there is nothing
/// to do (deleted, and no duplicate upload waits for its files; the job is then recorded as
/// succeeded).
pub async fn start(ctx: &Context, job: &Job) -> Result<Option<db::media::Media>, JobError> {
    let payload: MediaPayload = serde_json::from_value(job.payload.clone()).abort()?;
    let media_id = payload.media_id;
    let media = db::media::find(&ctx.db, media_id)
        .await
        .retry()?
        .ok_or_else(|| JobError::Abort(format!("media {media_id} no longer exists")))?;
    if media.status == "deleted" {
        // Decided under the content lock: a duplicate upload either committed before (and is
        // rendered for below) or sees this media deleted and makes its own.
        // The job row first, then the content lock: the order of every other transaction
        // that takes both (the success below, a burial).
        let mut tx = ctx.db.begin().await.retry()?;
        let current = db::jobs::mark_succeeded(&mut *tx, job.id, job.attempts)
            .await
            .retry()?;
        db::media::lock_content(&mut tx, &media.tenant, &media.sha256)
            .await
            .retry()?;
        if !db::media::content_in_use(&mut *tx, media_id)
            .await
            .retry()?
        {
            // Deleted before its turn came, and no duplicate upload waits for its files:
            // nothing to render, and its files are being removed.
            tracing::info!(media.id = %media_id, "media was deleted; nothing to do");
            if current {
                tx.commit().await.retry()?;
            }
            return Ok(None);
        }
        // A duplicate waits for the files: rendered below, where the success is recorded.
        drop(tx);
    }
    db::media::mark_processing(&ctx.db, media_id)
        .await
        .retry()?;
    ctx.cache
        .invalidate(&ctx.cache.key("media", media_id))
        .await;

    Ok(Some(media))
}

/// Stores rendered image files under their variant keys; returns their rows.
pub async fn store_rendered(
    ctx: &Context,
    media_id: Uuid,
    files: Vec<imaging::Rendered>,
) -> Result<Vec<db::media::Variant>, JobError> {
    let mut rows = Vec::with_capacity(files.len());
    for file in files {
        let key = variant_key(media_id, &file.name, file.format);
        let bytes = file.bytes.len() as i64;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&file.bytes));
        ctx.storage.put(&key, file.bytes.into()).await.retry()?;
        rows.push(db::media::Variant {
            name: file.name,
            format: file.format.to_owned(),
            width: file.width as i32,
            height: file.height as i32,
            bytes,
            storage_key: key,
            sha256: Some(sha256),
        });
    }

    Ok(rows)
}

/// Records the stored files' rows, the media's `ready` state (and its waiting duplicates')
/// and the job's success in one transaction, then what follows: cache, notifications, events,
/// usage.
pub async fn commit_ready(
    ctx: &Context,
    job: &Job,
    media: &db::media::Media,
    rows: Vec<db::media::Variant>,
    size: (i32, i32),
    placeholder: serde_json::Value,
) -> Result<(), JobError> {
    let media_id = media.id;
    let mut tx = ctx.db.begin().await.retry()?;
    // The job first: if a newer attempt took it over, record nothing at all.
    if !db::jobs::mark_succeeded(&mut *tx, job.id, job.attempts)
        .await
        .retry()?
    {
        tracing::info!("attempt superseded by a newer one; its results are not recorded");
        return Ok(());
    }
    for row in &rows {
        db::media::upsert_variant(&mut *tx, media_id, row)
            .await
            .retry()?;
    }
    let (width, height) = size;
    // Held to the commit: a duplicate upload of these bytes either sees this media ready, or
    // is among the duplicates made ready here.
    db::media::lock_content(&mut tx, &media.tenant, &media.sha256)
        .await
        .retry()?;
    // False when the media was deleted (before or during rendering): no "ready" for it.
    let owner_ready = db::media::mark_ready(&mut *tx, media_id, width, height, &placeholder)
        .await
        .retry()?;
    let duplicates = db::media::ready_duplicates(&mut tx, media_id, width, height, &placeholder)
        .await
        .retry()?;
    let mut finished = duplicates;
    if owner_ready {
        finished.push(db::media::Media {
            status: "ready".into(),
            placeholder: Some(placeholder),
            progress: None,
            width,
            height,
            error: None,
            updated_at: chrono::Utc::now(),
            ..media.clone()
        });
    }
    let mut publish = Vec::new();
    for ready in &finished {
        let trace = job.traceparent.as_deref();
        let outcome = MediaOutcome::Ready;
        let notification =
            notify::media_outcome(ctx, &mut tx, ready, &rows, job.id, trace, outcome)
                .await
                .retry()?;
        publish.extend(notification);
        let events = crate::events::media_outcome(ctx, &mut tx, ready, &rows, trace)
            .await
            .retry()?;
        publish.extend(events);
    }
    tx.commit().await.retry()?;
    for ready in std::iter::once(media_id).chain(finished.iter().map(|m| m.id)) {
        ctx.cache.invalidate(&ctx.cache.key("media", ready)).await;
    }
    for enqueued in &publish {
        kiln_core::queue::publish_committed(&ctx.writes, &ctx.publisher, enqueued).await;
    }
    let variant_bytes = rows.iter().map(|row| row.bytes).sum();
    ctx.usage
        .add(
            &media.tenant,
            db::usage::Added {
                variant_bytes,
                ..Default::default()
            },
        )
        .await;
    tracing::info!(media.id = %media_id, variants = rows.len(), "media ready");
    Ok(())
}

/// Records, inside the transaction that buries the job, that the media will never be ready,
/// with the reason clients will see, and enqueues its "failed" notification.
pub async fn on_dead(
    ctx: &Context,
    conn: &mut sqlx::PgConnection,
    job: &Job,
    error: &str,
) -> Result<AfterCommit, sqlx::Error> {
    let Ok(payload) = serde_json::from_value::<MediaPayload>(job.payload.clone()) else {
        return Ok(AfterCommit::default());
    };
    let Some(media) = db::media::find(&mut *conn, payload.media_id).await? else {
        return Ok(AfterCommit::default());
    };
    // Duplicate uploads waiting for these files fail with it, under the lock that keeps a
    // new duplicate from slipping in unnoticed.
    db::media::lock_content(&mut *conn, &media.tenant, &media.sha256).await?;
    db::media::mark_failed(&mut *conn, payload.media_id, error).await?;
    let mut failed = db::media::fail_duplicates(&mut *conn, payload.media_id, error).await?;
    if let Some(media) = db::media::find(&mut *conn, payload.media_id).await?
        && media.status == "failed"
    {
        failed.push(media);
    }
    let mut publish = Vec::new();
    let mut stale_cache_keys = vec![ctx.cache.key("media", payload.media_id)];
    for media in &failed {
        let trace = job.traceparent.as_deref();
        let outcome = MediaOutcome::Failed;
        let notification =
            notify::media_outcome(ctx, conn, media, &[], job.id, trace, outcome).await?;
        publish.extend(notification);
        publish.extend(crate::events::media_outcome(ctx, conn, media, &[], trace).await?);
        stale_cache_keys.push(ctx.cache.key("media", media.id));
    }
    Ok(AfterCommit {
        stale_cache_keys,
        publish,
    })
}

/// What a burial leaves to do once its transaction committed.
#[derive(Debug, Default)]
pub struct AfterCommit {
    /// Cache entries of media whose state the burial changed.
    pub stale_cache_keys: Vec<String>,
    /// Jobs it enqueued (a notification, webhook deliveries), to publish.
    pub publish: Vec<Job>,
}
