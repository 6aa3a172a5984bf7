//! Where a variant's pixels come from and how large it is, in the upright original's
//! coordinates, for each way a variant meets its box (`kiln_core::config::Fit`).

use kiln_core::config::{Fit, VariantSpec};

/// A variant's size, and for `cover` the size of the region of the original it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub width: u32,
    pub height: u32,
    /// `cover` only: the largest region of the box's aspect ratio the original holds.
    pub crop: Option<(u32, u32)>,
}

impl Geometry {
    /// The variant of `spec` for an upright original of `width`×`height`. Never upscaled.
    pub fn of(spec: &VariantSpec, width: u32, height: u32) -> Self {
        let full = |(w, h): (u32, u32)| Self {
            width: w,
            height: h,
            crop: None,
        };
        match (spec.fit, spec.height) {
            (Fit::Width, _) | (_, None) => full(fit_width(width, height, spec.width)),
            (Fit::Contain, Some(box_height)) => {
                full(fit_box(width, height, spec.width, box_height))
            }
            (Fit::Cover, Some(box_height)) => {
                let (crop_w, crop_h) = largest_of_ratio(width, height, spec.width, box_height);
                let (w, h) = if crop_w >= spec.width {
                    (spec.width, box_height)
                } else {
                    (crop_w, crop_h)
                };
                Self {
                    width: w,
                    height: h,
                    crop: Some((crop_w, crop_h)),
                }
            }
        }
    }

    /// How wide a whole-image source must be (for an original `width` wide) to make this
    /// variant without upscaling: what the JPEG decoder may scale down to.
    pub fn source_width(&self, width: u32) -> u32 {
        match self.crop {
            None => self.width,
            Some((crop_w, _)) => {
                let needed = u64::from(width) * u64::from(self.width);
                u32::try_from(needed.div_ceil(u64::from(crop_w.max(1)))).unwrap_or(width)
            }
        }
        .min(width)
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

/// The largest size inside `box_w`×`box_h` with the original's aspect ratio, never larger
/// than the original.
pub fn fit_box(width: u32, height: u32, box_w: u32, box_h: u32) -> (u32, u32) {
    let (w, h) = fit_width(width, height, box_w);
    fit_height(w, h, box_h)
}

/// The largest `box_w`:`box_h` region a `width`×`height` image holds.
pub fn largest_of_ratio(width: u32, height: u32, box_w: u32, box_h: u32) -> (u32, u32) {
    // Compare width/height with box_w/box_h without floating point.
    let (width, height, box_w, box_h) = (
        u64::from(width),
        u64::from(height),
        u64::from(box_w),
        u64::from(box_h),
    );
    let (w, h) = if width * box_h > height * box_w {
        // Wider than the box: the full height, a part of the width.
        ((height * box_w + box_h / 2) / box_h, height)
    } else {
        (width, (width * box_h + box_w / 2) / box_w)
    };
    (
        u32::try_from(w.clamp(1, width)).unwrap_or(1),
        u32::try_from(h.clamp(1, height)).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use kiln_core::config::parse_variants;

    use super::*;

    fn geometry(spec: &str, width: u32, height: u32) -> Geometry {
        Geometry::of(&parse_variants(spec).expect("spec")[0], width, height)
    }

    #[test]
    fn fitting_keeps_the_aspect_ratio_and_never_upscales() {
        assert_eq!(fit_width(4000, 3000, 1000), (1000, 750));
        assert_eq!(fit_width(300, 200, 1000), (300, 200));
        assert_eq!(fit_width(10_000, 1, 100), (100, 1));
        assert_eq!(fit_height(1080, 20_000, 16_383), (885, 16_383));
        assert_eq!(fit_height(100, 200, 16_383), (100, 200));
    }

    #[test]
    fn contain_fits_inside_the_box() {
        let g = geometry("hero:2048x1024:contain", 4000, 3000);
        assert_eq!((g.width, g.height, g.crop), (1365, 1024, None));
        let g = geometry("hero:2048x1024", 1000, 200);
        assert_eq!((g.width, g.height), (1000, 200));
    }

    #[test]
    fn cover_fills_the_box_from_the_largest_region_of_its_ratio() {
        let g = geometry("avatar:256x256:cover", 4000, 3000);
        assert_eq!((g.width, g.height, g.crop), (256, 256, Some((3000, 3000))));
        assert_eq!(g.source_width(4000), 342);
        let g = geometry("card:1200x630:cover", 800, 1000);
        assert_eq!((g.width, g.height, g.crop), (800, 420, Some((800, 420))));
        // Smaller than the box: the largest crop of its ratio, not upscaled.
        let g = geometry("avatar:256x256:cover", 200, 100);
        assert_eq!((g.width, g.height, g.crop), (100, 100, Some((100, 100))));
        assert_eq!(g.source_width(200), 200);
    }
}
