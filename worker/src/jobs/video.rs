//! The `video` job: transcode an upload into its MP4 ladder and a poster, make the poster's
//! image variants, and record them all as a media job records an image's.

use std::{path::PathBuf, time::Duration};

use kiln_core::{
    config::VariantSpec,
    db::{self, jobs::Job},
    image_probe::ImageFormat,
    storage::StorageError,
    video_probe::Container,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use super::{Classify, JobError, media};
use crate::{
    Context,
    imaging::{self, Quality},
    video::{
        ffmpeg::{self, FfmpegError, Limits, Source},
        ladder,
    },
};

/// What the upload's probe stored (`media.video`).
#[derive(Debug, Deserialize)]
struct Facts {
    duration_seconds: f64,
    #[serde(default)]
    hdr: bool,
}

/// How often progress is written at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How an attempt stopped by its time limit starts its error.
const TIMED_OUT: &str = "ffmpeg ran over its time limit";

pub async fn run(ctx: &Context, job: &Job) -> Result<(), JobError> {
    let Some(media) = media::start(ctx, job).await? else {
        return Ok(());
    };
    let container = Container::from_content_type(&media.content_type).ok_or_else(|| {
        JobError::Abort(format!("not a video content type: {}", media.content_type))
    })?;
    let facts: Facts = media
        .video
        .clone()
        .ok_or_else(|| JobError::Abort("the video was never probed".into()))
        .and_then(|facts| serde_json::from_value(facts).abort())?;
    let original = match ctx.storage.local_file(&media.original_key).await {
        Ok(file) => file,
        Err(StorageError::NotFound(key)) => {
            return Err(JobError::Abort(format!("the original {key} is missing")));
        }
        Err(other) => return Err(JobError::Retry(other.to_string())),
    };
    let work = tempfile::Builder::new()
        .prefix("kiln-video-")
        .tempdir()
        .retry()?;
    let config = &ctx.config.video;
    let source = Source {
        path: original.path(),
        demuxer: container.demuxer(),
        duration_seconds: facts.duration_seconds,
        hdr: facts.hdr,
        max_seconds: config.limits.max_seconds,
    };
    let limits = Limits {
        timeout: config.timeout,
        threads: ctx.config.cpu_threads,
    };
    let (width, height) = (media.width.max(2) as u32, media.height.max(2) as u32);
    let outputs: Vec<(ladder::Rung, PathBuf)> = ladder::ladder(width, height, &config.renditions)
        .into_iter()
        .map(|rung| {
            let path = work.path().join(format!("{}.mp4", rung.name));
            (rung, path)
        })
        .collect();

    let (sender, receiver) = tokio::sync::watch::channel(0.0f64);
    let transcode = ffmpeg::transcode(
        &config.ffmpeg,
        source,
        &outputs,
        config.audio,
        limits,
        move |done| {
            sender.send_replace(done);
        },
    );
    let started = std::time::Instant::now();
    let (transcoded, ()) = tokio::join!(transcode, report_progress(ctx, media.id, receiver));
    // `None` where /proc cannot be read: no sample then, rather than a zero that would
    // inflate the realtime factor.
    let cpu_seconds = transcoded.map_err(|error| classify(error, job))?;
    let transcode_seconds = started.elapsed().as_secs_f64();
    // Video seconds per ffmpeg CPU second: the dashboard's realtime factor is the ratio of
    // the rates of these two series' sums (per transcode, so their counts match).
    let media_seconds = facts.duration_seconds.min(config.limits.max_seconds);
    if let Some(cpu_seconds) = cpu_seconds {
        metrics::histogram!("kiln_video_media_seconds").record(media_seconds);
        metrics::histogram!("kiln_video_cpu_seconds").record(cpu_seconds);
    }
    let poster = work.path().join("poster.png");
    ffmpeg::poster(&config.ffmpeg, source, &poster, limits)
        .await
        .map_err(|error| classify(error, job))?;
    for (rung, _) in &outputs {
        metrics::histogram!("kiln_video_transcode_seconds", "rendition" => rung.name.clone())
            .record(transcode_seconds);
    }
    let poster_seconds = started.elapsed().as_secs_f64() - transcode_seconds;

    let mut rows = Vec::with_capacity(outputs.len());
    for (rung, path) in &outputs {
        rows.push(store_rendition(ctx, media.id, rung, path).await?);
    }
    let png = tokio::fs::read(&poster).await.retry()?;
    // The poster at the video's size in every image format, and the configured variants of it,
    // so a video has thumbnails like a photo.
    let mut specs = vec![VariantSpec {
        name: "poster".into(),
        width,
        height: None,
        fit: kiln_core::config::Fit::Width,
    }];
    specs.extend(ctx.config.variants.iter().cloned());
    let quality = Quality::of(&ctx.config);
    let max_pixels = ctx.config.max_pixels;
    let rendition = ctx
        .cpu
        .run(move || imaging::render(&png, ImageFormat::Png, &specs, max_pixels, quality))
        .await
        .map_err(JobError::Abort)?
        .abort()?;
    rows.extend(media::store_rendered(ctx, media.id, rendition.files).await?);
    tracing::info!(
        media.id = %media.id,
        transcode_seconds,
        cpu_seconds,
        realtime_factor = cpu_seconds.filter(|c| *c > 0.0).map(|c| media_seconds / c),
        poster_seconds,
        rest_seconds = started.elapsed().as_secs_f64() - transcode_seconds - poster_seconds,
        "video rendered"
    );
    let placeholder = serde_json::to_value(&rendition.placeholder).abort()?;
    let size = (media.width, media.height);
    media::commit_ready(ctx, job, &media, rows, size, placeholder).await?;
    // For the operators' dashboard only: a failure here loses one sample, not the video.
    if let Some(cpu_seconds) = cpu_seconds
        && let Err(error) =
            db::stats::record_transcode(&ctx.db, job.id, media_seconds, cpu_seconds).await
    {
        tracing::warn!(%error, "transcode not recorded for the dashboard");
    }
    Ok(())
}

/// Writes the progress at most once a second until the sender is gone (the transcode ended),
/// each write followed by the cache's invalidation so a read never shows an older figure.
/// It never sleeps: ffmpeg reports twice a second, and a report within a second of the last
/// write is skipped, so the job does not wait on this once ffmpeg is done.
async fn report_progress(
    ctx: &Context,
    media_id: Uuid,
    mut receiver: tokio::sync::watch::Receiver<f64>,
) {
    let mut last_write: Option<std::time::Instant> = None;
    let mut skipped = false;
    while receiver.changed().await.is_ok() {
        if last_write.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
            skipped = true;
            continue;
        }
        skipped = false;
        let done = *receiver.borrow_and_update();
        if write_progress(ctx, media_id, done).await {
            last_write = Some(std::time::Instant::now());
        }
    }
    // The last report (often the end) may have come within the second: written once more,
    // so the poster and storing that follow do not show an older figure.
    if skipped {
        let done = *receiver.borrow();
        write_progress(ctx, media_id, done).await;
    }
}

/// Writes one progress figure and drops the cached read; false if it could not be written.
async fn write_progress(ctx: &Context, media_id: Uuid, done: f64) -> bool {
    match db::media::set_progress(&ctx.db, media_id, done as f32).await {
        Ok(()) => {
            ctx.cache
                .invalidate(&ctx.cache.key("media", media_id))
                .await;
            true
        }
        Err(error) => {
            tracing::debug!(%error, "progress not recorded");
            false
        }
    }
}

/// A refusal is the file's fault (failed with ffmpeg's reason, never retried); a time-out is
/// retried once, then the clip's; anything else is the machine's (retried).
fn classify(error: FfmpegError, job: &Job) -> JobError {
    match error {
        FfmpegError::Refused(reason) => JobError::Abort(format!("ffmpeg: {reason}")),
        FfmpegError::TimedOut(limit) => {
            let again = job
                .last_error
                .as_deref()
                .is_some_and(|last| last.starts_with(TIMED_OUT));
            let error = format!("{TIMED_OUT} ({}s)", limit.as_secs());
            if again {
                JobError::Abort(format!("{error} on two attempts in a row"))
            } else {
                JobError::Retry(error)
            }
        }
        FfmpegError::Io(error) => JobError::Retry(format!("cannot run ffmpeg: {error}")),
    }
}

/// Stores one MP4 (streamed from its file) and returns its row, with its SHA-256 (the ETag).
async fn store_rendition(
    ctx: &Context,
    media_id: Uuid,
    rung: &ladder::Rung,
    path: &std::path::Path,
) -> Result<db::media::Variant, JobError> {
    let key = media::variant_key(media_id, &rung.name, "mp4");
    let bytes = ctx.storage.put_file(&key, path).await.retry()?;
    let mut file = tokio::fs::File::open(path).await.retry()?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer).await.retry()?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(db::media::Variant {
        name: rung.name.clone(),
        format: "mp4".into(),
        width: rung.width as i32,
        height: rung.height as i32,
        bytes: bytes as i64,
        storage_key: key,
        sha256: Some(hex::encode(hasher.finalize())),
    })
}
