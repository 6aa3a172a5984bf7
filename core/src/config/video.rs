//! Video uploads and transcoding (`KILN_VIDEO_*`, `KILN_FFMPEG`, `KILN_FFPROBE`).

use std::time::Duration;

use super::{ConfigError, Env};
use crate::video_probe::VideoLimits;

/// How videos are accepted and transcoded.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// The `ffprobe` and `ffmpeg` programs (`KILN_FFPROBE`, `KILN_FFMPEG`; found on `PATH` by
    /// default).
    pub ffprobe: String,
    pub ffmpeg: String,
    /// Longest and largest video accepted (`KILN_VIDEO_MAX_SECONDS`, `KILN_VIDEO_MAX_SIZE`).
    pub limits: VideoLimits,
    /// Uploads of videos larger than this are refused with 413 (`KILN_VIDEO_MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
    /// Keep the audio (as AAC) in renditions (`KILN_VIDEO_AUDIO`).
    pub audio: bool,
    /// The renditions' short sides, smallest first (`KILN_VIDEO_RENDITIONS`).
    pub renditions: Vec<u32>,
    /// Wall-clock limit of one transcode (`KILN_VIDEO_TIMEOUT_SECS`); the job's own time limit.
    pub timeout: Duration,
}

impl VideoConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        const SIZE: &str = "KILN_VIDEO_MAX_SIZE";
        const RENDITIONS: &str = "KILN_VIDEO_RENDITIONS";
        let size = env.string(SIZE, "3840x2160");
        let (max_width, max_height) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)))
            .filter(|&(w, h): &(u32, u32)| (16..=16_384).contains(&w) && (16..=16_384).contains(&h))
            .ok_or_else(|| env.error(SIZE, format!("{size:?}: use WIDTHxHEIGHT, 16 to 16384")))?;
        let mut renditions = Vec::new();
        for rung in env.string(RENDITIONS, "360,720,1080").split(',') {
            let rung = rung.trim().trim_end_matches('p');
            let short_side: u32 = rung
                .parse()
                .ok()
                .filter(|s| (144..=4320).contains(s) && s % 2 == 0)
                .ok_or_else(|| {
                    env.error(
                        RENDITIONS,
                        format!("{rung:?}: short sides are even numbers from 144 to 4320"),
                    )
                })?;
            renditions.push(short_side);
        }
        renditions.sort_unstable();
        renditions.dedup();
        if renditions.is_empty() {
            return Err(env.error(RENDITIONS, "name at least one rendition".into()));
        }
        Ok(Self {
            ffprobe: env.string("KILN_FFPROBE", "ffprobe"),
            ffmpeg: env.string("KILN_FFMPEG", "ffmpeg"),
            limits: VideoLimits {
                max_seconds: f64::from(env.bounded("KILN_VIDEO_MAX_SECONDS", 300u32, 1, 86_400)?),
                max_width,
                max_height,
            },
            max_upload_bytes: env.parse("KILN_VIDEO_MAX_UPLOAD_BYTES", "1073741824")?,
            audio: env.parse("KILN_VIDEO_AUDIO", "true")?,
            renditions,
            timeout: Duration::from_secs(env.bounded(
                "KILN_VIDEO_TIMEOUT_SECS",
                3_600,
                10,
                86_400,
            )?),
        })
    }
}
