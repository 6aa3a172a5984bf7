//! SIGTERM: the worker stops taking jobs, finishes the one in flight and exits 0.

use std::time::Duration;

use kiln_tests::{images, spawn_app};

#[tokio::test]
async fn sigterm_during_a_job_lets_it_finish_and_exits_zero() {
    let mut app = spawn_app().await;
    let answer = app.upload(images::bench_photo("photo-16mp.jpg")).await;
    let job_path = format!("/v1/jobs/{}", answer.body["job_id"].as_str().expect("job"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.get(&job_path).await.body["status"] != "running" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let worker = app.worker.as_mut().expect("a worker");
    worker.signal("TERM");
    let status = worker
        .wait_for_exit(Duration::from_secs(90))
        .await
        .expect("exits");

    assert!(status.success(), "exit status {status:?}");
    let job = app.get(&job_path).await;
    assert_eq!(
        job.body["status"], "succeeded",
        "the in-flight job finished: {:?}",
        job.body
    );
    let media = app
        .get(&format!(
            "/v1/media/{}",
            answer.body["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(media.body["status"], "ready");
}
