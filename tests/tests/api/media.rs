//! The media pipeline end to end: upload → 202 → ready → variants.

use image::GenericImageView;
use kiln_tests::{images, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

const WIDTHS: [(&str, u32); 4] = [
    ("large", 2048),
    ("medium", 1024),
    ("small", 480),
    ("thumb", 160),
];

/// Downloads every variant and checks format, size, aspect ratio and that nothing was upscaled.
async fn assert_variants(app: &kiln_tests::TestApp, media: &Value, width: u32, height: u32) {
    let variants = media["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), WIDTHS.len() * 2, "{media}");
    for (name, target) in WIDTHS {
        for (format, content_type, image_format) in [
            ("jpeg", "image/jpeg", image::ImageFormat::Jpeg),
            ("webp", "image/webp", image::ImageFormat::WebP),
        ] {
            let variant = variants
                .iter()
                .find(|v| v["name"] == name && v["format"] == format)
                .unwrap_or_else(|| panic!("no {name}/{format} in {media}"));
            let response = app.download(variant["url"].as_str().expect("url")).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], content_type);
            assert!(
                response.headers()["cache-control"]
                    .to_str()
                    .expect("ascii")
                    .starts_with("private, max-age="),
            );
            let bytes = response.bytes().await.expect("body");
            assert_eq!(variant["bytes"].as_u64(), Some(bytes.len() as u64));
            let decoded = image::load_from_memory_with_format(&bytes, image_format)
                .unwrap_or_else(|e| panic!("{name}.{format} does not decode: {e}"));
            let (w, h) = decoded.dimensions();
            let expected_width = target.min(width);
            assert_eq!(w, expected_width, "{name}.{format} width");
            assert_eq!(variant["width"].as_u64(), Some(u64::from(w)));
            assert_eq!(variant["height"].as_u64(), Some(u64::from(h)));
            let expected_height = f64::from(height) * f64::from(w) / f64::from(width);
            assert!(
                (f64::from(h) - expected_height).abs() <= 1.0,
                "{name}.{format}: {w}x{h} does not keep {width}x{height}'s aspect ratio"
            );
            assert!(w <= width && h <= height, "{name}.{format} was upscaled");
            assert!(
                !bytes.windows(6).any(|w| w == b"Exif\0\0"),
                "{name}.{format} still carries EXIF"
            );
        }
    }
}

#[tokio::test]
async fn a_16mp_photo_is_resized_into_every_variant() {
    let app = spawn_app().await;

    let answer = app.upload(images::bench_photo("photo-16mp.jpg")).await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let id = answer.body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        answer.headers["location"],
        format!("/v1/media/{id}").as_str()
    );
    assert_eq!(answer.body["status"], "pending");
    assert_eq!(answer.body["content_type"], "image/jpeg");
    assert_eq!(
        (
            answer.body["width"].as_u64(),
            answer.body["height"].as_u64()
        ),
        (Some(5120), Some(3200))
    );
    let job_id = answer.body["job_id"].as_str().expect("job_id").to_owned();

    let media = app.wait_for_media(&id).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_variants(&app, &media, 5120, 3200).await;

    let job = app.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(job.status, StatusCode::OK);
    assert_eq!(job.body["status"], "succeeded");
    assert_eq!(job.body["kind"], "media");
    assert_eq!(job.body["attempts"], 1);
}

#[tokio::test]
async fn a_multipart_upload_is_accepted_and_processed() {
    let app = spawn_app().await;

    let answer = app
        .upload_multipart(images::bench_photo("photo-4mp.jpg"), "holiday.jpg")
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_variants(&app, &media, 2560, 1600).await;
    // Stored under generated keys only: the client's file name appears nowhere.
    assert!(
        app.stored_files()
            .iter()
            .all(|p| !p.to_string_lossy().contains("holiday")),
        "{:?}",
        app.stored_files()
    );
}

#[tokio::test]
async fn an_exif_rotated_photo_comes_out_upright_without_its_metadata() {
    let app = spawn_app().await;
    // Stored 600 wide and 300 high, displayed (orientation 6) 300 wide and 600 high.
    let answer = app.upload(images::sideways_jpeg(600, 300)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);

    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;

    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(
        (media["width"].as_u64(), media["height"].as_u64()),
        (Some(300), Some(600))
    );
    let small = media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .find(|v| v["name"] == "small" && v["format"] == "jpeg")
        .expect("small jpeg")
        .clone();
    // 300 wide: never upscaled to 480.
    assert_eq!(
        (small["width"].as_u64(), small["height"].as_u64()),
        (Some(300), Some(600))
    );
    let bytes = app
        .download(small["url"].as_str().expect("url"))
        .await
        .bytes()
        .await
        .expect("body");
    assert!(
        !bytes.windows(6).any(|w| w == b"Exif\0\0"),
        "EXIF (and its GPS) must not leave Kiln"
    );
    let image = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
    let top = image.get_pixel(150, 100);
    let bottom = image.get_pixel(150, 500);
    assert!(
        top[0] > 150 && top[2] < 100,
        "top should be red, is {top:?}"
    );
    assert!(
        bottom[2] > 150 && bottom[0] < 100,
        "bottom should be blue, is {bottom:?}"
    );
}

#[tokio::test]
async fn a_truncated_jpeg_ends_failed_with_the_decoders_reason_and_a_dead_job() {
    let app = spawn_app().await;
    let mut photo = images::bench_photo("photo-4mp.jpg");
    photo.truncate(photo.len() / 3);

    let answer = app.upload(photo).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;

    assert_eq!(media["status"], "failed", "{media}");
    let error = media["error"].as_str().expect("an error is reported");
    assert!(error.contains("decode"), "unhelpful error: {error}");
    assert_eq!(media["variants"].as_array().map(Vec::len), Some(0));
    let job = app
        .get(&format!(
            "/v1/jobs/{}",
            answer.body["job_id"].as_str().expect("job")
        ))
        .await;
    assert_eq!(job.body["status"], "dead", "{:?}", job.body);
    assert_eq!(job.body["attempts"], 1, "a corrupt file is never retried");
    assert_eq!(job.body["last_error"].as_str(), Some(error));

    // The worker is still alive and serving.
    let next = app.upload(images::sideways_jpeg(64, 32)).await;
    let media = app
        .wait_for_media(next.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready");
}

#[tokio::test]
async fn a_jpeg_with_thousands_of_scans_fails_permanently_with_its_reason() {
    let app = spawn_app().await;
    let answer = app.upload(images::jpeg_with_scans(3000)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "failed", "{media}");
    assert!(
        media["error"]
            .as_str()
            .is_some_and(|e| e.contains("3000 scans")),
        "{media}"
    );
    let job = app
        .wait_for_job(answer.body["job_id"].as_str().expect("job"))
        .await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_i64()),
        (Some("dead"), Some(1))
    );
}
