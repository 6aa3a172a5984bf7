//! The S3 backend, against a real S3-compatible server (moto in server mode).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use kiln_tests::{Options, images, spawn_app_with};
use reqwest::StatusCode;

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

async fn start_moto() -> Moto {
    let port = kiln_tests::private::free_port();
    let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed (pip install 'moto[server]'): {e}")
        });
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while client.get(&moto.endpoint).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    moto
}

#[tokio::test]
async fn the_pipeline_runs_on_s3_compatible_storage() {
    let moto = start_moto().await;
    let bucket = "kiln-media";
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{:?}", created.status());
    let app = spawn_app_with(
        Options::default()
            .env("KILN_STORAGE_URL", format!("s3://{bucket}/tenant-files"))
            .env("AWS_ENDPOINT", moto.endpoint.clone())
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
    )
    .await;
    let photo = images::bench_photo("photo-4mp.jpg");

    let answer = app.upload(photo.clone()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let id = answer.body["id"].as_str().expect("id").to_owned();
    let media = app.wait_for_media(&id).await;

    assert_eq!(media["status"], "ready", "{media}");
    let url = media["variants"][0]["url"].as_str().expect("url");
    let variant = app.download(url).await;
    assert_eq!(variant.status(), StatusCode::OK);
    image::load_from_memory(&variant.bytes().await.expect("body")).expect("variant decodes");
    // The original round-trips byte for byte through the bucket, under the configured prefix.
    let original = reqwest::get(format!(
        "{}/{bucket}/tenant-files/originals/{id}",
        moto.endpoint
    ))
    .await
    .expect("get original");
    assert_eq!(original.status(), StatusCode::OK);
    assert_eq!(
        original.bytes().await.expect("body").as_ref(),
        photo.as_slice()
    );

    // A partial download straight from the bucket.
    let part = app
        .client
        .get(format!("{}{url}", app.address))
        .header(reqwest::header::RANGE, "bytes=2-9")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.expect("body").len(), 8);

    // A resumable upload of more than one 5 MiB part, sent in two PATCHes.
    let big = images::noise(1500, 1300, image::ImageFormat::Png);
    assert!(big.len() > 5 * 1024 * 1024, "{}", big.len());
    let created = crate::tus::create(&app, &app.key, big.len()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let half = big.len() / 2;
    let first = crate::tus::patch(&app, &app.key, &location, 0, big[..half].to_vec().into())
        .await
        .expect("first half");
    assert_eq!(crate::tus::offset_of(&first), half);
    let last = crate::tus::patch(&app, &app.key, &location, half, big[half..].to_vec().into())
        .await
        .expect("second half");
    assert_eq!(last.status(), StatusCode::NO_CONTENT);
    let id = last.headers()["kiln-media-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(app.wait_for_media(&id).await["status"], "ready");
    let original = reqwest::get(format!(
        "{}/{bucket}/tenant-files/originals/{id}",
        moto.endpoint
    ))
    .await
    .expect("get original");
    assert_eq!(
        original.bytes().await.expect("body").as_ref(),
        big.as_slice()
    );

    // A video: probed (from a temporary local copy) and transcoded from the bucket.
    let clip = kiln_tests::video::Clip {
        seconds: 1.0,
        width: 256,
        height: 144,
        ..Default::default()
    }
    .make();
    let answer = app.upload(clip).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    assert_eq!(answer.body["video"]["has_audio"], true);
    let video = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(video["status"], "ready", "{video}");
    let rendition = video["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .find(|v| v["format"] == "mp4")
        .expect("a rendition");
    let bytes = app
        .download(rendition["url"].as_str().expect("url"))
        .await
        .bytes()
        .await
        .expect("body");
    let report = kiln_tests::video::probe(&bytes);
    assert!(
        kiln_tests::video::stream(&report, "video").is_some(),
        "{report}"
    );

    assert!(
        app.stored_files().is_empty(),
        "nothing went to the local directory"
    );
}
