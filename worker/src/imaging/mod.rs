//! Turning one uploaded image into its variants, all on the calling (blocking) thread.
//!
//! The pipeline decodes once, applies EXIF orientation, brings the pixels to 8-bit sRGB (RGBA
//! when the image has transparency),
//! makes the largest variant from the decoded image and each smaller one from the smallest
//! already-made image at least twice its width (cheaper, and Lanczos3 keeps the quality),
//! then encodes each as JPEG and lossy WebP. Re-encoding drops all metadata, GPS included.

mod color;
mod decode;
mod encode;
mod resize;
#[cfg(test)]
mod tests;

pub use decode::{DecodeError, Decoded, decode, decode_scaled};

use kiln_core::{config::VariantSpec, image_probe::ImageFormat};

/// Encoder settings.
#[derive(Debug, Clone, Copy)]
pub struct Quality {
    pub jpeg: u8,
    pub webp: u8,
}

/// One encoded file.
#[derive(Debug)]
pub struct Rendered {
    pub name: String,
    /// `jpeg` or `webp`, as stored in `media_variants.format`.
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// The outcome of processing one image.
#[derive(Debug)]
pub struct Rendition {
    /// Upright dimensions of the original (after EXIF rotation).
    pub width: u32,
    pub height: u32,
    pub files: Vec<Rendered>,
}

/// Decodes `data` and renders every variant in `specs` (largest first) in both formats.
pub fn render(
    data: &[u8],
    format: ImageFormat,
    specs: &[VariantSpec],
    max_pixels: u64,
    quality: Quality,
) -> Result<Rendition, DecodeError> {
    let widest = specs.iter().map(|s| s.width).max();
    let Decoded {
        pixels: image,
        width,
        height,
    } = decode_scaled(data, format, max_pixels, widest)?;
    let mut made: Vec<resize::Pixels> = Vec::with_capacity(specs.len());
    let mut files = Vec::with_capacity(specs.len() * 2);
    // Largest first, so each smaller variant can be made from a bigger one already resized
    // (a 2048-wide image is a far cheaper source for 480 than the 16 MP original).
    let mut order: Vec<&VariantSpec> = specs.iter().collect();
    order.sort_by_key(|spec| std::cmp::Reverse(spec.width));
    for spec in order {
        // Never upscale; and stay within what WebP can store (a tall screenshot kept at its
        // full height would not fit).
        let (w, h) = resize::fit_width(width, height, spec.width);
        let (w, h) = resize::fit_height(w, h, encode::WEBP_MAX_DIMENSION);
        let source = made
            .iter()
            .filter(|p| p.width() >= w.saturating_mul(2))
            .min_by_key(|p| p.width())
            .unwrap_or(&image);
        let started = std::time::Instant::now();
        let pixels = resize::resize(source, w, h);
        files.push(Rendered {
            name: spec.name.clone(),
            format: "jpeg",
            width: w,
            height: h,
            bytes: encode::jpeg(&pixels, quality.jpeg).map_err(DecodeError)?,
        });
        files.push(Rendered {
            name: spec.name.clone(),
            format: "webp",
            width: w,
            height: h,
            bytes: encode::webp(&pixels, quality.webp).map_err(DecodeError)?,
        });
        // Resize plus both encodes: what one variant costs. Variant names come from config.
        metrics::histogram!("kiln_resize_seconds", "variant" => spec.name.clone())
            .record(started.elapsed().as_secs_f64());
        made.push(pixels);
    }
    Ok(Rendition {
        width,
        height,
        files,
    })
}
