//! SIGTERM: the worker stops taking jobs, finishes the one in flight and exits 0.

use std::time::Duration;

use kiln_tests::{Options, images, spawn_app_with};

#[tokio::test]
async fn sigterm_during_a_job_lets_it_finish_and_exits_zero() {
    // Each media job first waits 10 s, so the signal surely lands while it runs.
    let mut app = spawn_app_with(Options::default().env("KILN_TEST_FAULT", "slow")).await;
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
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
    // Two slots, and each media job first waits 10 s: the signal surely lands while two run
    // and six wait, however fast the machine.
    let mut app = spawn_app_with(
        Options::default()
            .env("KILN_WORKER_CONCURRENCY", "2")
            .env("KILN_TEST_FAULT", "slow"),
    )
    .await;
    let mut jobs = Vec::new();
    for _ in 0..8 {
        let answer = app.upload(images::sideways_jpeg(64, 32)).await;
        jobs.push(answer.body["job_id"].as_str().expect("job").to_owned());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut running = 0;
        for job in &jobs {
            running += usize::from(app.job_row(job).await.0 == "running");
        }
        if running == 2 {
            break;
        }
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
    assert_eq!(
        (finished, waiting),
        (2, 6),
        "the in-flight jobs finished, no other started"
    );
    // A new worker (without the delay) takes the rest.
    let mut env = app.env().clone();
    env.remove("KILN_TEST_FAULT");
    app.worker = Some(kiln_tests::Process::spawn("kiln-worker", &[], &env).expect("worker"));
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
