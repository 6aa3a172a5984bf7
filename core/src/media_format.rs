//! What an upload is by its first bytes: an image or a video, whatever the client claimed.

use crate::{
    image_probe::{self, ImageFormat},
    video_probe::{self, Container},
};

/// An accepted upload's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFormat {
    Image(ImageFormat),
    Video(Container),
}

/// Bytes needed to recognise every accepted format.
pub const SNIFF_LEN: usize = image_probe::SNIFF_LEN;

impl MediaFormat {
    /// Recognises the format from the first [`SNIFF_LEN`] bytes.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        image_probe::sniff(head)
            .map(Self::Image)
            .or_else(|| video_probe::sniff(head).map(Self::Video))
    }

    /// The MIME type recorded for the original.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Image(format) => format.content_type(),
            Self::Video(container) => container.content_type(),
        }
    }

    /// Parses a MIME type as recorded by [`MediaFormat::content_type`].
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        ImageFormat::from_content_type(content_type)
            .map(Self::Image)
            .or_else(|| Container::from_content_type(content_type).map(Self::Video))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_videos_are_both_recognised_and_round_trip_their_content_type() {
        for (head, content_type) in [
            (&b"\xFF\xD8\xFF\xE0rest-of-it"[..], "image/jpeg"),
            (&b"\0\0\0\x20ftypmp42\0\0\0\0"[..], "video/mp4"),
            (
                &b"\x1A\x45\xDF\xA3\x9f\x42\x86\x81\x01\x42\xf7\x81"[..],
                "video/webm",
            ),
        ] {
            let format = MediaFormat::sniff(head).expect("recognised");
            assert_eq!(format.content_type(), content_type);
            assert_eq!(MediaFormat::from_content_type(content_type), Some(format));
        }
        assert_eq!(MediaFormat::sniff(b"PK\x03\x04zipzipzipzip"), None);
    }
}
