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

use kiln_core::{Config, image_probe::ImageFormat};
use kiln_worker::imaging::{self, Quality};

/// CPU time this process has used so far, in seconds (utime + stime from /proc/self/stat).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// Peak resident set size in MB (VmHWM).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Mean SSIM of two same-sized luma images over 8x8 windows (the usual constants for 8-bit).
fn ssim(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
    const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);
    let (w, h) = (a.width().min(b.width()), a.height().min(b.height()));
    let (mut total, mut windows) = (0.0, 0u32);
    for y in (0..h.saturating_sub(7)).step_by(8) {
        for x in (0..w.saturating_sub(7)).step_by(8) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..8 {
                for dx in 0..8 {
                    let pa = f64::from(a.get_pixel(x + dx, y + dy)[0]);
                    let pb = f64::from(b.get_pixel(x + dx, y + dy)[0]);
                    (sa, sb) = (sa + pa, sb + pb);
                    (saa, sbb, sab) = (saa + pa * pa, sbb + pb * pb, sab + pa * pb);
                }
            }
            let n = 64.0;
            let (ma, mb) = (sa / n, sb / n);
            let (va, vb, cov) = (saa / n - ma * ma, sbb / n - mb * mb, sab / n - ma * mb);
            total += ((2.0 * ma * mb + C1) * (2.0 * cov + C2))
                / ((ma * ma + mb * mb + C1) * (va + vb + C2));
            windows += 1;
        }
    }
    total / f64::from(windows.max(1))
}

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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let path = args.first().cloned().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/bench-images/photo-16mp.jpg"
        )
        .into()
    });
    let runs: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(7);
    let threads: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let config = Config::from_lookup(|_| None).expect("default configuration");
    let quality = Quality {
        jpeg: config.jpeg_quality,
        webp: config.webp_quality,
    };
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
