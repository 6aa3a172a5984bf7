//! Garbage, unknown kinds and duplicates: dead-lettered with a reason or acked, never looped,
//! and the worker keeps serving.

use kiln_tests::{images, spawn_app};

#[tokio::test]
async fn garbage_and_unknown_kinds_are_dead_lettered_with_a_reason_and_the_worker_keeps_serving() {
    let app = spawn_app().await;

    app.publish_raw("media", b"this is not json").await;
    let unknown = kiln_tests::envelope(uuid::Uuid::new_v4(), "teleport", serde_json::json!({}));
    app.publish_raw("media", &unknown).await;
    let orphan = kiln_tests::envelope(
        uuid::Uuid::new_v4(),
        "media",
        serde_json::json!({"media_id": uuid::Uuid::new_v4()}),
    );
    app.publish_raw("media", &orphan).await;

    let dead = app.dead_messages(3).await;
    println!("published 3 poison messages; dead-lettered {}", dead.len());
    let reasons: Vec<_> = dead
        .iter()
        .map(|m| m.reason.clone().unwrap_or_default())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("undecodable") && r.contains("expected")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unknown variant") && r.contains("teleport")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r == "no such job"), "{reasons:?}");
    assert!(
        dead.iter().any(|m| m.body == b"this is not json"),
        "the original bytes are kept"
    );

    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready", "the worker still serves");
}

#[tokio::test]
async fn a_duplicate_message_of_a_finished_job_is_acked_without_running_again() {
    let app = spawn_app().await;
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    let job_id = answer.body["job_id"].as_str().expect("job").to_owned();
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready");
    let updated_at = media["updated_at"].clone();

    let duplicate = kiln_tests::envelope(
        &job_id,
        "media",
        serde_json::json!({"media_id": answer.body["id"]}),
    );
    app.publish_raw("media", &duplicate).await;
    let worker = app.worker.as_ref().expect("worker");
    worker
        .wait_for_log("job finished or held by a live worker; duplicate message acked")
        .await
        .expect("the duplicate is recognised");

    assert_eq!(
        app.job_row(&job_id).await,
        ("succeeded".to_owned(), 1),
        "no second attempt"
    );
    let media = app
        .get(&format!(
            "/v1/media/{}",
            answer.body["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(
        media.body["updated_at"], updated_at,
        "the media was not touched"
    );
}
