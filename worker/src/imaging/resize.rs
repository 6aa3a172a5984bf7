//! Resizing with `fast_image_resize` (SIMD Lanczos3), on 8-bit RGB or RGBA buffers.

use fast_image_resize::{PixelType, ResizeOptions, Resizer, images::Image};
use image::DynamicImage;

/// An 8-bit image, RGB or RGBA, in the layout fast_image_resize and the encoders share.
pub struct Pixels {
    image: Image<'static>,
}

impl Pixels {
    /// Normalises any decoded image: 16-bit, grayscale and palette inputs become 8-bit RGB;
    /// images with an alpha channel become RGBA (flattened later, for JPEG only).
    pub fn from_dynamic(image: DynamicImage) -> Self {
        let (width, height) = (image.width(), image.height());
        let (buffer, pixel_type) = if image.color().has_alpha() {
            (image.into_rgba8().into_raw(), PixelType::U8x4)
        } else {
            (image.into_rgb8().into_raw(), PixelType::U8x3)
        };
        let image = Image::from_vec_u8(width, height, buffer, pixel_type)
            .expect("the buffer matches its dimensions");
        Self { image }
    }

    pub fn width(&self) -> u32 {
        self.image.width()
    }

    pub fn height(&self) -> u32 {
        self.image.height()
    }

    /// Whether pixels carry alpha (RGBA).
    pub fn has_alpha(&self) -> bool {
        self.image.pixel_type() == PixelType::U8x4
    }

    /// The raw interleaved bytes.
    pub fn bytes(&self) -> &[u8] {
        self.image.buffer()
    }

    /// A copy, to keep as a source for smaller variants while this one is encoded.
    pub fn clone_pixels(&self) -> Self {
        let image = Image::from_vec_u8(
            self.width(),
            self.height(),
            self.bytes().to_vec(),
            self.image.pixel_type(),
        )
        .expect("the buffer matches its dimensions");
        Self { image }
    }

    /// The raw interleaved bytes, for in-place conversions.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.image.buffer_mut()
    }
}

/// Resizes `source` to `width`×`height` (Lanczos3; alpha is premultiplied while filtering).
pub fn resize(source: &Pixels, width: u32, height: u32) -> Pixels {
    let mut target = Image::new(width, height, source.image.pixel_type());
    if (width, height) == (source.width(), source.height()) {
        target.buffer_mut().copy_from_slice(source.bytes());
        return Pixels { image: target };
    }
    Resizer::new()
        .resize(&source.image, &mut target, &ResizeOptions::new())
        .expect("source and target share a supported pixel type");
    Pixels { image: target }
}

/// Resizes the region `crop` (left, top, width, height in `source`'s pixels) of `source` to
/// `width`×`height`.
pub fn resize_region(
    source: &Pixels,
    crop: (f64, f64, f64, f64),
    width: u32,
    height: u32,
) -> Pixels {
    let mut target = Image::new(width, height, source.image.pixel_type());
    let (left, top, w, h) = crop;
    Resizer::new()
        .resize(
            &source.image,
            &mut target,
            &ResizeOptions::new().crop(left, top, w, h),
        )
        .expect("source and target share a supported pixel type");
    Pixels { image: target }
}
