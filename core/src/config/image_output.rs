//! Which formats variants are encoded in (`KILN_FORMATS`) and the optional AVIF encoder's
//! settings.

use super::{ConfigError, Env};

const FORMATS: &str = "KILN_FORMATS";

/// AVIF output, on when `KILN_FORMATS` names `avif`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvifOutput {
    /// libavif's quality, 0–100 (`KILN_AVIF_QUALITY`).
    pub quality: u8,
    /// libaom's speed, 0 (slowest) – 10 (`KILN_AVIF_SPEED`).
    pub speed: u8,
}

/// Reads `KILN_FORMATS` (`jpeg,webp` by default; `jpeg,webp,avif` adds AVIF). JPEG and WebP
/// are always made: JPEG is what every client can show and what a negotiated URL falls back
/// to, and apps already link the WebP files.
pub(super) fn read(env: &Env<'_>) -> Result<Option<AvifOutput>, ConfigError> {
    let raw = env.string(FORMATS, "jpeg,webp");
    let mut named = Vec::new();
    for format in raw.split(',').map(|f| f.trim().to_ascii_lowercase()) {
        match format.as_str() {
            "" => {}
            "jpeg" | "webp" | "avif" => named.push(format),
            other => {
                return Err(env.error(FORMATS, format!("{other:?} is not one of jpeg, webp, avif")));
            }
        }
    }
    for required in ["jpeg", "webp"] {
        if !named.iter().any(|f| f == required) {
            return Err(env.error(
                FORMATS,
                format!("{raw:?} must include {required}: every media is made in JPEG and WebP"),
            ));
        }
    }
    if !named.iter().any(|f| f == "avif") {
        return Ok(None);
    }
    Ok(Some(AvifOutput {
        quality: env.bounded("KILN_AVIF_QUALITY", DEFAULT_QUALITY, 1, 100)?,
        speed: env.bounded("KILN_AVIF_SPEED", DEFAULT_SPEED, 0, 10)?,
    }))
}

/// Chosen against libvips's AVIF save on the benchmark photo (BENCHMARKS.md, "AVIF"): the same
/// SSIM (0.961), 0.98x the bytes, 0.19x the CPU.
const DEFAULT_QUALITY: u8 = 46;
const DEFAULT_SPEED: u8 = 6;

#[cfg(test)]
mod tests {
    use super::*;

    fn read_with(vars: &[(&str, &str)]) -> Result<Option<AvifOutput>, ConfigError> {
        let lookup = |var: &str| {
            vars.iter()
                .find(|(name, _)| *name == var)
                .map(|(_, value)| (*value).to_owned())
        };
        read(&Env(&lookup))
    }

    #[test]
    fn avif_is_off_by_default_and_on_when_named() {
        assert_eq!(read_with(&[]).expect("default"), None);
        let on = read_with(&[(FORMATS, "jpeg, WebP,avif"), ("KILN_AVIF_SPEED", "8")])
            .expect("valid")
            .expect("avif on");
        assert_eq!(on.speed, 8);
        assert_eq!(on.quality, DEFAULT_QUALITY);
    }

    #[test]
    fn unknown_or_missing_formats_are_refused() {
        let error = read_with(&[(FORMATS, "jpeg,webp,heic")]).expect_err("heic");
        assert!(error.message.contains("heic"), "{}", error.message);
        let error = read_with(&[(FORMATS, "webp,avif")]).expect_err("no jpeg");
        assert!(error.message.contains("jpeg"), "{}", error.message);
        let error = read_with(&[(FORMATS, "jpeg,avif"), ("KILN_AVIF_SPEED", "11")]);
        assert!(error.is_err());
    }
}
