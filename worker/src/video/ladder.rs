//! The rendition ladder: one H.264 MP4 per configured short side (`KILN_VIDEO_RENDITIONS`),
//! never above the source's own short side, so nothing is upscaled.

/// The x264 preset of every rendition: about as fast as a good-quality preset gets, and
/// documented in the README with the CRFs below.
pub const PRESET: &str = "veryfast";

/// One MP4 to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// `360p` etc.: the short side, as players and people name sizes.
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// x264's constant rate factor: a little higher (smaller files) for small screens.
    pub crf: u8,
}

/// The renditions of an upright `width`x`height` clip. A clip smaller than the smallest rung
/// gets one rendition at its own size.
pub fn ladder(width: u32, height: u32, short_sides: &[u32]) -> Vec<Rung> {
    let source_short = width.min(height);
    let mut sides: Vec<u32> = short_sides
        .iter()
        .copied()
        .filter(|&side| side <= source_short)
        .collect();
    if sides.is_empty() {
        sides.push(source_short);
    }
    sides
        .into_iter()
        .map(|side| {
            // The long side keeps the aspect ratio, rounded to even (4:2:0 needs both even).
            let long = even(
                ((f64::from(width.max(height)) * f64::from(side)) / f64::from(source_short)).round()
                    as u32,
            )
            .max(2);
            let side = even(side).max(2);
            let (w, h) = if width >= height {
                (long, side)
            } else {
                (side, long)
            };
            Rung {
                name: format!("{side}p"),
                width: w,
                height: h,
                crf: crf_for(side),
            }
        })
        .collect()
}

fn even(n: u32) -> u32 {
    n & !1
}

fn crf_for(short_side: u32) -> u8 {
    match short_side {
        0..=480 => 24,
        481..=720 => 23,
        _ => 22,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(rungs: &[Rung]) -> Vec<(&str, u32, u32)> {
        rungs
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height))
            .collect()
    }

    #[test]
    fn the_short_side_names_the_rung_in_either_orientation() {
        let landscape = ladder(1920, 1080, &[360, 720, 1080]);
        assert_eq!(
            sizes(&landscape),
            [
                ("360p", 640, 360),
                ("720p", 1280, 720),
                ("1080p", 1920, 1080)
            ]
        );
        let portrait = ladder(1080, 1920, &[360, 720, 1080]);
        assert_eq!(
            sizes(&portrait),
            [
                ("360p", 360, 640),
                ("720p", 720, 1280),
                ("1080p", 1080, 1920)
            ]
        );
    }

    #[test]
    fn nothing_is_upscaled_and_a_tiny_clip_keeps_its_size() {
        assert_eq!(sizes(&ladder(1280, 720, &[360, 720, 1080])).len(), 2);
        assert_eq!(sizes(&ladder(320, 241, &[360, 720])), [("240p", 320, 240)]);
        assert!(ladder(1920, 1080, &[360]).iter().all(|r| r.crf == 24));
    }
}
