//! Encoding variants. Only pixels are written, so no EXIF, GPS or other metadata leaves Kiln.

use image::{ExtendedColorType, ImageEncoder, codecs::jpeg::JpegEncoder};

use super::resize::Pixels;

/// Baseline JPEG at `quality`; transparency is flattened onto white first.
pub fn jpeg(pixels: &Pixels, quality: u8) -> Vec<u8> {
    let rgb;
    let data = if pixels.has_alpha() {
        rgb = flatten_on_white(pixels.bytes());
        &rgb[..]
    } else {
        pixels.bytes()
    };
    let mut out = Vec::with_capacity(data.len() / 8);
    JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(
            data,
            pixels.width(),
            pixels.height(),
            ExtendedColorType::Rgb8,
        )
        .expect("encoding to memory cannot fail for valid dimensions");
    out
}

/// The largest width or height WebP can store.
pub const WEBP_MAX_DIMENSION: u32 = 16_383;

/// Lossy WebP at `quality`, keeping transparency.
pub fn webp(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, String> {
    let encoder = if pixels.has_alpha() {
        webp::Encoder::from_rgba(pixels.bytes(), pixels.width(), pixels.height())
    } else {
        webp::Encoder::from_rgb(pixels.bytes(), pixels.width(), pixels.height())
    };
    encoder
        .encode_simple(false, f32::from(quality))
        .map(|memory| memory.to_vec())
        .map_err(|e| format!("cannot encode WebP: {e:?}"))
}

fn flatten_on_white(rgba: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let alpha = u16::from(px[3]);
        for &channel in &px[..3] {
            let blended = (u16::from(channel) * alpha + 255 * (255 - alpha) + 127) / 255;
            rgb.push(blended as u8);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::flatten_on_white;

    #[test]
    fn transparent_pixels_become_white_and_opaque_ones_keep_their_colour() {
        assert_eq!(flatten_on_white(&[10, 20, 30, 0]), [255, 255, 255]);
        assert_eq!(flatten_on_white(&[10, 20, 30, 255]), [10, 20, 30]);
    }
}
