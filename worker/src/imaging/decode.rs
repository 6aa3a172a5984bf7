//! Decoding with limits, orientation and normalisation to 8-bit RGB or RGBA.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, metadata::Orientation};
use kiln_core::image_probe::ImageFormat;

use super::resize::Pixels;

/// Why an image could not be decoded; always permanent (retrying the same bytes cannot help).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// An upright decoded image, possibly smaller than the original (see [`decode_scaled`]).
pub struct Decoded {
    pub pixels: Pixels,
    /// The original's upright dimensions.
    pub width: u32,
    pub height: u32,
}

/// Scans a JPEG may have. A progressive JPEG from a camera or an encoder has about ten (libjpeg's
/// most detailed script has a dozen per component); hundreds only come from a file made to
/// make decoders loop.
pub const MAX_JPEG_SCANS: usize = 256;

/// Decodes once, within `max_pixels`, upright, as 8-bit sRGB (RGBA when the image has
/// transparency). Animated GIFs yield their first frame.
pub fn decode(data: &[u8], format: ImageFormat, max_pixels: u64) -> Result<Pixels, DecodeError> {
    decode_scaled(data, format, max_pixels, None).map(|d| d.pixels)
}

/// Like [`decode`], but a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose upright
/// width still covers `target_width` (of the upright full-size width and height): libjpeg-turbo then skips most of the inverse DCT and the
/// resize starts from far fewer pixels. Other formats, and JPEGs libjpeg-turbo cannot turn into
/// RGB (CMYK), are decoded whole.
pub fn decode_scaled(
    data: &[u8],
    format: ImageFormat,
    max_pixels: u64,
    target_width: Option<&dyn Fn(u32, u32) -> u32>,
) -> Result<Decoded, DecodeError> {
    let fail = |e: image::ImageError| DecodeError(format!("cannot decode image: {e}"));
    if format == ImageFormat::Jpeg {
        match jpeg_scans(data) {
            // The JPEG decoder is lenient and paints missing data grey; a truncated upload must
            // fail instead of becoming a half-grey "ready" image.
            None => {
                return Err(DecodeError(
                    "cannot decode image: the JPEG is truncated (no end-of-image marker after its last scan)"
                        .into(),
                ));
            }
            // Each scan of a progressive JPEG makes the decoder pass over the whole image
            // again: thousands of tiny scans hold a CPU for minutes (a decompression bomb).
            Some(scans) if scans > MAX_JPEG_SCANS => {
                return Err(DecodeError(format!(
                    "cannot decode image: the JPEG has {scans} scans, more than the \
                     {MAX_JPEG_SCANS} any real image needs"
                )));
            }
            Some(_) => {}
        }
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
    let swaps_axes = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (width, height) = if swaps_axes { (h, w) } else { (w, h) };
    let scaled = match (format, target_width) {
        (ImageFormat::Jpeg, Some(target)) => jpeg_scaled(data, width, target(width, height))?,
        _ => None,
    };
    let mut image = match scaled {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder).map_err(fail)?,
    };
    image.apply_orientation(orientation);
    let mut pixels = Pixels::from_dynamic(image);
    if let Some(icc) = icc {
        super::color::to_srgb(&mut pixels, &icc);
    }
    Ok(Decoded {
        pixels,
        width,
        height,
    })
}

/// Decodes a JPEG with libjpeg-turbo at the smallest scale whose upright width (`upright_width`
/// at full scale) still covers `target`; `None` when whole-image decoding is needed instead.
fn jpeg_scaled(
    data: &[u8],
    upright_width: u32,
    target: u32,
) -> Result<Option<DynamicImage>, DecodeError> {
    let fail = |e: turbojpeg::Error| DecodeError(format!("cannot decode image: {e}"));
    let mut decompressor = turbojpeg::Decompressor::new().map_err(fail)?;
    // Checked before decoding already; libjpeg-turbo's own limit is a second guard.
    decompressor
        .set_scan_limit(MAX_JPEG_SCANS as u32)
        .map_err(fail)?;
    let header = decompressor.read_header(data).map_err(fail)?;
    let colorspace_ok = matches!(
        header.colorspace,
        turbojpeg::Colorspace::YCbCr | turbojpeg::Colorspace::Gray | turbojpeg::Colorspace::RGB
    );
    if !colorspace_ok || header.is_lossless {
        return Ok(None);
    }
    let target = target.min(upright_width).max(1);
    // libjpeg-turbo rounds scaled sizes up: ceil(width / denom).
    let denom = [8u32, 4, 2]
        .into_iter()
        .find(|d| upright_width.div_ceil(*d) >= target)
        .unwrap_or(1);
    let scale = turbojpeg::ScalingFactor::new(1, denom as usize);
    decompressor.set_scaling_factor(scale).map_err(fail)?;
    let scaled = header.scaled(scale);
    let mut pixels = vec![0u8; 3 * scaled.width * scaled.height];
    decompressor
        .decompress(
            data,
            turbojpeg::Image {
                pixels: &mut pixels[..],
                width: scaled.width,
                pitch: 3 * scaled.width,
                height: scaled.height,
                format: turbojpeg::PixelFormat::RGB,
            },
        )
        .map_err(fail)?;
    let image = image::RgbImage::from_raw(scaled.width as u32, scaled.height as u32, pixels)
        .ok_or_else(|| DecodeError("cannot decode image: bad scaled size".into()))?;
    Ok(Some(DynamicImage::ImageRgb8(image)))
}

/// Whether the primary image runs to its end-of-image marker, and through how many scans.
/// Walks the marker segments from the start (skipping each by its length, so an EXIF thumbnail inside APP1 is passed over) and
/// through each scan's entropy-coded data (where FF 00 is a stuffed byte and FF D0–D7 are
/// restart markers), and stops at the first EOI: data appended after it, such as the video of
/// a "motion photo", is never looked at.
/// Returns how many scans it has when it is complete, `None` when it is not.
fn jpeg_scans(data: &[u8]) -> Option<usize> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut scans = 0;
    let segment_length = |at: usize| -> Option<usize> {
        let bytes = data.get(at..at + 2)?;
        Some(usize::from(u16::from_be_bytes([bytes[0], bytes[1]])))
    };
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of FF fill bytes.
        if data.get(i) != Some(&0xFF) {
            return None;
        }
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let &marker = data.get(i)?;
        i += 1;
        match marker {
            0xD9 => return Some(scans),
            0x01 | 0xD0..=0xD7 => {}
            0xDA => {
                scans += 1;
                i += segment_length(i)?;
                // Entropy-coded data runs to the next marker that is not a stuffed byte or RST.
                loop {
                    match (data.get(i), data.get(i + 1)) {
                        (Some(0xFF), Some(0x00 | 0xD0..=0xD7)) => i += 2,
                        (Some(0xFF), Some(_)) => break,
                        (Some(_), _) => i += 1,
                        (None, _) => return None,
                    }
                }
            }
            _ => match segment_length(i) {
                Some(length) if length >= 2 => i += length,
                _ => return None,
            },
        }
    }
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
    fn data_appended_after_the_end_of_image_is_ignored() {
        // A "motion photo": a video (here bytes full of FF DA / FF D8 look-alikes) after EOI.
        let mut motion = jpeg();
        for _ in 0..100 {
            motion.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x04, 0x12, 0xFF, 0xD8, 0x42]);
        }
        assert_eq!(jpeg_scans(&motion), Some(1));
        assert!(decode(&motion, ImageFormat::Jpeg, 1_000_000).is_ok());
    }

    #[test]
    fn a_jpeg_with_thousands_of_scans_is_refused_before_decoding() {
        // The one scan (SOS to EOI) of a baseline JPEG, repeated: the structure of a
        // progressive-JPEG decompression bomb.
        let plain = jpeg();
        let sos = plain
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .expect("a scan");
        let scan = &plain[sos..plain.len() - 2];
        let mut bomb = plain[..sos].to_vec();
        for _ in 0..3000 {
            bomb.extend_from_slice(scan);
        }
        bomb.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(jpeg_scans(&bomb), Some(3000));
        let error = decode(&bomb, ImageFormat::Jpeg, 1_000_000)
            .err()
            .expect("refused");
        assert!(error.0.contains("3000 scans"), "{error}");
    }

    #[test]
    fn a_jpeg_is_decoded_at_the_smallest_scale_that_covers_the_target() {
        let mut big = Vec::new();
        image::RgbImage::from_pixel(1000, 600, image::Rgb([10, 200, 10]))
            .write_to(&mut Cursor::new(&mut big), image::ImageFormat::Jpeg)
            .expect("encode");
        let decoded =
            decode_scaled(&big, ImageFormat::Jpeg, 10_000_000, Some(&|_, _| 240)).expect("ok");
        // 1000 / 4 = 250 covers 240; 1000 / 8 = 125 would not.
        assert_eq!(
            (decoded.pixels.width(), decoded.pixels.height()),
            (250, 150)
        );
        assert_eq!(
            (decoded.width, decoded.height),
            (1000, 600),
            "original size kept"
        );
        let whole =
            decode_scaled(&big, ImageFormat::Jpeg, 10_000_000, Some(&|_, _| 2000)).expect("ok");
        assert_eq!(whole.pixels.width(), 1000, "never below the target");
        let centre = &whole.pixels.bytes()[(300 * 1000 + 500) * 3..][..3];
        assert!(centre[1] > 180 && centre[0] < 40, "{centre:?}");
    }

    #[test]
    fn images_over_the_pixel_limit_are_refused_before_decoding() {
        let error = decode(&jpeg(), ImageFormat::Jpeg, 100)
            .err()
            .expect("too big");
        assert!(error.0.contains("exceeds"), "{error}");
    }
}
