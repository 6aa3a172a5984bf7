//! Test clips made by ffmpeg itself (short and small), and ffprobe's view of a file: the
//! implementations Kiln did not write that its video path is checked against.

use std::{path::Path, process::Command};

use serde_json::Value;

fn program(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// How a test clip is made.
#[derive(Debug, Clone)]
pub struct Clip {
    pub width: u32,
    pub height: u32,
    pub seconds: f64,
    pub audio: bool,
    /// Display rotation written in the container, as a phone held upright writes it.
    pub rotate: Option<u32>,
    /// `mp4` (index at the end, as phones write it) or `webm`.
    pub container: &'static str,
    /// 10-bit HEVC with the PQ transfer (HDR10), as recent phones film.
    pub hdr: bool,
}

impl Default for Clip {
    fn default() -> Self {
        Self {
            width: 320,
            height: 240,
            seconds: 2.0,
            audio: true,
            rotate: None,
            container: "mp4",
            hdr: false,
        }
    }
}

impl Clip {
    /// The clip's bytes: `testsrc2` (moving, so the encoder has work) and a sine tone.
    pub fn make(&self) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join(format!("clip.{}", self.container));
        let mut command = Command::new(program("KILN_TEST_FFMPEG", "ffmpeg"));
        command.args([
            "-hide_banner",
            "-v",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
            "-i",
        ]);
        command.arg(format!(
            "testsrc2=size={}x{}:rate=15:duration={}",
            self.width, self.height, self.seconds
        ));
        if self.audio {
            command.args(["-f", "lavfi", "-i"]);
            command.arg(format!("sine=frequency=440:duration={}", self.seconds));
        }
        match self.container {
            _ if self.hdr => command.args([
                "-c:v",
                "libx265",
                "-pix_fmt",
                "yuv420p10le",
                "-x265-params",
                "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc",
                "-color_primaries",
                "bt2020",
                "-color_trc",
                "smpte2084",
                "-colorspace",
                "bt2020nc",
                "-tag:v",
                "hvc1",
            ]),
            "webm" => command.args([
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ]),
            _ => command.args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ]),
        };
        if self.audio {
            match self.container {
                "webm" => command.args(["-c:a", "libopus"]),
                _ => command.args(["-c:a", "aac"]),
            };
        }
        // What a phone writes about where and when; renditions must not carry it.
        command.args(["-metadata", "title=kiln-test-private-title"]);
        command.arg("-y").arg(&out);
        run(&mut command);
        if let Some(degrees) = self.rotate {
            // ffmpeg 5 turns the `rotate` tag into a display matrix only when remuxing.
            let rotated = dir.path().join(format!("rotated.{}", self.container));
            let mut remux = Command::new(program("KILN_TEST_FFMPEG", "ffmpeg"));
            remux
                .args(["-hide_banner", "-v", "error", "-nostdin", "-i"])
                .arg(&out)
                .args(["-c", "copy", "-metadata:s:v:0"])
                .arg(format!("rotate={degrees}"))
                .arg("-y")
                .arg(&rotated);
            run(&mut remux);
            return std::fs::read(&rotated).expect("clip");
        }
        std::fs::read(&out).expect("clip")
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// ffprobe's JSON report of `bytes` (format and streams).
pub fn probe(bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("file");
    std::fs::write(&path, bytes).expect("write");
    probe_file(&path)
}

fn probe_file(path: &Path) -> Value {
    let output = Command::new(program("KILN_TEST_FFPROBE", "ffprobe"))
        .args([
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe JSON")
}

/// A stand-in for ffmpeg that holds transcodes until [`GatedFfmpeg::open`]
/// (`tests/support/ffmpeg_gate.sh`, copied under a name of this test's own so that no other
/// test's processes are mistaken for it).
pub struct GatedFfmpeg {
    _dir: tempfile::TempDir,
    script: std::path::PathBuf,
}

impl GatedFfmpeg {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir
            .path()
            .join(format!("ffmpeg-gate-{}.sh", uuid::Uuid::new_v4().simple()));
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/support/ffmpeg_gate.sh"),
            &script,
        )
        .expect("copy the stand-in");
        Self { _dir: dir, script }
    }

    /// The environment that makes a Kiln under test use it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("KILN_FFMPEG", self.script.display().to_string())]
    }

    /// Lets held and later transcodes run.
    pub fn open(&self) {
        std::fs::write(self.script.with_extension("go"), b"").expect("open the gate");
    }

    /// Whether a process of this stand-in runs (a transcode held).
    pub fn running(&self) -> bool {
        Command::new("pgrep")
            .arg("-f")
            .arg(&self.script)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Default for GatedFfmpeg {
    fn default() -> Self {
        Self::new()
    }
}

/// The duration in seconds ffprobe reads from a report's container.
pub fn duration_of(report: &Value) -> f64 {
    report["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("a duration")
}

/// The first stream of `codec_type` in a report.
pub fn stream<'a>(report: &'a Value, codec_type: &str) -> Option<&'a Value> {
    report["streams"]
        .as_array()?
        .iter()
        .find(|s| s["codec_type"] == codec_type)
}
