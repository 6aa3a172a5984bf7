//! Decoding with limits, orientation and normalisation to 8-bit RGB or RGBA.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use kiln_core::image_probe::ImageFormat;

use super::resize::Pixels;

/// Why an image could not be decoded; always permanent (retrying the same bytes cannot help).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes once, within `max_pixels`, upright, as 8-bit sRGB (RGBA when the image has
/// transparency). Animated GIFs yield their first frame.
pub fn decode(data: &[u8], format: ImageFormat, max_pixels: u64) -> Result<Pixels, DecodeError> {
    let fail = |e: image::ImageError| DecodeError(format!("cannot decode image: {e}"));
    if format == ImageFormat::Jpeg && !jpeg_is_complete(data) {
        // The JPEG decoder is lenient and paints missing data grey; a truncated upload must
        // fail instead of becoming a half-grey "ready" image.
        return Err(DecodeError(
            "cannot decode image: the JPEG is truncated (no end-of-image marker after its last scan)"
                .into(),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(data), format.to_image_format());
    let mut limits = Limits::default();
    // RGBA16 is the largest buffer a decoder may need; allow that much for the pixel limit.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 * 1024 * 1024));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(fail)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(DecodeError(format!(
            "{w}x{h} exceeds the limit of {max_pixels} pixels"
        )));
    }
    let orientation = decoder.orientation().map_err(fail)?;
    // A broken profile is not worth failing the job over: the pixels are still good.
    let icc = decoder.icc_profile().ok().flatten();
    let mut image = DynamicImage::from_decoder(decoder).map_err(fail)?;
    image.apply_orientation(orientation);
    let mut pixels = Pixels::from_dynamic(image);
    if let Some(icc) = icc {
        super::color::to_srgb(&mut pixels, &icc);
    }
    Ok(pixels)
}

/// Whether an end-of-image marker (FF D9) follows the last start-of-scan (FF DA). Inside
/// entropy-coded data every FF byte is stuffed (FF 00), so both patterns can only be markers;
/// an embedded EXIF thumbnail's own EOI comes before the main image's scans and does not count.
fn jpeg_is_complete(data: &[u8]) -> bool {
    let Some(last_scan) = data.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    data[last_scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_pixel(64, 48, image::Rgb([200, 10, 10]))
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .expect("encode");
        out
    }

    #[test]
    fn a_complete_jpeg_decodes_and_a_truncated_one_is_refused_with_a_reason() {
        let whole = jpeg();
        let pixels = decode(&whole, ImageFormat::Jpeg, 1_000_000).expect("decodes");
        assert_eq!((pixels.width(), pixels.height()), (64, 48));
        let error = decode(&whole[..whole.len() - 40], ImageFormat::Jpeg, 1_000_000)
            .err()
            .expect("truncated");
        assert!(error.0.contains("truncated"), "{error}");
    }

    #[test]
    fn images_over_the_pixel_limit_are_refused_before_decoding() {
        let error = decode(&jpeg(), ImageFormat::Jpeg, 100)
            .err()
            .expect("too big");
        assert!(error.0.contains("exceeds"), "{error}");
    }
}
