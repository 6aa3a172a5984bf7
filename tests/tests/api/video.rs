//! Video uploads: validated by ffprobe before a job exists, transcoded by the worker's ffmpeg
//! into an H.264 ladder and a poster with image variants, delivered with Range. Clips are
//! made by ffmpeg in the test and the results read back by ffprobe.

use kiln_tests::{
    Options, TestApp, spawn_app_with,
    video::{Clip, duration_of, probe, stream},
};
use reqwest::{StatusCode, header};
use serde_json::Value;

/// Small rungs keep the transcodes quick; the ladder logic is the same as 360/720/1080.
fn small_ladder() -> Options {
    Options::default().env("KILN_VIDEO_RENDITIONS", "144,240,360")
}

fn variant<'a>(media: &'a Value, name: &str, format: &str) -> &'a Value {
    media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .find(|v| v["name"] == name && v["format"] == format)
        .unwrap_or_else(|| panic!("no {name}.{format} in {media}"))
}

async fn fetch(app: &TestApp, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{}{url}", app.address));
    if let Some(range) = range {
        request = request.header(header::RANGE, range);
    }
    request.send().await.expect("download")
}

#[tokio::test]
async fn a_portrait_phone_clip_becomes_an_upright_ladder_and_a_poster_that_play() {
    let app = spawn_app_with(small_ladder()).await;
    // Coded 320x240 with a 90° display rotation, index at the end: upright 240x320.
    let clip = Clip {
        rotate: Some(90),
        ..Clip::default()
    }
    .make();
    let source = probe(&clip);
    assert!(
        source.to_string().contains("kiln-test-private-title"),
        "{source}"
    );

    let accepted = app.upload(clip.clone()).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    assert_eq!(accepted.body["content_type"], "video/mp4");
    assert_eq!(accepted.body["width"], 240, "{:?}", accepted.body);
    assert_eq!(accepted.body["height"], 320);
    assert_eq!(accepted.body["video"]["codec"], "h264");
    assert_eq!(accepted.body["video"]["has_audio"], true);
    let media = app
        .wait_for_media(accepted.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    assert!(media["progress"].is_null(), "{media}");

    // 144p and 240p; 360p would upscale the 240-wide source.
    let names: Vec<&str> = media["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .filter(|v| v["format"] == "mp4")
        .map(|v| v["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    for (name, width, height) in [("144p", 144, 192), ("240p", 240, 320)] {
        let rendition = variant(&media, name, "mp4");
        assert_eq!(
            (&rendition["width"], &rendition["height"]),
            (&width.into(), &height.into())
        );
        let url = rendition["url"].as_str().expect("url");
        let response = fetch(&app, url, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "video/mp4");
        let bytes = response.bytes().await.expect("body");
        let report = probe(&bytes);
        let video = stream(&report, "video").expect("a video stream");
        assert_eq!(video["codec_name"], "h264", "{name}");
        assert_eq!(video["pix_fmt"], "yuv420p", "{name}");
        assert_eq!(
            (&video["width"], &video["height"]),
            (&width.into(), &height.into())
        );
        assert!(
            video["side_data_list"].is_null(),
            "the rotation is applied, not carried: {video}"
        );
        assert_eq!(
            stream(&report, "audio").expect("audio kept")["codec_name"],
            "aac"
        );
        assert!(
            !report.to_string().contains("kiln-test-private-title"),
            "metadata stripped: {report}"
        );
        let (ours, theirs) = (duration_of(&report), duration_of(&source));
        assert!((ours - theirs).abs() <= 0.1, "{name}: {ours} vs {theirs}");
        // Faststart: the index comes before the frames, so a player starts at once.
        let moov = bytes.windows(4).position(|w| w == b"moov").expect("moov");
        let mdat = bytes.windows(4).position(|w| w == b"mdat").expect("mdat");
        assert!(moov < mdat, "{name}: moov at {moov}, mdat at {mdat}");

        // Players seek with ranges.
        let part = fetch(&app, url, Some("bytes=0-99")).await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.bytes().await.expect("body"), bytes.slice(0..100));
    }

    // The poster, upright, in each image format, and the image variants made from it.
    let poster = variant(&media, "poster", "jpeg");
    assert_eq!(
        (&poster["width"], &poster["height"]),
        (&240.into(), &320.into())
    );
    let jpeg = fetch(&app, poster["url"].as_str().expect("url"), None).await;
    let image = image::load_from_memory(&jpeg.bytes().await.expect("body")).expect("a JPEG");
    assert_eq!((image.width(), image.height()), (240, 320));
    variant(&media, "poster", "webp");
    variant(&media, "thumb", "jpeg");
    assert!(media["placeholder"]["thumbhash"].is_string(), "{media}");

    // What the dashboard's realtime factor and transcode panels read.
    let worker = app.worker.as_ref().expect("worker");
    let metrics = worker
        .wait_for_field("metrics listening", "addr")
        .await
        .expect("metrics address");
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    // The operators' dashboard's realtime factor (recorded just after the media is ready).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let queues = app.get("/v1/admin/queues").await.body;
        let video = queues["queues"]
            .as_array()
            .and_then(|q| q.iter().find(|q| q["queue"] == "video"))
            .cloned()
            .unwrap_or_default();
        if video["realtime_factor"].as_f64().is_some_and(|f| f > 0.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{queues}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let sum = |name: &str| kiln_tests::metric_value(&text, name, &[]);
    assert!(
        (sum("kiln_video_media_seconds_sum") - 2.0).abs() < 0.1,
        "{text}"
    );
    assert!(sum("kiln_video_cpu_seconds_sum") > 0.0, "{text}");
    assert!(
        kiln_tests::metric_value(
            &text,
            "kiln_video_transcode_seconds_count",
            &["rendition=\"240p\""]
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn with_kiln_video_audio_false_renditions_have_no_audio() {
    let app = spawn_app_with(small_ladder().env("KILN_VIDEO_AUDIO", "false")).await;
    let clip = Clip {
        seconds: 1.0,
        ..Clip::default()
    }
    .make();
    assert!(
        stream(&probe(&clip), "audio").is_some(),
        "the source has audio"
    );
    let accepted = app.upload(clip).await;
    let media = app
        .wait_for_media(accepted.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    let url = variant(&media, "240p", "mp4")["url"].as_str().expect("url");
    let report = probe(&fetch(&app, url, None).await.bytes().await.expect("body"));
    assert!(stream(&report, "audio").is_none(), "{report}");
}

#[tokio::test]
async fn a_webm_without_audio_is_transcoded_to_mp4_without_audio() {
    let app = spawn_app_with(small_ladder()).await;
    let clip = Clip {
        audio: false,
        container: "webm",
        width: 256,
        height: 144,
        seconds: 1.0,
        ..Clip::default()
    }
    .make();
    let accepted = app.upload(clip).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    assert_eq!(accepted.body["content_type"], "video/webm");
    assert_eq!(accepted.body["video"]["codec"], "vp9");
    let media = app
        .wait_for_media(accepted.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    let rendition = variant(&media, "144p", "mp4");
    let bytes = fetch(&app, rendition["url"].as_str().expect("url"), None)
        .await
        .bytes()
        .await
        .expect("body");
    let report = probe(&bytes);
    assert!(stream(&report, "audio").is_none(), "{report}");
    assert_eq!(
        (&rendition["width"], &rendition["height"]),
        (&256.into(), &144.into())
    );
}

#[tokio::test]
async fn files_that_are_not_acceptable_videos_are_refused_before_a_job_exists() {
    let app = spawn_app_with(
        Options::default()
            .env("KILN_VIDEO_MAX_SECONDS", "2")
            .env("KILN_VIDEO_MAX_SIZE", "640x480"),
    )
    .await;
    let short = Clip {
        seconds: 1.0,
        audio: false,
        ..Clip::default()
    }
    .make();
    let long = Clip {
        seconds: 3.0,
        audio: false,
        ..Clip::default()
    }
    .make();
    let wide = Clip {
        width: 800,
        height: 200,
        seconds: 1.0,
        audio: false,
        ..Clip::default()
    }
    .make();
    // An HLS playlist pointing at a local file, as the CVE-2016-1897 exploits sent it; and the
    // same playlist behind an MP4 header, which ffprobe may only read as MP4.
    let playlist =
        b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n";
    let mut disguised = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    disguised.extend_from_slice(playlist);
    let truncated = short[..short.len() / 2].to_vec();

    for (what, body, status, code) in [
        (
            "text named .mp4",
            b"just some text, no video".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "an HLS playlist",
            playlist.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "a playlist behind an MP4 header",
            disguised,
            422,
            "invalid_video",
        ),
        (
            "a truncated clip (its index was at the end)",
            truncated,
            422,
            "invalid_video",
        ),
        ("a clip over the length limit", long, 422, "video_too_long"),
        ("a clip over the size limit", wide, 422, "video_too_large"),
    ] {
        let answer = app.upload(body).await;
        assert_eq!(answer.status.as_u16(), status, "{what}: {:?}", answer.body);
        assert_eq!(answer.error_code(), code, "{what}: {:?}", answer.body);
    }
    assert_eq!(app.job_count().await, 0, "no job for a refused upload");
    assert!(
        app.stored_files().is_empty(),
        "nothing kept: {:?}",
        app.stored_files()
    );
    let accepted = app.upload(short).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
}

#[tokio::test]
async fn progress_is_reported_while_the_transcode_runs_and_cleared_when_ready() {
    let ffmpeg = kiln_tests::video::GatedFfmpeg::new();
    let mut options = small_ladder();
    for (name, value) in ffmpeg.env() {
        options = options.env(name, value);
    }
    let app = spawn_app_with(options).await;
    let accepted = app.upload(Clip::default().make()).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    let path = format!("/v1/media/{}", accepted.body["id"].as_str().expect("id"));

    // The stand-in reports one second of the two-second clip done, and holds there: the read
    // (through the cache, which cached the pending media first) shows it.
    assert_eq!(app.get(&path).await.body["status"], "pending");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let media = app.get(&path).await.body;
        if media["progress"] == 0.5 {
            assert_eq!(media["status"], "processing", "{media}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress: {media}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ffmpeg.open();
    let media = app
        .wait_for_media(accepted.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    assert!(media["progress"].is_null(), "{media}");
}

#[tokio::test]
async fn an_hdr_clip_is_tone_mapped_to_sdr_bt709() {
    let app = spawn_app_with(small_ladder()).await;
    let clip = Clip {
        hdr: true,
        audio: false,
        seconds: 1.0,
        ..Clip::default()
    }
    .make();
    let accepted = app.upload(clip).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    assert_eq!(accepted.body["video"]["codec"], "hevc");
    assert_eq!(accepted.body["video"]["hdr"], true);
    let media = app
        .wait_for_media(accepted.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    let url = variant(&media, "240p", "mp4")["url"].as_str().expect("url");
    let bytes = fetch(&app, url, None).await.bytes().await.expect("body");
    let report = probe(&bytes);
    let video = stream(&report, "video").expect("video");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["pix_fmt"], "yuv420p");
    assert_eq!(video["color_transfer"], "bt709", "{video}");
    assert_eq!(video["color_primaries"], "bt709", "{video}");
}

#[tokio::test]
async fn a_video_sent_with_tus_by_a_token_that_allows_it_becomes_a_ladder() {
    use super::tus::{create, offset_of, patch, token};
    let app = spawn_app_with(small_ladder()).await;
    let clip = Clip {
        seconds: 1.0,
        ..Clip::default()
    }
    .make();
    let images_only = token(&app, serde_json::json!({})).await;
    let created = create(&app, &images_only, clip.len()).await;
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let refused = patch(&app, &images_only, &location, 0, clip.clone().into())
        .await
        .expect("patch");
    assert_eq!(
        refused.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "a token allows images by default"
    );

    let videos = token(
        &app,
        serde_json::json!({"content_types": ["video/mp4"], "max_bytes": 10_000_000}),
    )
    .await;
    let created = create(&app, &videos, clip.len()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let half = clip.len() / 2;
    let first = patch(&app, &videos, &location, 0, clip[..half].to_vec().into())
        .await
        .expect("first half");
    assert_eq!(offset_of(&first), half);
    let last = patch(&app, &videos, &location, half, clip[half..].to_vec().into())
        .await
        .expect("second half");
    assert_eq!(last.status(), StatusCode::NO_CONTENT);
    let media_id = last.headers()["kiln-media-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let media = app.wait_for_media(&media_id).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(media["content_type"], "video/mp4");
    variant(&media, "240p", "mp4");
}

#[tokio::test]
async fn a_4k_clip_at_the_size_limit_is_accepted_and_laddered_down() {
    let app = spawn_app_with(small_ladder()).await;
    let clip = Clip {
        width: 3840,
        height: 2160,
        seconds: 0.4,
        audio: false,
        ..Clip::default()
    }
    .make();
    let accepted = app.upload(clip).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    let media = app
        .wait_for_media(accepted.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "{media}");
    let top = variant(&media, "360p", "mp4");
    assert_eq!((&top["width"], &top["height"]), (&640.into(), &360.into()));
}
