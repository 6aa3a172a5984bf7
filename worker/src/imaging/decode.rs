//! Decoding with limits, orientation and normalisation to 8-bit RGB or RGBA.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use kiln_core::image_probe::ImageFormat;

use super::resize::Pixels;

/// Why an image could not be decoded; always permanent (retrying the same bytes cannot help).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes once, within `max_pixels`, upright, as 8-bit sRGB-range RGB (or RGBA when the image
/// has transparency). Animated GIFs yield their first frame.
pub fn decode(data: &[u8], format: ImageFormat, max_pixels: u64) -> Result<Pixels, DecodeError> {
    let fail = |e: image::ImageError| DecodeError(format!("cannot decode image: {e}"));
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
    let mut image = DynamicImage::from_decoder(decoder).map_err(fail)?;
    image.apply_orientation(orientation);
    Ok(Pixels::from_dynamic(image))
}
