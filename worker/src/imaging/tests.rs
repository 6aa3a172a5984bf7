//! Every kind of input the pipeline promises to handle ends as 8-bit sRGB variants.

use std::io::Cursor;

use image::{
    Delay, DynamicImage, Frame, ImageBuffer, ImageEncoder, Luma, Rgb, RgbImage, Rgba, RgbaImage,
    codecs::{gif::GifEncoder, png::PngEncoder},
};
use kiln_core::{config::VariantSpec, image_probe::ImageFormat};

use super::{Quality, Rendition, render};

const QUALITY: Quality = Quality {
    jpeg: 85,
    webp: 80,
    webp_method: 4,
    avif: None,
};

fn specs() -> Vec<VariantSpec> {
    [("medium", 64), ("thumb", 16)]
        .into_iter()
        .map(|(name, width)| VariantSpec {
            name: name.into(),
            width,
            height: None,
            fit: kiln_core::config::Fit::Width,
        })
        .collect()
}

fn encode(image: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), format)
        .expect("encode input");
    out
}

fn render_ok(data: &[u8], format: ImageFormat) -> Rendition {
    render(data, format, &specs(), 10_000_000, QUALITY).expect("renders")
}

/// Decodes one output file and returns its RGBA pixel at the centre.
fn centre_pixel(rendition: &Rendition, name: &str, format: &str) -> Rgba<u8> {
    let file = rendition
        .files
        .iter()
        .find(|f| f.name == name && f.format == format)
        .expect("file exists");
    let image = image::load_from_memory(&file.bytes).expect("output decodes");
    assert_eq!((image.width(), image.height()), (file.width, file.height));
    image.to_rgba8()[(file.width / 2, file.height / 2)]
}

fn close(a: u8, b: u8) -> bool {
    a.abs_diff(b) <= 12
}

#[test]
fn a_cmyk_jpeg_becomes_rgb() {
    let (w, h) = (96u16, 48u16);
    // Ink amounts (0 = none); the encoder stores them inverted with an Adobe marker, as
    // Photoshop does. Left half plain paper, right half full black.
    let mut cmyk = Vec::new();
    for _ in 0..h {
        for x in 0..w {
            let k = if x < w / 2 { 0 } else { 255 };
            cmyk.extend_from_slice(&[0, 0, 0, k]);
        }
    }
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 95)
        .encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)
        .expect("cmyk jpeg");

    let rendition = render_ok(&jpeg, ImageFormat::Jpeg);

    assert_eq!((rendition.width, rendition.height), (96, 48));
    let file = &rendition.files[0];
    let image = image::load_from_memory(&file.bytes)
        .expect("decodes")
        .to_rgb8();
    let left = image[(4, 16)];
    let right = image[(60, 16)];
    assert!(
        left.0.iter().all(|&c| c > 200),
        "no ink is white, got {left:?}"
    );
    assert!(
        right.0.iter().all(|&c| c < 60),
        "full black ink is black, got {right:?}"
    );
}

#[test]
fn a_16_bit_png_becomes_8_bit() {
    let image: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(80, 40, Rgb([65535, 32768, 0]));
    let png = encode(DynamicImage::ImageRgb16(image), image::ImageFormat::Png);

    let rendition = render_ok(&png, ImageFormat::Png);

    let pixel = centre_pixel(&rendition, "medium", "jpeg");
    assert!(
        close(pixel[0], 255) && close(pixel[1], 128) && close(pixel[2], 0),
        "{pixel:?}"
    );
}

#[test]
fn a_grayscale_png_becomes_rgb_with_equal_channels() {
    let image: ImageBuffer<Luma<u8>, Vec<u8>> = ImageBuffer::from_pixel(80, 40, Luma([90]));
    let png = encode(DynamicImage::ImageLuma8(image), image::ImageFormat::Png);

    let rendition = render_ok(&png, ImageFormat::Png);

    let pixel = centre_pixel(&rendition, "medium", "webp");
    assert!(
        close(pixel[0], 90) && close(pixel[1], 90) && close(pixel[2], 90),
        "{pixel:?}"
    );
}

#[test]
fn an_animated_gif_yields_its_first_frame() {
    let red = RgbaImage::from_pixel(40, 20, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(40, 20, Rgba([0, 0, 255, 255]));
    let mut gif = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut gif);
        for frame in [red, blue] {
            encoder
                .encode_frame(Frame::from_parts(
                    frame,
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                ))
                .expect("frame");
        }
    }

    let rendition = render_ok(&gif, ImageFormat::Gif);

    assert_eq!((rendition.width, rendition.height), (40, 20));
    let pixel = centre_pixel(&rendition, "medium", "jpeg");
    assert!(
        pixel[0] > 200 && pixel[2] < 60,
        "first (red) frame expected, got {pixel:?}"
    );
}

#[test]
fn transparency_is_flattened_on_white_for_jpeg_and_kept_for_webp() {
    let image = RgbaImage::from_fn(80, 40, |x, _| {
        if x < 40 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([0, 128, 0, 255])
        }
    });
    let png = encode(DynamicImage::ImageRgba8(image), image::ImageFormat::Png);

    let rendition = render_ok(&png, ImageFormat::Png);

    let file = |format: &str| {
        let f = rendition
            .files
            .iter()
            .find(|f| f.name == "medium" && f.format == format)
            .expect("file");
        image::load_from_memory(&f.bytes).expect("decodes")
    };
    let jpeg = file("jpeg").to_rgb8();
    assert!(
        jpeg[(5, 16)].0.iter().all(|&c| c > 240),
        "transparent → white: {:?}",
        jpeg[(5, 16)]
    );
    let webp = file("webp");
    assert!(webp.color().has_alpha(), "webp keeps the alpha channel");
    assert!(webp.to_rgba8()[(5, 16)][3] < 10, "and the transparency");
    assert!(webp.to_rgba8()[(60, 16)][3] > 245);
}

#[test]
fn a_display_p3_photo_is_converted_to_srgb() {
    let icc = moxcms::ColorProfile::new_display_p3()
        .encode()
        .expect("p3 profile");
    let image = RgbImage::from_pixel(80, 40, Rgb([200, 60, 60]));
    let mut png = Vec::new();
    let mut encoder = PngEncoder::new(&mut png);
    encoder.set_icc_profile(icc).expect("png takes icc");
    encoder
        .write_image(image.as_raw(), 80, 40, image::ExtendedColorType::Rgb8)
        .expect("png");

    let rendition = render_ok(&png, ImageFormat::Png);

    // P3 red is more saturated than sRGB can show: in sRGB the red rises and the others fall.
    let pixel = centre_pixel(&rendition, "medium", "jpeg");
    assert!(
        pixel[0] > 210 && pixel[1] < 55,
        "expected a converted colour, got {pixel:?}"
    );
}

#[test]
fn variants_are_made_largest_first_and_never_upscaled() {
    let png = encode(
        DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 25, Rgb([1, 2, 3]))),
        image::ImageFormat::Png,
    );

    let rendition = render_ok(&png, ImageFormat::Png);

    let sizes: Vec<_> = rendition
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.format, f.width, f.height))
        .collect();
    assert_eq!(
        sizes,
        [
            ("medium", "jpeg", 50, 25),
            ("medium", "webp", 50, 25),
            ("thumb", "jpeg", 16, 8),
            ("thumb", "webp", 16, 8),
        ]
    );
}

#[test]
fn garbage_after_a_valid_header_fails_with_the_decoders_reason() {
    let mut png = encode(
        DynamicImage::ImageRgb8(RgbImage::new(64, 64)),
        image::ImageFormat::Png,
    );
    let len = png.len();
    png[40..len - 12].fill(0x5A);
    let error = render(&png, ImageFormat::Png, &specs(), 10_000_000, QUALITY)
        .expect_err("corrupt data fails");
    assert!(error.0.starts_with("cannot decode image"), "{error}");
}

/// Renders `image` (as PNG) into `specs` and returns each file's name and size.
fn boxes(image: RgbImage, specs: &str) -> Vec<(String, u32, u32)> {
    let specs = kiln_core::config::parse_variants(specs).expect("specs");
    let png = encode(DynamicImage::ImageRgb8(image), image::ImageFormat::Png);
    let rendition = render(&png, ImageFormat::Png, &specs, 10_000_000, QUALITY).expect("renders");
    rendition
        .files
        .iter()
        .filter(|f| f.format == "jpeg")
        .map(|f| (f.name.clone(), f.width, f.height))
        .collect()
}

#[test]
fn cover_crops_stay_inside_sources_whose_sides_were_rounded_apart() {
    // A 1024-wide source of 2000×1333 is 682 high, while the crop scaled by width wants
    // 682.5: each side is scaled on its own and the region kept inside.
    let plain = RgbImage::from_pixel(2000, 1333, Rgb([90, 90, 90]));
    let sizes = boxes(plain, "medium:1024,avatar:256x256:cover");
    assert!(sizes.contains(&("avatar".into(), 256, 256)), "{sizes:?}");
    // The subject at the far right edge pushes the window against it.
    let edge = RgbImage::from_fn(800, 400, |x, _| {
        if x > 770 {
            Rgb([250, 230, 40])
        } else {
            Rgb([110, 110, 115])
        }
    });
    let sizes = boxes(edge, "card:1200x630:cover,thumb:160");
    assert!(sizes.contains(&("card".into(), 762, 400)), "{sizes:?}");
}

#[test]
fn tiny_and_thin_images_fill_their_boxes_without_upscaling() {
    let sizes = boxes(
        RgbImage::new(1, 300),
        "avatar:256x256:cover,hero:600x200:contain",
    );
    assert!(sizes.contains(&("avatar".into(), 1, 1)), "{sizes:?}");
    assert!(sizes.contains(&("hero".into(), 1, 200)), "{sizes:?}");
}

fn render_with_avif(data: &[u8], format: ImageFormat) -> Rendition {
    let quality = Quality {
        avif: Some(kiln_core::config::AvifOutput {
            quality: 60,
            speed: 9,
        }),
        ..QUALITY
    };
    render(data, format, &specs(), 10_000_000, quality).expect("renders")
}

#[test]
fn avif_variants_decode_to_their_size_and_colours_when_configured() {
    let image = RgbImage::from_fn(96, 60, |x, _| {
        if x < 48 {
            Rgb([200, 30, 30])
        } else {
            Rgb([30, 30, 200])
        }
    });
    let png = encode(DynamicImage::ImageRgb8(image), image::ImageFormat::Png);

    let rendition = render_with_avif(&png, ImageFormat::Png);

    for spec in specs() {
        let avif = rendition
            .files
            .iter()
            .find(|f| f.name == spec.name && f.format == "avif")
            .expect("an AVIF file per variant");
        assert!(
            libavif::is_avif(&avif.bytes),
            "{} is an AVIF file",
            spec.name
        );
        let decoded = libavif::decode_rgb(&avif.bytes).expect("decodes");
        assert_eq!(
            (decoded.width(), decoded.height()),
            (avif.width, avif.height)
        );
        let (r, _, b, _) = decoded.pixel(avif.width / 4, avif.height / 2);
        assert!(close(r, 200) && close(b, 30), "left stays red: {r} {b}");
        let (r, _, b, _) = decoded.pixel(avif.width * 3 / 4, avif.height / 2);
        assert!(close(r, 30) && close(b, 200), "right stays blue: {r} {b}");
    }
    assert!(
        render_ok(&png, ImageFormat::Png)
            .files
            .iter()
            .all(|f| f.format != "avif")
    );
}

#[test]
fn an_image_with_transparency_gets_no_avif_so_negotiation_serves_the_webp_that_keeps_it() {
    let image = RgbaImage::from_fn(80, 40, |x, _| {
        Rgba([0, 128, 0, if x < 40 { 0 } else { 255 }])
    });
    let png = encode(DynamicImage::ImageRgba8(image), image::ImageFormat::Png);

    let rendition = render_with_avif(&png, ImageFormat::Png);

    let formats: Vec<&str> = rendition.files.iter().map(|f| f.format).collect();
    assert!(!formats.contains(&"avif"), "{formats:?}");
    assert!(formats.contains(&"webp"), "{formats:?}");
}
