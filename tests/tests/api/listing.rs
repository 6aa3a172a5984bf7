//! Listing a tenant's media and jobs a page at a time, and finding media by app metadata.

use std::collections::HashSet;

use kiln_tests::{Options, TestApp, images, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every id of `path`'s pages (limit 5), in order, following `next_cursor`.
async fn all_pages(app: &TestApp, path: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{separator}limit=5");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{url}: {:?}", page.body);
        for item in page.body["items"].as_array().expect("items") {
            ids.push(item["id"].as_str().expect("id").to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn pages_list_every_media_and_job_exactly_once_while_uploads_go_on() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
    })
    .await;
    let mut media = Vec::new();
    let mut jobs = Vec::new();
    for _ in 0..12 {
        let answer = app.upload(images::sideways_jpeg(32, 16)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        media.push(answer.body["id"].as_str().expect("id").to_owned());
        jobs.push(answer.body["job_id"].as_str().expect("job id").to_owned());
    }
    let other = app.key_for("tenant-b", "media");
    let foreign = app.upload_as(&other, images::sideways_jpeg(32, 16)).await;
    let foreign = foreign.body["id"].as_str().expect("id").to_owned();

    // Uploads keep arriving while the pages are read.
    let uploading = {
        let client = app.client.clone();
        let address = app.address.clone();
        let key = app.key.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                client
                    .post(format!("{address}/v1/media"))
                    .bearer_auth(&key)
                    .body(images::sideways_jpeg(32, 16))
                    .send()
                    .await
                    .expect("upload");
            }
        })
    };
    let listed = all_pages(&app, "/v1/media").await;
    let listed_jobs = all_pages(&app, "/v1/jobs?kind=media").await;
    uploading.await.expect("uploads");

    for (listed, expected) in [(&listed, &media), (&listed_jobs, &jobs)] {
        let unique: HashSet<_> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "an item came twice: {listed:?}");
        for id in expected {
            assert_eq!(
                listed.iter().filter(|l| *l == id).count(),
                1,
                "{id} in {listed:?}"
            );
        }
        // Newest first: the first uploads come last.
        let positions: Vec<_> = expected
            .iter()
            .map(|id| listed.iter().position(|l| l == id))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
    }
    assert!(
        !listed.contains(&foreign),
        "another tenant's media was listed"
    );

    let pending = app.get("/v1/media?status=pending&limit=100").await;
    assert_eq!(pending.status, StatusCode::OK);
    for (query, code) in [
        ("status=deleted", "invalid_filter"),
        ("limit=0", "invalid_filter"),
        ("cursor=abc", "invalid_cursor"),
        ("colour=red", "invalid_filter"),
    ] {
        let answer = app.get(&format!("/v1/media?{query}")).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(answer.error_code(), code, "{query}");
    }
    let answer = app.get("/v1/jobs?status=exploded").await;
    assert_eq!(answer.error_code(), "invalid_filter");
}

#[tokio::test]
async fn an_app_finds_a_media_by_its_metadata() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let answer = app.upload(images::sideways_jpeg(32, 16)).await;
        ids.push(answer.body["id"].as_str().expect("id").to_owned());
    }
    let patch = |contact: &str| json!({ "metadata": { "contact": contact, "role": "avatar" } });
    let tagged = app
        .send(
            Method::PATCH,
            &format!("/v1/media/{}", ids[0]),
            Some(&patch("42")),
        )
        .await;
    assert_eq!(tagged.status, StatusCode::OK, "{:?}", tagged.body);
    assert_eq!(
        tagged.body["metadata"],
        json!({ "contact": "42", "role": "avatar" })
    );
    app.send(
        Method::PATCH,
        &format!("/v1/media/{}", ids[1]),
        Some(&patch("7")),
    )
    .await;

    let found = app
        .get("/v1/media?metadata.contact=42&metadata.role=avatar")
        .await;
    let found: Vec<&Value> = found.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], ids[0].as_str());
    let both = app.get("/v1/media?metadata%5Brole%5D=avatar").await;
    assert_eq!(both.body["items"].as_array().expect("items").len(), 2);

    // A null removes a key; the media shows what is left.
    let removed = json!({ "metadata": { "role": null } });
    let answer = app
        .send(
            Method::PATCH,
            &format!("/v1/media/{}", ids[0]),
            Some(&removed),
        )
        .await;
    assert_eq!(answer.body["metadata"], json!({ "contact": "42" }));
    let read = app.get(&format!("/v1/media/{}", ids[0])).await;
    assert_eq!(read.body["metadata"], json!({ "contact": "42" }));

    for body in [
        json!({ "metadata": { "contact": 42 } }),
        json!({ "metadata": { "bad key": "x" } }),
        json!({ "metadata": { "x": "y".repeat(501) } }),
    ] {
        let answer = app
            .send(Method::PATCH, &format!("/v1/media/{}", ids[2]), Some(&body))
            .await;
        assert_eq!(answer.error_code(), "invalid_metadata", "{body}");
    }
    let too_many: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
    let answer = app
        .send(
            Method::PATCH,
            &format!("/v1/media/{}", ids[0]),
            Some(&json!({ "metadata": too_many })),
        )
        .await;
    assert_eq!(answer.error_code(), "invalid_metadata", "51 keys in all");

    let other = app.key_for("tenant-b", "media");
    let answer = app
        .send_as(
            &other,
            Method::PATCH,
            &format!("/v1/media/{}", ids[0]),
            Some(&patch("1")),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}
