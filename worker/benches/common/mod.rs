//! Measurements both image benchmarks take: CPU time, peak memory, SSIM, medians; and their
//! arguments.
#![allow(dead_code)] // each bench uses its own subset

/// CPU time this process has used so far, in seconds (utime + stime from /proc/self/stat).
pub fn cpu_seconds() -> f64 {
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
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Mean SSIM of two same-sized luma images over 8x8 windows (the usual constants for 8-bit).
pub fn ssim(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
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

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The bench's own arguments (`cargo bench` adds `--bench`): the photo (the shared 16 MP one by
/// default) and the rest.
pub fn photo_and_args() -> (String, Vec<String>) {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let path = if args.is_empty() {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/bench-images/photo-16mp.jpg"
        )
        .to_owned()
    } else {
        args.remove(0)
    };
    (path, args)
}
