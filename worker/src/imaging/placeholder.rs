//! Placeholders: what an app shows while a variant loads, small enough to inline in its own
//! JSON or HTML. A ThumbHash (about 25 bytes, base64; keeps the aspect ratio and alpha), a
//! BlurHash (about 30 characters; the most widely decoded) and the dominant colour.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use super::{geometry::fit_box, resize};

/// A ready media's placeholder, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placeholder {
    /// Base64 of the ThumbHash bytes.
    pub thumbhash: String,
    pub blurhash: String,
    /// `#rrggbb`.
    pub dominant_color: String,
}

/// Computes the placeholder from a small whole-image rendition (the smallest variant).
pub fn compute(small: &resize::Pixels) -> Result<Placeholder, String> {
    // ThumbHash takes at most 100×100; BlurHash is as good from the same pixels.
    let (w, h) = fit_box(small.width(), small.height(), 100, 100);
    let tiny = resize::resize(small, w, h);
    let rgba = to_rgba(&tiny);
    let thumbhash = STANDARD.encode(thumbhash::rgba_to_thumb_hash(w as usize, h as usize, &rgba));
    // Four components along the longer side, three along the shorter: BlurHash's own advice.
    let (x, y) = if w >= h { (4, 3) } else { (3, 4) };
    // BlurHash has no alpha: transparency is shown on white, as the JPEG variants are.
    let blurhash = blurhash::encode(x, y, w, h, &on_white(&rgba))
        .map_err(|e| format!("cannot make a BlurHash: {e}"))?;
    Ok(Placeholder {
        thumbhash,
        blurhash,
        dominant_color: dominant_color(&rgba),
    })
}

fn to_rgba(pixels: &resize::Pixels) -> Vec<u8> {
    if pixels.has_alpha() {
        return pixels.bytes().to_vec();
    }
    pixels
        .bytes()
        .chunks_exact(3)
        .flat_map(|px| [px[0], px[1], px[2], 255])
        .collect()
}

/// RGBA with every pixel made opaque over white.
fn on_white(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|px| {
            let alpha = u16::from(px[3]);
            let blend = |c: u8| ((u16::from(c) * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
            [blend(px[0]), blend(px[1]), blend(px[2]), 255]
        })
        .collect()
}

/// The mean colour of the most common colour cell (16 levels per channel), weighted by
/// opacity: the colour most of the image is, not the muddy average of all of it.
fn dominant_color(rgba: &[u8]) -> String {
    let mut cells = vec![(0u64, [0u64; 3]); 16 * 16 * 16];
    for px in rgba.chunks_exact(4) {
        let weight = u64::from(px[3]);
        let cell =
            usize::from(px[0] >> 4) << 8 | usize::from(px[1] >> 4) << 4 | usize::from(px[2] >> 4);
        let (count, sums) = &mut cells[cell];
        *count += weight;
        for (sum, &channel) in sums.iter_mut().zip(&px[..3]) {
            *sum += u64::from(channel) * weight;
        }
    }
    let (count, sums) = cells
        .iter()
        .max_by_key(|(count, _)| *count)
        .copied()
        .unwrap_or_default();
    if count == 0 {
        return "#000000".to_owned();
    }
    let [r, g, b] = sums.map(|sum| (sum + count / 2) / count);
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use image::{DynamicImage, Rgb, RgbImage};

    use super::*;

    #[test]
    fn a_placeholder_keeps_the_aspect_ratio_and_the_main_colour() {
        // Mostly blue, with a red stripe: blue dominates.
        let image = RgbImage::from_fn(320, 160, |x, _| {
            if x < 40 {
                Rgb([220, 20, 20])
            } else {
                Rgb([20, 40, 200])
            }
        });
        let pixels = resize::Pixels::from_dynamic(DynamicImage::ImageRgb8(image));
        let placeholder = compute(&pixels).expect("placeholder");
        assert_eq!(placeholder.dominant_color, "#1428c8");
        let hash = STANDARD.decode(&placeholder.thumbhash).expect("base64");
        let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).expect("decodes");
        // ThumbHash keeps the ratio only as finely as its component counts (7:4 here).
        assert!((ratio / 2.0 - 1.0).abs() <= 0.15, "{ratio}");
        assert!(blurhash::decode(&placeholder.blurhash, 32, 16, 1.0).is_ok());
    }
}
