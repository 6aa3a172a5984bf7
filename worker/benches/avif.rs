//! What AVIF output costs, next to libvips's AVIF save (`bench/avif.sh` runs both).
//!
//! `cargo bench -p kiln-worker --bench avif -- [image] [runs] [peer-dir]` renders the default
//! variants of one photo with and without AVIF, alternating, and prints the median CPU time of
//! each and their difference (what the AVIF variants cost: colour conversion and AV1 encoding),
//! the AVIF bytes, and the SSIM of each AVIF variant's luma against a reference (the whole
//! image decoded and resized straight to the variant's size with Lanczos3). With `peer-dir`
//! (files `<variant>.avif` written by `bench/pyvips_avif.py`), the peer's files are measured
//! against the same references with the same decoder. `KILN_AVIF_QUALITY` and
//! `KILN_AVIF_SPEED` are read as the worker reads them.

use std::time::Instant;

mod common;

use common::{cpu_seconds, median, photo_and_args, ssim};
use image::{DynamicImage, GrayImage, RgbaImage, imageops::FilterType};
use kiln_core::{Config, image_probe::ImageFormat};
use kiln_worker::imaging::{self, Quality};

fn decode_avif_luma(bytes: &[u8]) -> GrayImage {
    let rgb = libavif::decode_rgb(bytes).expect("AVIF decodes");
    let (width, height) = (rgb.width(), rgb.height());
    let mut rgba = RgbaImage::new(width, height);
    for (x, y, pixel) in rgba.enumerate_pixels_mut() {
        let (r, g, b, a) = rgb.pixel(x, y);
        *pixel = image::Rgba([r, g, b, a]);
    }
    DynamicImage::ImageRgba8(rgba).to_luma8()
}

/// `name=ssim` for each file (against a reference of the file's own size), and the mean.
fn ssim_report(full: &DynamicImage, files: &[(String, Vec<u8>)]) -> String {
    let mut parts = Vec::new();
    let mut sum = 0.0;
    for (name, bytes) in files {
        let decoded = decode_avif_luma(bytes);
        let reference = full
            .resize_exact(decoded.width(), decoded.height(), FilterType::Lanczos3)
            .to_luma8();
        let value = ssim(&reference, &decoded);
        sum += value;
        parts.push(format!("{name}={value:.4}"));
    }
    let total: usize = files.iter().map(|f| f.1.len()).sum();
    format!(
        "avif_bytes={total} mean_ssim={:.4} {}",
        sum / files.len().max(1) as f64,
        parts.join(" ")
    )
}

fn main() {
    let (path, args) = photo_and_args();
    let runs: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(5);
    let peer_dir = args.get(1);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let config = Config::from_lookup(|var| match var {
        "KILN_FORMATS" => Some("jpeg,webp,avif".into()),
        "KILN_AVIF_QUALITY" | "KILN_AVIF_SPEED" => std::env::var(var).ok(),
        _ => None,
    })
    .expect("configuration");
    let avif = config.avif.expect("AVIF configured");
    let with = Quality {
        avif: Some(avif),
        ..Quality::of(&config)
    };
    let without = Quality { avif: None, ..with };
    let render = |quality| {
        imaging::render(
            &data,
            ImageFormat::Jpeg,
            &config.variants,
            config.max_pixels,
            quality,
        )
        .expect("renders")
    };
    let measure = |quality| {
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        let rendition = render(quality);
        let spent = (
            (cpu_seconds() - cpu) * 1000.0,
            wall.elapsed().as_secs_f64() * 1000.0,
        );
        std::hint::black_box(rendition);
        spent
    };

    let warm = render(with);
    render(without);
    let (mut cpu_with, mut cpu_without, mut wall_with) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (cpu, wall) = measure(with);
        cpu_with.push(cpu);
        wall_with.push(wall);
        cpu_without.push(measure(without).0);
    }
    let (with_ms, without_ms) = (median(&mut cpu_with), median(&mut cpu_without));
    println!(
        "kiln avif: quality {} speed {}, libaom through libavif, 1 thread per image",
        avif.quality, avif.speed
    );
    println!(
        "runs={runs} median_cpu_ms_with={with_ms:.1} median_cpu_ms_without={without_ms:.1} \
         avif_cpu_ms={:.1} median_wall_ms_with={:.1}",
        with_ms - without_ms,
        median(&mut wall_with)
    );

    let full = image::load_from_memory(&data).expect("reference decode");
    let ours: Vec<_> = warm
        .files
        .iter()
        .filter(|f| f.format == "avif")
        .map(|f| (f.name.clone(), f.bytes.clone()))
        .collect();
    println!("kiln {}", ssim_report(&full, &ours));
    if let Some(dir) = peer_dir {
        let peer: Vec<_> = ours
            .iter()
            .map(|(name, _)| {
                let file = format!("{dir}/{name}.avif");
                let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
                (name.clone(), bytes)
            })
            .collect();
        println!("peer {}", ssim_report(&full, &peer));
    }
}
