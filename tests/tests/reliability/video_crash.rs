//! kill -9 the worker mid-transcode: ffmpeg does not outlive it, and the video still ends
//! ready once a worker runs again.

use std::time::Duration;

use kiln_tests::{
    Options, Process, spawn_app_with,
    video::{Clip, GatedFfmpeg},
};

#[tokio::test]
async fn a_worker_killed_mid_transcode_leaves_no_ffmpeg_and_the_video_ends_ready() {
    let ffmpeg = GatedFfmpeg::new();
    let mut options = Options {
        with_scheduler: true,
        ..Options::default()
            .env("KILN_HEARTBEAT_TIMEOUT", "3s")
            .env("KILN_VIDEO_RENDITIONS", "144")
    };
    for (name, value) in ffmpeg.env() {
        options = options.env(name, value);
    }
    let mut app = spawn_app_with(options).await;
    let accepted = app.upload(Clip::default().make()).await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let id = accepted.body["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/media/{id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.get(&path).await.body["progress"] != 0.5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the transcode never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ffmpeg.running(), "the transcode is held");

    let mut worker = app.worker.take().expect("worker");
    worker.signal("KILL");
    worker
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ffmpeg.running() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ffmpeg outlived its worker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    ffmpeg.open();
    app.worker = Some(Process::spawn("kiln-worker", &[], app.env()).expect("restarted"));
    let media = app.wait_for_media(&id).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert!(
        media["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .any(|v| v["name"] == "144p" && v["format"] == "mp4"),
        "{media}"
    );
}
