//! AVIF variants when an instance turns them on (`KILN_FORMATS=jpeg,webp,avif`): made for every
//! variant, negotiated first for browsers that name `image/avif`, and readable by an AVIF
//! decoder Kiln did not write (Pillow's, from PyPI).

use std::process::Command;

use kiln_tests::{Options, TestApp, images, spawn_app_with};
use reqwest::{StatusCode, header};
use serde_json::Value;

const CHROME_ACCEPT: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

async fn app_with_avif() -> TestApp {
    // The fastest speed: what is checked here is the path, not the encoder's effort.
    spawn_app_with(
        Options::default()
            .env("KILN_FORMATS", "jpeg,webp,avif")
            .env("KILN_AVIF_SPEED", "9"),
    )
    .await
}

async fn ready(app: &TestApp, body: Vec<u8>) -> Value {
    let answer = app.upload(body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    media
}

fn variants_in<'a>(media: &'a Value, format: &str) -> Vec<&'a Value> {
    media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .filter(|v| v["format"] == format)
        .collect()
}

/// Format and size of an image file as Pillow reads it.
fn pillow_reads(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("variant.avif");
    std::fs::write(&path, bytes).expect("write");
    let python = std::env::var("KILN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(python)
        .args([
            "-c",
            "import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.load(); \
             print(im.format, im.size[0], im.size[1])",
        ])
        .arg(&path)
        .output()
        .expect("python with Pillow");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn browsers_that_accept_avif_get_it_and_an_independent_decoder_reads_it() {
    let app = app_with_avif().await;
    let media = ready(&app, images::sideways_jpeg(400, 300)).await;

    let jpegs = variants_in(&media, "jpeg");
    let avifs = variants_in(&media, "avif");
    assert_eq!(avifs.len(), jpegs.len(), "one AVIF per variant: {media}");
    for jpeg in jpegs {
        let avif = avifs
            .iter()
            .find(|a| a["name"] == jpeg["name"])
            .unwrap_or_else(|| panic!("no AVIF {}", jpeg["name"]));
        assert_eq!(
            (&avif["width"], &avif["height"]),
            (&jpeg["width"], &jpeg["height"])
        );
        let url = avif["url"].as_str().expect("url");
        assert!(url.contains(".avif?"), "{url}");
        let response = app
            .client
            .get(format!("{}{url}", app.address))
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "image/avif");
        let bytes = response.bytes().await.expect("body");
        assert_eq!(
            pillow_reads(&bytes),
            format!("AVIF {} {}", avif["width"], avif["height"])
        );
    }

    let negotiated = media["variant_urls"]["small"].as_str().expect("url");
    for (accept, expected) in [
        (CHROME_ACCEPT, "image/avif"),
        ("image/webp,*/*", "image/webp"),
        ("*/*", "image/jpeg"),
    ] {
        let response = app
            .client
            .get(format!("{}{negotiated}", app.address))
            .header(header::ACCEPT, accept)
            .send()
            .await
            .expect("negotiated download");
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            expected,
            "{accept}"
        );
        assert_eq!(response.headers()[header::VARY], "Accept");
    }
}

#[tokio::test]
async fn an_image_with_transparency_is_negotiated_to_the_webp_that_keeps_it() {
    let app = app_with_avif().await;
    let logo = image::RgbaImage::from_fn(120, 80, |x, _| {
        image::Rgba([20, 90, 200, if x < 60 { 0 } else { 255 }])
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba8(logo)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let media = ready(&app, png).await;

    assert!(variants_in(&media, "avif").is_empty(), "{media}");
    let negotiated = media["variant_urls"]["thumb"].as_str().expect("url");
    let response = app
        .client
        .get(format!("{}{negotiated}", app.address))
        .header(header::ACCEPT, CHROME_ACCEPT)
        .send()
        .await
        .expect("negotiated download");
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/webp");
}
