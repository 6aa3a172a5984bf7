//! Choosing where a `cover` crop sits: the window over the most interesting part of the image,
//! as libvips's `smartcrop` (attention) does, on a small copy of the image.
//!
//! Interest is edge energy (a Laplacian of the luma: detail, outlines) plus saturation (a
//! coloured subject against a dull background) plus a bonus for skin tones; the window whose
//! summed interest is highest wins, ties going to the one nearest the centre. A plain image
//! therefore gets the centre crop.

use super::resize::Pixels;

/// Where the crop's top-left corner goes, as fractions of the image's width and height, for a
/// window of `crop_w`×`crop_h` (fractions of the image, each in (0, 1]).
pub fn crop_origin(small: &Pixels, crop_w: f64, crop_h: f64) -> (f64, f64) {
    let (w, h) = (small.width() as usize, small.height() as usize);
    if w < 3 || h < 3 {
        return centred(crop_w, crop_h);
    }
    let interest = interest_map(small);
    // Summed-area table: any window's sum in four reads.
    let mut sums = vec![0f64; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0f64;
        for x in 0..w {
            row += interest[y * w + x];
            sums[(y + 1) * (w + 1) + x + 1] = sums[y * (w + 1) + x + 1] + row;
        }
    }
    let win_w = ((crop_w * w as f64).round() as usize).clamp(1, w);
    let win_h = ((crop_h * h as f64).round() as usize).clamp(1, h);
    let (free_x, free_y) = (w - win_w, h - win_h);
    let mut best = (f64::MIN, f64::MAX, 0usize, 0usize);
    for y in 0..=free_y {
        for x in 0..=free_x {
            let sum = sums[(y + win_h) * (w + 1) + x + win_w]
                - sums[y * (w + 1) + x + win_w]
                - sums[(y + win_h) * (w + 1) + x]
                + sums[y * (w + 1) + x];
            let off_centre =
                (x as f64 - free_x as f64 / 2.0).abs() + (y as f64 - free_y as f64 / 2.0).abs();
            // Sums within a rounding error are ties.
            let better = sum > best.0 + 1e-6 || (sum >= best.0 - 1e-6 && off_centre < best.1);
            if better {
                best = (sum.max(best.0), off_centre, x, y);
            }
        }
    }
    // Within the image whatever the rounding of the window above.
    (
        (best.2 as f64 / w as f64).clamp(0.0, (1.0 - crop_w).max(0.0)),
        (best.3 as f64 / h as f64).clamp(0.0, (1.0 - crop_h).max(0.0)),
    )
}

fn centred(crop_w: f64, crop_h: f64) -> (f64, f64) {
    ((1.0 - crop_w) / 2.0, (1.0 - crop_h) / 2.0)
}

/// Per-pixel interest of an 8-bit RGB or RGBA image.
fn interest_map(small: &Pixels) -> Vec<f64> {
    let (w, h) = (small.width() as usize, small.height() as usize);
    let channels = if small.has_alpha() { 4 } else { 3 };
    let bytes = small.bytes();
    let pixel = |x: usize, y: usize| {
        let i = (y * w + x) * channels;
        (
            f64::from(bytes[i]),
            f64::from(bytes[i + 1]),
            f64::from(bytes[i + 2]),
        )
    };
    let luma: Vec<f64> = (0..w * h)
        .map(|i| {
            let (r, g, b) = pixel(i % w, i / w);
            0.299 * r + 0.587 * g + 0.114 * b
        })
        .collect();
    let mut interest = vec![0f64; w * h];
    for y in 0..h {
        for x in 0..w {
            let at = |dx: isize, dy: isize| {
                let nx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
                let ny = (y as isize + dy).clamp(0, h as isize - 1) as usize;
                luma[ny * w + nx]
            };
            let edge = (4.0 * at(0, 0) - at(-1, 0) - at(1, 0) - at(0, -1) - at(0, 1)).abs();
            let (r, g, b) = pixel(x, y);
            let saturation = r.max(g).max(b) - r.min(g).min(b);
            interest[y * w + x] = edge + 0.5 * saturation + skin_bonus(r, g, b);
        }
    }
    interest
}

/// A bonus for colours near skin tones (the rule of Kovac et al. for daylight RGB).
fn skin_bonus(r: f64, g: f64, b: f64) -> f64 {
    let skin = r > 95.0
        && g > 40.0
        && b > 20.0
        && r.max(g).max(b) - r.min(g).min(b) > 15.0
        && (r - g).abs() > 15.0
        && r > g
        && r > b;
    if skin { 40.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use image::{DynamicImage, Rgb, RgbImage};

    use super::*;

    fn picture(w: u32, h: u32, paint: impl Fn(u32, u32) -> [u8; 3]) -> Pixels {
        let image = RgbImage::from_fn(w, h, |x, y| Rgb(paint(x, y)));
        Pixels::from_dynamic(DynamicImage::ImageRgb8(image))
    }

    #[test]
    fn a_plain_image_is_cropped_in_the_centre() {
        let plain = picture(100, 50, |_, _| [90, 90, 90]);
        let (x, y) = crop_origin(&plain, 0.5, 1.0);
        assert!((x - 0.25).abs() < 0.02 && y == 0.0, "{x} {y}");
    }

    #[test]
    fn the_window_follows_an_off_centre_subject() {
        // A bright disc near the right edge of a dark, plain frame.
        let scene = picture(120, 60, |x, y| {
            let (dx, dy) = (x as f64 - 100.0, y as f64 - 30.0);
            if dx * dx + dy * dy < 100.0 {
                [250, 240, 60]
            } else {
                [30, 30, 40]
            }
        });
        let (x, _) = crop_origin(&scene, 0.5, 1.0);
        let (left, right) = (x * 120.0, (x + 0.5) * 120.0);
        assert!(left <= 90.0 && right >= 110.0, "window {left}..{right}");
    }
}
