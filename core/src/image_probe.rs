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

#[cfg(test)]
mod tests {
    use super::*;

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
