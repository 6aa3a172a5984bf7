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

    /// The raw interleaved bytes, for in-place conversions.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.image.buffer_mut()
    }
}

/// The size of a variant `target` pixels wide, keeping the aspect ratio and never upscaling.
pub fn fit_width(width: u32, height: u32, target: u32) -> (u32, u32) {
    if target >= width {
        return (width, height);
    }
    let h = (u64::from(height) * u64::from(target) + u64::from(width) / 2) / u64::from(width);
    (target, (h as u32).max(1))
}

/// Shrinks `width`×`height` (keeping the aspect ratio) so the height is at most `max`.
pub fn fit_height(width: u32, height: u32, max: u32) -> (u32, u32) {
    if height <= max {
        return (width, height);
    }
    let w = (u64::from(width) * u64::from(max) + u64::from(height) / 2) / u64::from(height);
    ((w as u32).max(1), max)
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

#[cfg(test)]
mod tests {
    use super::fit_width;

    #[test]
    fn fitting_keeps_the_aspect_ratio_and_never_upscales() {
        assert_eq!(fit_width(4000, 3000, 1000), (1000, 750));
        assert_eq!(fit_width(300, 200, 1000), (300, 200));
        assert_eq!(fit_width(10_000, 1, 100), (100, 1));
    }

    #[test]
    fn tall_images_are_fitted_to_the_height_limit() {
        assert_eq!(super::fit_height(1080, 20_000, 16_383), (885, 16_383));
        assert_eq!(super::fit_height(100, 200, 16_383), (100, 200));
    }
}
