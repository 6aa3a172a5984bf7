//! Colour management: pixels in an embedded RGB ICC profile (Adobe RGB, Display P3, camera
//! profiles) are converted to sRGB, the only space browsers assume for untagged images. Without
//! this, wide-gamut photos look washed out once their profile is stripped with the metadata.

use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

use super::resize::Pixels;

/// Converts `pixels` from the space `icc` describes to sRGB, in place. Profiles that are not RGB
/// (grayscale, CMYK: the decoder already produced RGB from those) or cannot be parsed are left
/// alone, with a log line: wrong-ish colours beat a failed job.
pub fn to_srgb(pixels: &mut Pixels, icc: &[u8]) {
    let profile = match ColorProfile::new_from_slice(icc) {
        Ok(profile) => profile,
        Err(error) => {
            tracing::info!(%error, "ignoring an unreadable ICC profile");
            return;
        }
    };
    if profile.color_space != DataColorSpace::Rgb {
        return;
    }
    let layout = if pixels.has_alpha() {
        Layout::Rgba
    } else {
        Layout::Rgb
    };
    let transform = match profile.create_transform_8bit(
        layout,
        &ColorProfile::new_srgb(),
        layout,
        TransformOptions::default(),
    ) {
        Ok(transform) => transform,
        Err(error) => {
            tracing::info!(%error, "ignoring an ICC profile that cannot be applied");
            return;
        }
    };
    let source = pixels.bytes().to_vec();
    if let Err(error) = transform.transform(&source, pixels.bytes_mut()) {
        tracing::info!(%error, "ICC transform failed; keeping the original values");
        pixels.bytes_mut().copy_from_slice(&source);
    }
}
