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

#[tokio::test]
async fn sigterm_during_a_batch_finishes_what_is_in_flight_and_leaves_the_rest_queued() {
    let mut app = kiln_tests::spawn_app_with(
        kiln_tests::Options::default().env("KILN_WORKER_CONCURRENCY", "2"),
    )
    .await;
    let photo = images::bench_photo("photo-4mp.jpg");
    let mut jobs = Vec::new();
    for _ in 0..8 {
        let answer = app.upload(photo.clone()).await;
        jobs.push(answer.body["job_id"].as_str().expect("job").to_owned());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.job_row(&jobs[0]).await.0 != "running" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch never started"
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
    let mut finished = 0;
    let mut waiting = 0;
    for job in &jobs {
        match app.job_row(job).await.0.as_str() {
            "succeeded" => finished += 1,
            "queued" => waiting += 1,
            other => panic!("after a graceful stop no job may be {other}"),
        }
    }
    assert!(finished >= 1, "the in-flight jobs finished");
    // A new worker takes the rest.
    app.worker = Some(kiln_tests::Process::spawn("kiln-worker", &[], app.env()).expect("worker"));
    for job in &jobs {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while app.job_row(job).await.0 != "succeeded" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{job} never finished"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "sent 8; finished before exit {finished}; left queued {waiting}; finished after restart 8; lost 0"
    );
}
