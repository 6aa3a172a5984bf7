//! What an upload is, decided from its bytes: the format by magic number and the dimensions from
//! the header alone, so oversized images and decompression bombs are refused before any decode.

use std::io::Cursor;

/// The image formats Kiln accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    WebP,
}

impl ImageFormat {
    /// The MIME type recorded for the original.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::WebP => "image/webp",
        }
    }

    /// The `image` crate's name for the format.
    pub fn to_image_format(self) -> image::ImageFormat {
        match self {
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Png => image::ImageFormat::Png,
            Self::Gif => image::ImageFormat::Gif,
            Self::WebP => image::ImageFormat::WebP,
        }
    }

    /// Parses a MIME type as recorded by [`ImageFormat::content_type`].
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        [Self::Jpeg, Self::Png, Self::Gif, Self::WebP]
            .into_iter()
            .find(|f| f.content_type() == content_type)
    }
}

/// Bytes needed to recognise every supported format.
pub const SNIFF_LEN: usize = 12;

/// Recognises the format from the first bytes, whatever the client claimed.
pub fn sniff(head: &[u8]) -> Option<ImageFormat> {
    match head {
        [0xFF, 0xD8, 0xFF, ..] => Some(ImageFormat::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(ImageFormat::Png),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(ImageFormat::Gif),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Reads width and height from the header in `head` without decoding any pixels.
/// Returns `None` when `head` does not hold the whole header (or the header is broken).
pub fn dimensions(format: ImageFormat, head: &[u8]) -> Option<(u32, u32)> {
    let reader = image::ImageReader::with_format(Cursor::new(head), format.to_image_format());
    reader.into_dimensions().ok()
}

/// What the upload path learns from an upload's first bytes: its format, and its dimensions
/// when the header is all there. The fuzz target `probe` calls it on arbitrary bytes.
pub fn probe(head: &[u8]) -> Option<(ImageFormat, Option<(u32, u32)>)> {
    let format = sniff(head)?;
    Some((format, dimensions(format, head)))
}

/// [`dimensions`] for the format the first byte picks, on the rest: reaches each decoder's header
/// parser without valid magic bytes (the fuzz target `probe_as`).
pub fn probe_as(bytes: &[u8]) -> Option<(u32, u32)> {
    let (&pick, rest) = bytes.split_first()?;
    let formats = [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::WebP,
    ];
    dimensions(formats[usize::from(pick) % formats.len()], rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input the fuzzers kept (their corpus) or that once crashed one (artifacts) runs
    /// through the same functions again, on the stable toolchain, on every test run.
    #[test]
    fn the_fuzz_corpus_and_crashes_replay_without_a_panic() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for kind in ["corpus", "artifacts"] {
            for target in ["probe", "probe_as"] {
                let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let bytes = std::fs::read(entry.path()).expect("readable input");
                    match target {
                        "probe" => drop(probe(&bytes)),
                        _ => drop(probe_as(&bytes)),
                    }
                    replayed += 1;
                }
            }
        }
        assert!(replayed > 0, "no corpus under {}", root.display());
    }

    #[test]
    fn sniffing_ignores_names_and_trusts_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(b"GIF89a......"), Some(ImageFormat::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageFormat::WebP));
        assert_eq!(sniff(b"PK\x03\x04zipfile"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn dimensions_come_from_the_header_alone() {
        let mut png = Vec::new();
        image::RgbImage::new(300, 200)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode");
        // Only the first 64 bytes: IHDR is all the probe needs.
        assert_eq!(dimensions(ImageFormat::Png, &png[..64]), Some((300, 200)));
    }
}
