//! What a video upload is: the container by its first bytes, then what `ffprobe` (Debian's
//! ffmpeg, run as a child process, never linked) finds inside, checked against the limits
//! before any job exists.
//!
//! `ffprobe` runs with the demuxer forced to the sniffed container and only the `file`
//! protocol allowed, so a playlist or concat file dressed as a video (CVE-2016-1897,
//! CVE-2017-9993) is never parsed as one and can never make ffmpeg open another file or URL.
//! The mov demuxer's external data references stay off (its default).

use std::{path::Path, process::Stdio, time::Duration};

use serde::Deserialize;

/// The containers Kiln accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// ISO base media (`ftyp` with an MP4 brand): phones other than iPhones, most encoders.
    Mp4,
    /// QuickTime (`ftyp` brand `qt  `): iPhones.
    QuickTime,
    /// WebM (EBML; VP8, VP9 or AV1).
    WebM,
}

impl Container {
    /// The MIME type recorded for the original.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Mp4 => "video/mp4",
            Self::QuickTime => "video/quicktime",
            Self::WebM => "video/webm",
        }
    }

    /// Parses a MIME type as recorded by [`Container::content_type`].
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        [Self::Mp4, Self::QuickTime, Self::WebM]
            .into_iter()
            .find(|c| c.content_type() == content_type)
    }

    /// The ffmpeg demuxer forced for this container.
    pub fn demuxer(self) -> &'static str {
        match self {
            Self::Mp4 | Self::QuickTime => "mov",
            Self::WebM => "matroska",
        }
    }

    /// Video codecs (ffprobe's names) accepted in this container.
    fn video_codecs(self) -> &'static [&'static str] {
        match self {
            Self::Mp4 | Self::QuickTime => &["h264", "hevc", "av1", "vp9"],
            Self::WebM => &["vp8", "vp9", "av1"],
        }
    }
}

/// MP4 brands (`ftyp` major brand) of video files. Image brands (`heic`, `mif1`, `avif`) and
/// audio-only ones (`M4A `) are not among them.
const MP4_BRANDS: [&[u8; 4]; 12] = [
    b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"MSNV",
    b"3gp4", b"3gp5",
];

/// Recognises a video container from the first 12 bytes, whatever the client claimed.
pub fn sniff(head: &[u8]) -> Option<Container> {
    match head {
        [0x1A, 0x45, 0xDF, 0xA3, ..] => Some(Container::WebM),
        [_, _, _, _, b'f', b't', b'y', b'p', b0, b1, b2, b3, ..] => {
            let brand = [*b0, *b1, *b2, *b3];
            if &brand == b"qt  " {
                Some(Container::QuickTime)
            } else if MP4_BRANDS.iter().any(|b| **b == brand) {
                Some(Container::Mp4)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Limits a video must be within.
#[derive(Debug, Clone, Copy)]
pub struct VideoLimits {
    pub max_seconds: f64,
    /// The largest frame, either orientation.
    pub max_width: u32,
    pub max_height: u32,
}

/// What a valid video holds.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub container: Container,
    pub duration_seconds: f64,
    /// Upright (after the rotation a player applies).
    pub width: u32,
    pub height: u32,
    /// Clockwise degrees a player turns the frames (0, 90, 180, 270).
    pub rotation: u32,
    pub codec: String,
    /// Bits per second of the whole file, when the container says.
    pub bit_rate: Option<u64>,
    pub has_audio: bool,
    /// PQ or HLG transfer: tone-mapped to SDR when transcoded.
    pub hdr: bool,
}

impl VideoInfo {
    /// What the media resource shows (`video`), stored with the media.
    pub fn facts(&self) -> serde_json::Value {
        serde_json::json!({
            "duration_seconds": self.duration_seconds,
            "bit_rate": self.bit_rate,
            "codec": self.codec,
            "has_audio": self.has_audio,
            "rotation": self.rotation,
            "hdr": self.hdr,
        })
    }
}

/// Why a video is refused.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// Not a container or codec Kiln takes (415).
    #[error("{0}")]
    Unsupported(String),
    /// Unreadable, or no video in it (422 `invalid_video`).
    #[error("{0}")]
    Invalid(String),
    /// Longer than `KILN_VIDEO_MAX_SECONDS` (422 `video_too_long`).
    #[error("{0}")]
    TooLong(String),
    /// Larger frames than `KILN_VIDEO_MAX_SIZE` (422 `video_too_large`).
    #[error("{0}")]
    TooLarge(String),
    /// ffprobe could not be run, or ran over its time.
    #[error("ffprobe: {0}")]
    Probe(String),
}

/// How long ffprobe may take: it reads headers and indexes, never the frames.
const PROBE_TIME: Duration = Duration::from_secs(30);

/// Runs `ffprobe` (the program at `ffprobe`) on the local file `path`, sniffed as `container`,
/// and checks what it finds against `limits`.
pub async fn probe(
    ffprobe: &str,
    path: &Path,
    container: Container,
    limits: VideoLimits,
) -> Result<VideoInfo, VideoError> {
    let mut command = tokio::process::Command::new(ffprobe);
    command
        .args(["-v", "error", "-protocol_whitelist", "file", "-f"])
        .arg(container.demuxer())
        .arg("-format_whitelist")
        .arg(container.demuxer())
        .args(if container.demuxer() == "mov" {
            &["-enable_drefs", "0"][..]
        } else {
            &[]
        })
        .args([
            "-show_entries",
            "format=format_name,duration,bit_rate:stream=codec_type,codec_name,width,height,\
             color_transfer:stream_side_data=rotation:stream_tags=rotate",
            "-of",
            "json",
            "-i",
        ])
        .arg(file_url(path))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // It reads untrusted files: none of the API's secrets in its environment.
        .env_clear()
        .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
        .kill_on_drop(true);
    let output = tokio::time::timeout(PROBE_TIME, command.output())
        .await
        .map_err(|_| VideoError::Probe(format!("no answer within {PROBE_TIME:?}")))?
        .map_err(|e| VideoError::Probe(format!("cannot run {ffprobe}: {e}")))?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr);
        return Err(VideoError::Invalid(format!(
            "the video cannot be read: {}",
            first_line(&reason)
        )));
    }
    let report: Report = serde_json::from_slice(&output.stdout)
        .map_err(|e| VideoError::Probe(format!("unexpected output: {e}")))?;
    check(report, container, limits)
}

/// `file:` plus the path, so a name with a colon is never read as another protocol.
fn file_url(path: &Path) -> String {
    format!("file:{}", path.display())
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no reason given")
}

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Debug, Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    color_transfer: Option<String>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Debug, Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct Tags {
    rotate: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Format {
    format_name: Option<String>,
    duration: Option<String>,
    bit_rate: Option<String>,
}

fn check(
    report: Report,
    container: Container,
    limits: VideoLimits,
) -> Result<VideoInfo, VideoError> {
    let format = report
        .format
        .ok_or_else(|| VideoError::Invalid("the file has no readable container".into()))?;
    let expected = match container {
        Container::Mp4 | Container::QuickTime => "mp4",
        Container::WebM => "webm",
    };
    if !format
        .format_name
        .as_deref()
        .is_some_and(|names| names.split(',').any(|n| n == expected || n == "mov"))
    {
        return Err(VideoError::Unsupported(format!(
            "the container is {:?}, not {expected}",
            format.format_name.unwrap_or_default()
        )));
    }
    let video = report
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video"))
        .ok_or_else(|| VideoError::Invalid("the file has no video stream".into()))?;
    let codec = video.codec_name.clone().unwrap_or_default();
    if !container.video_codecs().contains(&codec.as_str()) {
        return Err(VideoError::Unsupported(format!(
            "video codec {codec:?} is not accepted in {}; use one of {}",
            container.content_type(),
            container.video_codecs().join(", ")
        )));
    }
    let (Some(coded_width), Some(coded_height)) = (video.width, video.height) else {
        return Err(VideoError::Invalid(
            "the video stream has no frame size".into(),
        ));
    };
    let duration = format
        .duration
        .as_deref()
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or_else(|| VideoError::Invalid("the video has no duration".into()))?;
    if duration > limits.max_seconds {
        return Err(VideoError::TooLong(format!(
            "the video lasts {duration:.1} s; the limit is {} s",
            limits.max_seconds
        )));
    }
    let fits = |w: u32, h: u32| w <= limits.max_width && h <= limits.max_height;
    if !fits(coded_width, coded_height) && !fits(coded_height, coded_width) {
        return Err(VideoError::TooLarge(format!(
            "the video is {coded_width}x{coded_height}; the limit is {}x{} either way round",
            limits.max_width, limits.max_height
        )));
    }
    let rotation = rotation_of(video);
    let (width, height) = if rotation % 180 == 90 {
        (coded_height, coded_width)
    } else {
        (coded_width, coded_height)
    };
    let hdr = matches!(
        video.color_transfer.as_deref(),
        Some("smpte2084" | "arib-std-b67")
    );
    Ok(VideoInfo {
        container,
        duration_seconds: duration,
        width,
        height,
        rotation,
        codec,
        bit_rate: format.bit_rate.as_deref().and_then(|b| b.parse().ok()),
        has_audio: report
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio")),
        hdr,
    })
}

/// The clockwise rotation a player applies: the display matrix (ffprobe reports it
/// counter-clockwise, so -90 is a phone held upright) or the older `rotate` tag.
fn rotation_of(stream: &Stream) -> u32 {
    let degrees = stream
        .side_data_list
        .iter()
        .find_map(|s| s.rotation)
        .map(|r| -r)
        .or_else(|| stream.tags.rotate.as_deref().and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    // ffmpeg turns only quarter turns; anything else is played (and transcoded) unturned.
    let quarter = (degrees / 90.0).round();
    if (degrees - quarter * 90.0).abs() > 1.0 {
        return 0;
    }
    ((quarter as i64 * 90).rem_euclid(360)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_told_by_their_first_bytes_and_images_in_ftyp_are_not_videos() {
        assert_eq!(sniff(b"\0\0\0\x20ftypisom\0\0\x02\0"), Some(Container::Mp4));
        assert_eq!(
            sniff(b"\0\0\0\x14ftypqt  \0\0\0\0"),
            Some(Container::QuickTime)
        );
        assert_eq!(
            sniff(b"\x1A\x45\xDF\xA3\x9f\x42\x86\x81"),
            Some(Container::WebM)
        );
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0"), None);
        assert_eq!(sniff(b"\0\0\0\x1cftypavif\0\0\0\0"), None);
        assert_eq!(sniff(b"#EXTM3U\n#EXT-X-MEDIA"), None);
        assert_eq!(sniff(b"\0\0\0\x20ftyp"), None, "too short to know");
    }

    fn report(json: serde_json::Value) -> Report {
        serde_json::from_value(json).expect("report")
    }

    const LIMITS: VideoLimits = VideoLimits {
        max_seconds: 300.0,
        max_width: 3840,
        max_height: 2160,
    };

    fn phone_clip(rotation: f64, seconds: &str) -> Report {
        report(serde_json::json!({
            "streams": [
                {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
                 "side_data_list": [{"rotation": rotation}]},
                {"codec_type": "audio", "codec_name": "aac"}
            ],
            "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": seconds,
                       "bit_rate": "8000000"}
        }))
    }

    #[test]
    fn a_portrait_phone_clip_is_upright_with_its_audio() {
        let info = check(phone_clip(-90.0, "12.5"), Container::Mp4, LIMITS).expect("valid");
        assert_eq!((info.width, info.height, info.rotation), (1080, 1920, 90));
        assert!(info.has_audio);
        assert_eq!(info.bit_rate, Some(8_000_000));
        assert_eq!(info.duration_seconds, 12.5);
    }

    #[test]
    fn limits_and_codecs_are_enforced_with_the_reason() {
        let long = check(phone_clip(0.0, "301"), Container::Mp4, LIMITS).expect_err("long");
        assert!(
            matches!(long, VideoError::TooLong(ref m) if m.contains("301")),
            "{long}"
        );
        let small = VideoLimits {
            max_width: 1280,
            max_height: 720,
            ..LIMITS
        };
        let big = check(phone_clip(0.0, "3"), Container::Mp4, small).expect_err("big");
        assert!(
            matches!(big, VideoError::TooLarge(ref m) if m.contains("1920x1080")),
            "{big}"
        );
        let webm_h264 = check(
            report(serde_json::json!({
                "streams": [{"codec_type": "video", "codec_name": "h264", "width": 64, "height": 64}],
                "format": {"format_name": "matroska,webm", "duration": "1.0"}
            })),
            Container::WebM,
            LIMITS,
        )
        .expect_err("h264 is not WebM");
        assert!(matches!(webm_h264, VideoError::Unsupported(_)));
        let playlist = check(
            report(serde_json::json!({
                "streams": [{"codec_type": "video", "codec_name": "h264", "width": 64, "height": 64}],
                "format": {"format_name": "hls", "duration": "1.0"}
            })),
            Container::Mp4,
            LIMITS,
        )
        .expect_err("not mp4");
        assert!(matches!(playlist, VideoError::Unsupported(_)));
    }
}
