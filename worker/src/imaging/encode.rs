//! Encoding variants. Only pixels are written, so no EXIF, GPS or other metadata leaves Kiln.

use super::resize::Pixels;

/// Baseline JPEG at `quality` (libjpeg-turbo, SIMD), chroma subsampled 4:2:0 below quality 90
/// as libvips does; transparency is flattened onto white first.
pub fn jpeg(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, String> {
    let rgb;
    let data = if pixels.has_alpha() {
        rgb = flatten_on_white(pixels.bytes());
        &rgb[..]
    } else {
        pixels.bytes()
    };
    let fail = |e: turbojpeg::Error| format!("cannot encode JPEG: {e}");
    let mut compressor = turbojpeg::Compressor::new().map_err(fail)?;
    compressor.set_quality(i32::from(quality)).map_err(fail)?;
    compressor
        .set_subsamp(if quality < 90 {
            turbojpeg::Subsamp::Sub2x2
        } else {
            turbojpeg::Subsamp::None
        })
        .map_err(fail)?;
    let width = pixels.width() as usize;
    compressor
        .compress_to_vec(turbojpeg::Image {
            pixels: data,
            width,
            pitch: 3 * width,
            height: pixels.height() as usize,
            format: turbojpeg::PixelFormat::RGB,
        })
        .map_err(fail)
}

/// The largest width or height WebP can store.
pub const WEBP_MAX_DIMENSION: u32 = 16_383;

/// Lossy WebP at `quality` and libwebp's `method` (effort), keeping transparency.
pub fn webp(pixels: &Pixels, quality: u8, method: u8) -> Result<Vec<u8>, String> {
    let encoder = if pixels.has_alpha() {
        webp::Encoder::from_rgba(pixels.bytes(), pixels.width(), pixels.height())
    } else {
        webp::Encoder::from_rgb(pixels.bytes(), pixels.width(), pixels.height())
    };
    let mut config =
        webp::WebPConfig::new().map_err(|()| "cannot configure the WebP encoder".to_owned())?;
    config.quality = f32::from(quality);
    config.method = i32::from(method);
    config.alpha_compression = 1;
    encoder
        .encode_advanced(&config)
        .map(|memory| memory.to_vec())
        .map_err(|e| format!("cannot encode WebP: {e:?}"))
}

/// AVIF (AV1 by libaom through libavif) at libavif's `quality` (0–100) and libaom's `speed`,
/// 8-bit 4:2:0 as libvips writes below quality 90, on one thread: the worker's CPU pool runs
/// images side by side. `None` for an image with transparency: the safe wrapper has no alpha
/// plane, and a flattened AVIF would be preferred by negotiation over the WebP that keeps it.
pub fn avif(pixels: &Pixels, quality: u8, speed: u8) -> Result<Option<Vec<u8>>, String> {
    if pixels.has_alpha() {
        return Ok(None);
    }
    let fail = |e: libavif::Error| format!("cannot encode AVIF: {e}");
    let rgb =
        libavif::RgbPixels::new(pixels.width(), pixels.height(), pixels.bytes()).map_err(fail)?;
    let image = rgb.to_image(libavif::YuvFormat::Yuv420);
    let mut encoder = libavif::Encoder::new();
    encoder
        .set_quality(quality)
        .set_speed(speed)
        .set_max_threads(1);
    let data = encoder.encode(&image).map_err(fail)?;
    Ok(Some(data.to_vec()))
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
