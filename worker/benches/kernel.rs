//! The resize kernel on its own: decode one photo and render every default variant (JPEG and
//! WebP at the default qualities), as the worker does for one upload.
//!
//! `cargo bench -p kiln-worker --bench kernel -- [image] [runs] [threads]` prints, over `runs`
//! renders after one warm-up: the median wall time and CPU time (user + system, from /proc), the
//! output bytes per format, and the process's peak RSS. `bench/kernel.sh` runs it next to
//! libvips. With `threads` > 1 it then renders `runs` images on each of that many threads at
//! once and prints the kernel's throughput on those cores (`bench/pipeline.sh` compares the
//! whole system with it).

use std::time::Instant;

mod common;

use common::{cpu_seconds, median, peak_rss_mb, photo_and_args, ssim};

use kiln_core::{Config, image_probe::ImageFormat};
use kiln_worker::imaging::{self, Quality};

/// SSIM of each rendered variant against a reference made from the full-size decode.
fn quality_report(data: &[u8], rendition: &imaging::Rendition) -> String {
    let full = image::load_from_memory(data).expect("reference decode");
    let mut report = Vec::new();
    for file in &rendition.files {
        let reference = full
            .resize_exact(
                file.width,
                file.height,
                image::imageops::FilterType::Lanczos3,
            )
            .to_luma8();
        let ours = image::load_from_memory(&file.bytes)
            .expect("variant decodes")
            .to_luma8();
        report.push(format!(
            "{}.{}={:.4}",
            file.name,
            file.format,
            ssim(&reference, &ours)
        ));
    }
    report.join(" ")
}

fn main() {
    let (path, args) = photo_and_args();
    let runs: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(7);
    let threads: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    // The defaults, except the WebP effort when the environment names one (to compare them).
    let config = Config::from_lookup(|var| match var {
        "KILN_WEBP_METHOD" => std::env::var(var).ok(),
        _ => None,
    })
    .expect("default configuration");
    let quality = Quality::of(&config);
    let render = || {
        imaging::render(
            &data,
            ImageFormat::Jpeg,
            &config.variants,
            config.max_pixels,
            quality,
        )
        .expect("renders")
    };

    let warm = render();
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        let rendition = render();
        walls.push(wall.elapsed().as_secs_f64() * 1000.0);
        cpus.push((cpu_seconds() - cpu) * 1000.0);
        std::hint::black_box(rendition);
    }
    let bytes = |format: &str| -> usize {
        warm.files
            .iter()
            .filter(|f| f.format == format)
            .map(|f| f.bytes.len())
            .sum()
    };
    let widths: Vec<String> = config
        .variants
        .iter()
        .map(|v| v.width.to_string())
        .collect();
    println!(
        "kiln kernel: {} ({}x{}) -> widths {} JPEG q{} + WebP q{}",
        path.rsplit('/').next().unwrap_or(&path),
        warm.width,
        warm.height,
        widths.join("/"),
        quality.jpeg,
        quality.webp
    );
    println!(
        "runs={runs} median_wall_ms={:.1} median_cpu_ms={:.1} jpeg_bytes={} webp_bytes={} peak_rss_mb={:.1}",
        median(&mut walls),
        median(&mut cpus),
        bytes("jpeg"),
        bytes("webp"),
        peak_rss_mb()
    );
    if threads > 1 {
        let wall = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..runs {
                        std::hint::black_box(render());
                    }
                });
            }
        });
        let seconds = wall.elapsed().as_secs_f64();
        println!(
            "threads={threads} images={} images_per_s={:.3}",
            threads * runs,
            (threads * runs) as f64 / seconds
        );
    }
    if std::env::var_os("KILN_BENCH_SSIM").is_some() {
        println!(
            "ssim vs full-decode Lanczos3 reference: {}",
            quality_report(&data, &warm)
        );
    }
}
