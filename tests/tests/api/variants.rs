//! Variant boxes: `cover` crops around the subject and never upscales, `contain` fits inside;
//! and every ready media carries a placeholder that decodes to its shape.

use base64::{Engine, engine::general_purpose::STANDARD};
use image::{GenericImageView, ImageFormat, Rgb, RgbImage};
use kiln_tests::{Options, images, spawn_app_with};
use reqwest::StatusCode;
use serde_json::Value;

/// An 800×400 plain grey frame with a bright yellow disc near its right edge: a centre crop
/// would miss it.
fn off_centre_subject() -> Vec<u8> {
    let image = RgbImage::from_fn(800, 400, |x, y| {
        let (dx, dy) = (f64::from(x) - 690.0, f64::from(y) - 200.0);
        if dx * dx + dy * dy < 50.0 * 50.0 {
            Rgb([250, 230, 40])
        } else {
            Rgb([110, 110, 115])
        }
    });
    images::encode(&image, ImageFormat::Png)
}

fn variant<'a>(media: &'a Value, name: &str, format: &str) -> &'a Value {
    media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .find(|v| v["name"] == name && v["format"] == format)
        .unwrap_or_else(|| panic!("no {name}/{format} in {media}"))
}

#[tokio::test]
async fn cover_crops_around_the_subject_contain_fits_and_nothing_is_upscaled() {
    let app = spawn_app_with(Options::default().env(
        "KILN_VARIANTS",
        "thumb:160,avatar:256x256:cover,card:1200x630:cover,hero:600x200:contain",
    ))
    .await;
    let answer = app.upload(off_centre_subject()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");

    for (name, size) in [
        ("avatar", (256, 256)),
        // 1200×630 is larger than the source: the largest 1200:630 region it holds, as is.
        ("card", (762, 400)),
        ("hero", (400, 200)),
        ("thumb", (160, 80)),
    ] {
        for format in ["jpeg", "webp"] {
            let listed = variant(&media, name, format);
            let bytes = app
                .download(listed["url"].as_str().expect("url"))
                .await
                .bytes()
                .await
                .expect("body");
            let image = image::load_from_memory(&bytes).expect("decodes");
            assert_eq!(image.dimensions(), size, "{name}.{format}");
            assert_eq!(
                (listed["width"].as_u64(), listed["height"].as_u64()),
                (Some(u64::from(size.0)), Some(u64::from(size.1)))
            );
            if name == "avatar" {
                let yellow = image
                    .to_rgb8()
                    .pixels()
                    .filter(|p| p[0] > 200 && p[1] > 180 && p[2] < 120)
                    .count();
                // The disc is about 7,850 of the source's pixels; scaled by 256/400 squared
                // that is about 3,200. A centre crop would show none of it.
                assert!(yellow > 2_500, "{name}.{format}: {yellow} yellow pixels");
            }
        }
    }

    let placeholder = &media["placeholder"];
    let hash = STANDARD
        .decode(placeholder["thumbhash"].as_str().expect("thumbhash"))
        .expect("base64");
    let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).expect("a ThumbHash");
    // As finely as ThumbHash keeps it (its component counts: 7:4 for 2:1).
    assert!((ratio / 2.0 - 1.0).abs() <= 0.15, "aspect ratio {ratio}");
    let (w, h, _) = thumbhash::thumb_hash_to_rgba(&hash).expect("decodes");
    assert!(w > h, "{w}x{h}");
    let blur = placeholder["blurhash"].as_str().expect("blurhash");
    blurhash::decode(blur, 32, 16, 1.0).expect("a BlurHash");
    // The grey background (110, 110, 115), give or take the resampling.
    let colour = placeholder["dominant_color"].as_str().expect("colour");
    let channel = |i: usize| u8::from_str_radix(&colour[1 + 2 * i..3 + 2 * i], 16).expect("hex");
    assert!(colour.len() == 7 && colour.starts_with('#'), "{colour}");
    for (i, expected) in [110u8, 110, 115].into_iter().enumerate() {
        assert!(channel(i).abs_diff(expected) <= 3, "{colour}");
    }
}
