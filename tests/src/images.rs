//! Test inputs: the shared real photos, and small images made to order.

use std::{io::Cursor, path::PathBuf};

use image::{ImageFormat, Rgb, RgbImage};

/// The directory of the shared benchmark photos (`../shared/bench-images` beside the repo, or
/// `KILN_BENCH_IMAGES`).
pub fn bench_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_BENCH_IMAGES") {
        return dir.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench-images")
}

/// Reads one of the shared photos.
pub fn bench_photo(name: &str) -> Vec<u8> {
    let path = bench_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Encodes an RGB image in `format`.
pub fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), format)
        .expect("encode test image");
    out
}

/// A `width`×`height` JPEG whose left half is red and right half blue, stored with EXIF
/// orientation 6 ("rotate 90° clockwise to display"): shown upright it is `height` wide, red on
/// top and blue below.
pub fn sideways_jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    });
    with_unique_comment(&with_exif_orientation(
        &encode(&image, ImageFormat::Jpeg),
        6,
    ))
}

/// `jpeg` with a comment segment no other call gets, so that each call's bytes differ (the
/// tenant's identical uploads would otherwise be one stored media shared, by design) while the
/// pixels stay the same.
pub fn with_unique_comment(jpeg: &[u8]) -> Vec<u8> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let text = format!("kiln-test {} {call} {nanos}", std::process::id());
    let length = u16::try_from(text.len() + 2).expect("a short comment");
    let mut out = Vec::with_capacity(jpeg.len() + text.len() + 4);
    // After SOI: a COM segment may come before any other.
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Inserts an EXIF APP1 segment carrying `orientation` (and a GPS IFD pointer, as phones write)
/// after the JFIF APP0 segment of `jpeg`.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2a\x00\x00\x00\x08"); // big-endian, IFD0 at 8
    tiff.extend_from_slice(&2u16.to_be_bytes()); // two entries
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]); // Orientation, SHORT, 1
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&[0x88, 0x25, 0x00, 0x04, 0, 0, 0, 1]); // GPS IFD pointer, LONG, 1
    tiff.extend_from_slice(&38u32.to_be_bytes()); // the GPS IFD follows IFD0
    tiff.extend_from_slice(&[0, 0, 0, 0]); // no IFD1
    tiff.extend_from_slice(&1u16.to_be_bytes()); // GPS IFD: one entry
    tiff.extend_from_slice(&[0x00, 0x01, 0x00, 0x02, 0, 0, 0, 2]); // GPSLatitudeRef, ASCII, 2
    tiff.extend_from_slice(b"N\x00\x00\x00");
    tiff.extend_from_slice(&[0, 0, 0, 0]);

    let mut segment = vec![0xFF, 0xE1];
    let length = (2 + 6 + tiff.len()) as u16;
    segment.extend_from_slice(&length.to_be_bytes());
    segment.extend_from_slice(b"Exif\x00\x00");
    segment.extend_from_slice(&tiff);

    assert_eq!(
        &jpeg[..4],
        &[0xFF, 0xD8, 0xFF, 0xE0],
        "expected SOI then APP0"
    );
    let app0_end = 4 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    let mut out = jpeg[..app0_end].to_vec();
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[app0_end..]);
    out
}

/// A PNG whose header claims `width`×`height` but whose data is a few bytes: a decompression
/// bomb as far as the header is concerned.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&chunk(b"IHDR", &ihdr));
    png.extend_from_slice(&chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend_from_slice(&chunk(b"IEND", &[]));
    png
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The first bytes of a ZIP archive.
pub fn zip_bytes() -> Vec<u8> {
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.resize(2048, 0x42);
    zip
}

/// A JPEG whose one scan is repeated `scans` times: the structure of a progressive-JPEG
/// decompression bomb (each scan makes a decoder pass over the whole image again).
pub fn jpeg_with_scans(scans: usize) -> Vec<u8> {
    let plain = encode(
        &RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, 90])),
        ImageFormat::Jpeg,
    );
    let sos = plain
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a scan");
    let scan = &plain[sos..plain.len() - 2];
    let mut bomb = plain[..sos].to_vec();
    for _ in 0..scans {
        bomb.extend_from_slice(scan);
    }
    bomb.extend_from_slice(&[0xFF, 0xD9]);
    bomb
}

/// A `width`×`height` image of noise (xorshift, so the same every run): it does not compress,
/// so the encoded file is about as large as its pixels.
pub fn noise(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let image = RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let [r, g, b, ..] = state.to_le_bytes();
        Rgb([r, g, b])
    });
    encode(&image, format)
}
