//! Prints the ffmpeg command lines the worker runs for a video (the ladder, then the poster),
//! one argument per line and a blank line between commands, for `bench/video.sh` to run the
//! same commands by hand.
//!
//! `cargo run --release -p kiln-worker --example video_args -- IN.mp4 WIDTH HEIGHT SECONDS OUT_DIR`

use std::path::{Path, PathBuf};

use kiln_core::Config;
use kiln_worker::video::{
    ffmpeg::{Source, poster_args, transcode_args},
    ladder,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, width, height, seconds, out] = &args[..] else {
        eprintln!("usage: video_args IN WIDTH HEIGHT SECONDS OUT_DIR");
        std::process::exit(2);
    };
    let config = Config::from_env().expect("configuration");
    let number = |s: &str| s.parse::<u32>().expect("a number");
    let source = Source {
        path: Path::new(input),
        demuxer: "mov",
        duration_seconds: seconds.parse().expect("seconds"),
        hdr: false,
        max_seconds: config.video.limits.max_seconds,
    };
    let outputs: Vec<(ladder::Rung, PathBuf)> =
        ladder::ladder(number(width), number(height), &config.video.renditions)
            .into_iter()
            .map(|rung| {
                let path = Path::new(out).join(format!("{}.mp4", rung.name));
                (rung, path)
            })
            .collect();
    let threads = config.cpu_threads;
    let commands = [
        transcode_args(source, &outputs, config.video.audio, threads),
        poster_args(source, &Path::new(out).join("poster.png"), threads, true),
    ];
    for command in commands {
        for arg in command {
            println!("{}", arg.to_string_lossy());
        }
        println!();
    }
}
