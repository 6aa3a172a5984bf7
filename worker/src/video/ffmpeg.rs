//! The `ffmpeg` CLI as a child process: its input read only as the sniffed container through
//! the `file` protocol, a wall-clock limit, its threads bounded, killed (with its process
//! group) when its job is dropped, and its progress read from `-progress`.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::ladder::{PRESET, Rung};

/// The clip to read.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub path: &'a Path,
    /// The ffmpeg demuxer of the sniffed container (`mov`, `matroska`).
    pub demuxer: &'a str,
    pub duration_seconds: f64,
    /// PQ or HLG: tone-mapped to SDR BT.709.
    pub hdr: bool,
    /// No more than this is read, whatever the container claims its duration is.
    pub max_seconds: f64,
}

/// How much one run may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub threads: usize,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    /// ffmpeg refused the file: the file's fault, so a retry would fail the same way.
    #[error("ffmpeg: {0}")]
    Refused(String),
    /// Over the wall-clock limit (killed).
    #[error("ffmpeg ran over its time limit of {0:?} and was stopped")]
    TimedOut(Duration),
    /// ffmpeg could not be started or read: the machine's fault.
    #[error("cannot run ffmpeg: {0}")]
    Io(#[from] std::io::Error),
}

/// Tone mapping from PQ/HLG to SDR BT.709 (zimg's `zscale`, then Hable's curve).
/// It ends in 4:2:0 so that zscale, not swscale's BT.601 default, does the matrix conversion
/// (and the split and scales work on 8-bit frames, not 4K of float RGB).
const TONEMAP: &str = "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
                       tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p,";

/// How far past the poster's start frames are searched for one that is not black.
const POSTER_SEARCH_SECONDS: u32 = 10;

/// Makes every rung from one decode; `progress` gets the fraction done as ffmpeg reports it.
/// Returns the CPU seconds ffmpeg used (as of its last report), for the realtime factor;
/// `None` where `/proc` cannot be read.
pub async fn transcode(
    ffmpeg: &str,
    source: Source<'_>,
    outputs: &[(Rung, PathBuf)],
    audio: bool,
    limits: Limits,
    progress: impl FnMut(f64),
) -> Result<Option<f64>, FfmpegError> {
    let args = transcode_args(source, outputs, audio, limits.threads);
    run(
        ffmpeg,
        args,
        source.duration_seconds,
        limits.timeout,
        progress,
    )
    .await
}

/// Writes the poster, a PNG of the first frame from about 1 s in (half-way through a shorter
/// clip) that is not almost all black, else the first frame there.
pub async fn poster(
    ffmpeg: &str,
    source: Source<'_>,
    out: &Path,
    limits: Limits,
) -> Result<(), FfmpegError> {
    for skip_black in [true, false] {
        let args = poster_args(source, out, limits.threads, skip_black);
        let _cpu_seconds = run(
            ffmpeg,
            args,
            source.duration_seconds,
            limits.timeout,
            |_| {},
        )
        .await?;
        if tokio::fs::try_exists(out).await? {
            return Ok(());
        }
    }
    Err(FfmpegError::Refused(
        "no frame could be read for the poster".into(),
    ))
}

fn input_args(
    source: Source<'_>,
    threads: usize,
    seek: Option<f64>,
    read_seconds: f64,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-hide_banner", "-nostdin", "-nostats", "-v", "error"]
        .map(OsString::from)
        .into();
    args.extend(["-protocol_whitelist", "file", "-threads"].map(OsString::from));
    args.push(threads.to_string().into());
    if let Some(at) = seek {
        args.extend(["-ss".into(), format!("{at:.3}").into()]);
    }
    args.extend(["-t".into(), format!("{read_seconds:.3}").into()]);
    // The demuxer forced and alone allowed; the mov demuxer's external data references
    // (which would open other files) stay off, stated rather than left to the default.
    args.extend(["-f", source.demuxer, "-format_whitelist", source.demuxer].map(OsString::from));
    if source.demuxer == "mov" {
        args.extend(["-enable_drefs", "0"].map(OsString::from));
    }
    args.push("-i".into());
    // `file:` so that a path is never read as another protocol's URL.
    let mut input = OsString::from("file:");
    input.push(source.path);
    args.push(input);
    args
}

/// The arguments of [`transcode`] (public for `bench/video.sh`, which runs the same command
/// by hand).
pub fn transcode_args(
    source: Source<'_>,
    outputs: &[(Rung, PathBuf)],
    audio: bool,
    threads: usize,
) -> Vec<OsString> {
    let mut args = input_args(source, threads, None, source.max_seconds);
    let tonemap = if source.hdr { TONEMAP } else { "" };
    let labels: String = (0..outputs.len()).map(|i| format!("[s{i}]")).collect();
    let mut graph = format!("[0:v:0]{tonemap}split={}{labels}", outputs.len());
    for (i, (rung, _)) in outputs.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{i}]scale={}:{}:flags=bicubic,setsar=1,format=yuv420p[v{i}]",
            rung.width, rung.height
        ));
    }
    args.extend(["-filter_complex_threads".into(), threads.to_string().into()]);
    args.extend(["-filter_complex".into(), graph.into()]);
    for (i, (rung, path)) in outputs.iter().enumerate() {
        args.extend(["-map".into(), format!("[v{i}]").into()]);
        args.extend(
            [
                "-c:v",
                "libx264",
                "-preset",
                PRESET,
                "-profile:v",
                "high",
                "-pix_fmt",
                "yuv420p",
            ]
            .map(OsString::from),
        );
        args.extend(["-crf".into(), rung.crf.to_string().into()]);
        args.extend(["-threads".into(), threads.to_string().into()]);
        if source.hdr {
            args.extend(
                [
                    "-color_primaries",
                    "bt709",
                    "-color_trc",
                    "bt709",
                    "-colorspace",
                    "bt709",
                ]
                .map(OsString::from),
            );
        }
        if audio {
            // `?`: a clip without audio simply has none.
            args.extend(
                ["-map", "0:a:0?", "-c:a", "aac", "-b:a", "128k", "-ac", "2"].map(OsString::from),
            );
        } else {
            args.push("-an".into());
        }
        args.extend(
            [
                "-sn",
                "-dn",
                "-map_metadata",
                "-1",
                "-map_chapters",
                "-1",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
                "-y",
            ]
            .map(OsString::from),
        );
        args.push(path.into());
    }
    args.extend(["-progress", "pipe:1"].map(OsString::from));
    args
}

/// The arguments of one [`poster`] run (public for `bench/video.sh`).
pub fn poster_args(
    source: Source<'_>,
    out: &Path,
    threads: usize,
    skip_black: bool,
) -> Vec<OsString> {
    let at = (source.duration_seconds / 2.0).min(1.0);
    let mut args = input_args(source, threads, Some(at), f64::from(POSTER_SEARCH_SECONDS));
    let tonemap = if source.hdr { TONEMAP } else { "" };
    // blackframe with amount=0 measures every frame; the metadata filter then keeps those
    // with less than 90% of their pixels black.
    let select = if skip_black {
        "blackframe=amount=0:threshold=32,\
         metadata=mode=select:key=lavfi.blackframe.pblack:value=90:function=less,"
    } else {
        ""
    };
    args.extend([
        "-vf".into(),
        format!("{tonemap}{select}format=rgb24").into(),
    ]);
    args.extend(
        [
            "-frames:v",
            "1",
            "-update",
            "1",
            "-f",
            "image2",
            "-c:v",
            "png",
            "-y",
        ]
        .map(OsString::from),
    );
    args.push(out.into());
    args.extend(["-progress", "pipe:1"].map(OsString::from));
    args
}

/// Runs ffmpeg with `args` within `timeout`, reporting `-progress` as a fraction of
/// `duration_seconds`.
async fn run(
    ffmpeg: &str,
    args: Vec<OsString>,
    duration_seconds: f64,
    timeout: Duration,
    mut progress: impl FnMut(f64),
) -> Result<Option<f64>, FfmpegError> {
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // It reads untrusted files: none of the worker's secrets (database, broker, storage
        // credentials) in its environment.
        .env_clear()
        .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
        // Its own process group, so a terminal's Ctrl-C reaches the worker (which stops its
        // jobs) and not ffmpeg behind its back; killed when the job's future is dropped. If the
        // worker itself is killed (-9), nothing kills ffmpeg, but its `-progress` pipe breaks:
        // ffmpeg writes a report every half second and exits on the broken pipe.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let mut cpu_seconds = None;
    let stdout = child.stdout.take().ok_or_else(|| broken("stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| broken("stderr"))?;
    let work = async {
        // The first 64 KiB of its complaints are kept; the rest is read and dropped, so a
        // file that makes ffmpeg print without end cannot fill the worker's memory.
        let errors = async {
            let mut text = Vec::new();
            (&mut stderr).take(64 * 1024).read_to_end(&mut text).await?;
            tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&text).into_owned())
        };
        let reports = async {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await? {
                if let Some(done) = fraction_done(&line, duration_seconds) {
                    progress(done);
                }
                // A report ends with `progress=`; the last (`progress=end`) comes after the
                // files are finished, just before ffmpeg exits.
                if line.starts_with("progress=")
                    && let Some(seconds) = pid.and_then(cpu_seconds_of)
                {
                    cpu_seconds = Some(seconds);
                }
            }
            Ok::<_, std::io::Error>(())
        };
        let (errors, reports) = tokio::join!(errors, reports);
        reports?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, errors.unwrap_or_default()))
    };
    let (status, errors) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FfmpegError::TimedOut(timeout))??;
    if status.success() {
        return Ok(cpu_seconds);
    }
    let reason = errors
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("it exited without saying why")
        .to_owned();
    Err(FfmpegError::Refused(reason))
}

fn broken(what: &str) -> FfmpegError {
    FfmpegError::Io(std::io::Error::other(format!(
        "ffmpeg's {what} was not captured"
    )))
}

/// CPU seconds (user and system) process `pid` has used, from `/proc` (Linux).
fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its ')' are fixed.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks / 100.0)
}

/// The fraction done in a `-progress` line (`out_time_us=…`).
fn fraction_done(line: &str, duration_seconds: f64) -> Option<f64> {
    let micros: f64 = line.strip_prefix("out_time_us=")?.trim().parse().ok()?;
    (duration_seconds > 0.0).then(|| (micros / 1e6 / duration_seconds).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_become_fractions_and_other_lines_are_ignored() {
        assert_eq!(fraction_done("out_time_us=2500000", 10.0), Some(0.25));
        assert_eq!(fraction_done("out_time_us=N/A", 10.0), None);
        assert_eq!(fraction_done("out_time_us=99000000", 10.0), Some(1.0));
        assert_eq!(fraction_done("frame=12", 10.0), None);
    }

    #[test]
    fn a_process_cpu_time_is_read_from_proc() {
        let own = cpu_seconds_of(std::process::id()).expect("this process");
        assert!(own >= 0.0);
        assert_eq!(cpu_seconds_of(u32::MAX), None);
    }

    #[test]
    fn the_input_is_read_only_as_its_container_through_the_file_protocol() {
        let source = Source {
            path: Path::new("/tmp/x:y.mp4"),
            demuxer: "mov",
            duration_seconds: 3.0,
            hdr: false,
            max_seconds: 300.0,
        };
        let rung = Rung {
            name: "360p".into(),
            width: 640,
            height: 360,
            crf: 24,
        };
        let args: Vec<String> = transcode_args(source, &[(rung, "/o/360p.mp4".into())], true, 2)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("-protocol_whitelist file"), "{joined}");
        assert!(
            joined.contains(
                "-t 300.000 -f mov -format_whitelist mov -enable_drefs 0 -i file:/tmp/x:y.mp4"
            ),
            "{joined}"
        );
        assert!(joined.contains("scale=640:360"), "{joined}");
        assert!(joined.contains("-movflags +faststart"), "{joined}");
        assert!(joined.contains("-map_metadata -1"), "{joined}");
        assert!(
            !joined.contains("zscale"),
            "no tone mapping for SDR: {joined}"
        );
    }
}
