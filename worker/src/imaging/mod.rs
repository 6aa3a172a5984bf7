//! Turning one uploaded image into its variants, all on the calling (blocking) thread.
//!
//! The pipeline decodes once, applies EXIF orientation, brings the pixels to 8-bit sRGB (RGBA
//! when the image has transparency),
//! makes the largest variant from the decoded image and each smaller one from the smallest
//! already-made image at least twice its width (cheaper, and Lanczos3 keeps the quality),
//! crops `cover` variants around the most interesting region (`smartcrop`), then encodes each
//! as JPEG, lossy WebP and (when configured) AVIF. Re-encoding drops all metadata, GPS included. The placeholder comes
//! from the smallest whole-image variant.

mod color;
mod decode;
mod encode;
pub mod geometry;
pub mod placeholder;
mod resize;
mod smartcrop;
#[cfg(test)]
mod tests;

pub use decode::{DecodeError, Decoded, decode, decode_scaled};
pub use placeholder::Placeholder;

use geometry::{Geometry, fit_height};
use kiln_core::{
    config::{AvifOutput, VariantSpec},
    image_probe::ImageFormat,
};

/// Encoder settings.
#[derive(Debug, Clone, Copy)]
pub struct Quality {
    pub jpeg: u8,
    pub webp: u8,
    /// libwebp's effort, 0 (fastest) to 6 (`KILN_WEBP_METHOD`).
    pub webp_method: u8,
    /// AVIF too, when configured (`KILN_FORMATS`).
    pub avif: Option<AvifOutput>,
}

impl Quality {
    /// The settings `config` names.
    pub fn of(config: &kiln_core::Config) -> Self {
        Self {
            jpeg: config.jpeg_quality,
            webp: config.webp_quality,
            webp_method: config.webp_method,
            avif: config.avif,
        }
    }
}

/// One encoded file.
#[derive(Debug)]
pub struct Rendered {
    pub name: String,
    /// `jpeg`, `webp` or `avif`, as stored in `media_variants.format`.
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
    /// What an app shows while a variant loads.
    pub placeholder: Placeholder,
}

/// Decodes `data` and renders every variant in `specs` in every configured format, and the placeholder
/// from the smallest whole-image variant.
pub fn render(
    data: &[u8],
    format: ImageFormat,
    specs: &[VariantSpec],
    max_pixels: u64,
    quality: Quality,
) -> Result<Rendition, DecodeError> {
    let needed = |width: u32, height: u32| {
        specs
            .iter()
            .map(|spec| Geometry::of(spec, width, height).source_width(width))
            .max()
            .unwrap_or(width)
    };
    let Decoded {
        pixels: image,
        width,
        height,
    } = decode_scaled(data, format, max_pixels, Some(&needed))?;
    // Whole-image renditions made so far: cheaper sources for smaller variants.
    let mut made: Vec<resize::Pixels> = Vec::with_capacity(specs.len());
    let mut files = Vec::with_capacity(specs.len() * 2);
    // Largest source first, so each smaller variant can be made from a bigger one already
    // resized (a 2048-wide image is a far cheaper source for 480 than the 16 MP original).
    let mut order: Vec<(&VariantSpec, Geometry)> = specs
        .iter()
        .map(|spec| (spec, Geometry::of(spec, width, height)))
        .collect();
    order.sort_by_key(|(_, geometry)| std::cmp::Reverse(geometry.source_width(width)));
    let mut crops = Crops::default();
    for (spec, geometry) in order {
        let started = std::time::Instant::now();
        let pixels = match geometry.crop {
            None => {
                // Stay within what WebP can store (a tall screenshot kept at its full height
                // would not fit).
                let (w, h) =
                    fit_height(geometry.width, geometry.height, encode::WEBP_MAX_DIMENSION);
                let source = smallest_source(&made, &image, 2 * w);
                let pixels = resize::resize(source, w, h);
                made.push(pixels.clone_pixels());
                pixels
            }
            Some((crop_w, crop_h)) => {
                let needed = geometry.source_width(width).saturating_mul(2).min(width);
                let source = smallest_source(&made, &image, needed);
                let (left, top) = crops.origin(&image, crop_w, crop_h, width, height);
                let region = region_in(source, (left, top), (crop_w, crop_h), (width, height));
                resize::resize_region(source, region, geometry.width, geometry.height)
            }
        };
        let (w, h) = (pixels.width(), pixels.height());
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
            bytes: encode::webp(&pixels, quality.webp, quality.webp_method).map_err(DecodeError)?,
        });
        if let Some(avif) = quality.avif
            && let Some(bytes) =
                encode::avif(&pixels, avif.quality, avif.speed).map_err(DecodeError)?
        {
            files.push(Rendered {
                name: spec.name.clone(),
                format: "avif",
                width: w,
                height: h,
                bytes,
            });
        }
        // Resize plus every encode: what one variant costs. Variant names come from config.
        metrics::histogram!("kiln_resize_seconds", "variant" => spec.name.clone())
            .record(started.elapsed().as_secs_f64());
    }
    let smallest = made.iter().min_by_key(|p| p.width()).unwrap_or(&image);
    let placeholder = placeholder::compute(smallest).map_err(DecodeError)?;
    Ok(Rendition {
        width,
        height,
        files,
        placeholder,
    })
}

/// Computes a placeholder from an encoded image (a stored variant), for media made before
/// placeholders existed.
pub fn placeholder_of(data: &[u8], format: ImageFormat) -> Result<Placeholder, DecodeError> {
    let pixels = decode(data, format, 100_000_000)?;
    placeholder::compute(&pixels).map_err(DecodeError)
}

/// The crop region in `source`'s pixels for a crop of `crop` at `origin` (fractions) of the
/// full-size image `full`. Each axis is scaled on its own (a scaled source's width and height
/// are rounded separately) and the region is kept inside the source.
fn region_in(
    source: &resize::Pixels,
    origin: (f64, f64),
    crop: (u32, u32),
    full: (u32, u32),
) -> (f64, f64, f64, f64) {
    let axis = |origin: f64, crop: u32, full: u32, have: u32| {
        let have = f64::from(have);
        let size = (f64::from(crop) * have / f64::from(full)).clamp(1.0, have);
        let start = (origin * have).clamp(0.0, have - size);
        (start, size)
    };
    let (left, width) = axis(origin.0, crop.0, full.0, source.width());
    let (top, height) = axis(origin.1, crop.1, full.1, source.height());
    (left, top, width, height)
}

/// The smallest whole-image rendition at least `min_width` wide, or the decoded image.
fn smallest_source<'a>(
    made: &'a [resize::Pixels],
    image: &'a resize::Pixels,
    min_width: u32,
) -> &'a resize::Pixels {
    made.iter()
        .filter(|p| p.width() >= min_width)
        .min_by_key(|p| p.width())
        .unwrap_or(image)
}

/// Where `cover` crops sit, worked out once per image on a small copy of it.
#[derive(Default)]
struct Crops {
    small: Option<resize::Pixels>,
}

impl Crops {
    /// The crop's top-left corner as fractions of the image.
    fn origin(
        &mut self,
        image: &resize::Pixels,
        crop_w: u32,
        crop_h: u32,
        width: u32,
        height: u32,
    ) -> (f64, f64) {
        let small = self.small.get_or_insert_with(|| {
            let (w, h) = geometry::fit_box(image.width(), image.height(), 160, 160);
            resize::resize(image, w, h)
        });
        smartcrop::crop_origin(
            small,
            f64::from(crop_w) / f64::from(width),
            f64::from(crop_h) / f64::from(height),
        )
    }
}
