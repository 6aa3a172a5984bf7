//! Keys' life-cycle, by `kiln-api keys` and by `/v1/admin/keys`: list, revoke (sessions end,
//! requests fail within KILN_AUTH_CACHE_SECS), rotate with and without an overlap.

use std::time::Duration;

use kiln_tests::{Answer, Options, TestApp, run, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn app() -> TestApp {
    spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("KILN_AUTH_CACHE_SECS", "1")
    })
    .await
}

fn cli(app: &TestApp, args: &[&str]) -> String {
    let output = run("kiln-api", args, app.env()).expect("runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(&app.key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.json().await.unwrap_or_default(),
    }
}

/// Polls until `key` is refused with 401 (the key cache lives one second here).
async fn wait_until_refused(app: &TestApp, key: &str) {
    for _ in 0..300 {
        let answer = app.get_as(Some(key), "/v1/admin/keys").await;
        if answer.status == StatusCode::UNAUTHORIZED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a revoked key still works");
}

/// The id of `tenant`'s oldest key.
async fn key_id(app: &TestApp, tenant: &str) -> String {
    let listed = send(
        app,
        reqwest::Method::GET,
        &format!("/v1/admin/keys?tenant={tenant}"),
        None,
    )
    .await;
    listed.body["keys"][0]["id"]
        .as_str()
        .expect("a key id")
        .to_owned()
}

#[tokio::test]
async fn the_cli_lists_revokes_and_rotates_keys() {
    let app = app().await;
    let key = app.key_for("tenant-b", "media,email");
    // Used once, so "last used" is set.
    assert_eq!(
        app.get_as(Some(&key), "/v1/media/x").await.status,
        StatusCode::NOT_FOUND
    );
    let listed = cli(&app, &["keys", "list", "--tenant", "tenant-b"]);
    let line = listed.lines().next().expect("a line");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 7, "{line}");
    let id = fields[0].to_owned();
    assert_eq!(&fields[1..4], ["tenant-b", "tenant-b", "media,email"]);
    assert_eq!(fields[6], "-", "not revoked: {line}");
    for _ in 0..300 {
        let listed = cli(&app, &["keys", "list", "--tenant", "tenant-b"]);
        if listed.split('\t').nth(5) != Some("-") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = cli(&app, &["keys", "list", "--tenant", "tenant-b"]);
    assert_ne!(
        listed.split('\t').nth(5),
        Some("-"),
        "last used is set: {listed}"
    );

    // Rotation without overlap: the new key works, the old one stops.
    let rotated = cli(&app, &["keys", "rotate", &id]);
    let new_key = rotated
        .lines()
        .last()
        .expect("the new key")
        .trim()
        .to_owned();
    assert!(new_key.starts_with("kiln_"));
    assert_eq!(
        app.get_as(Some(&new_key), "/v1/media/x").await.status,
        StatusCode::NOT_FOUND
    );
    wait_until_refused(&app, &key).await;
    let listed = cli(&app, &["keys", "list", "--tenant", "tenant-b"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");

    // Revocation.
    let new_id = listed
        .lines()
        .nth(1)
        .expect("second")
        .split('\t')
        .next()
        .expect("id");
    cli(&app, &["keys", "revoke", new_id]);
    wait_until_refused(&app, &new_key).await;
    // Another admin key of the harness still works, everything else was untouched.
    assert_eq!(app.get("/v1/admin/keys").await.status, StatusCode::OK);
}

#[tokio::test]
async fn admins_manage_keys_over_http_and_a_rotation_may_overlap() {
    let app = app().await;
    let created = send(
        &app,
        reqwest::Method::POST,
        "/v1/admin/keys",
        Some(json!({"name": "tenant-b", "scopes": ["media"]})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let key = created.body["key"]
        .as_str()
        .expect("the key, once")
        .to_owned();
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body["tenant"], "tenant-b");
    assert!(created.body.get("key_hash").is_none());

    // The name is a tenant now: a second one is refused unless the tenant is named.
    let again = send(
        &app,
        reqwest::Method::POST,
        "/v1/admin/keys",
        Some(json!({"name": "tenant-b", "scopes": ["media"]})),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "tenant_exists");
    let bad = send(
        &app,
        reqwest::Method::POST,
        "/v1/admin/keys",
        Some(json!({"name": "x", "scopes": ["root"]})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.error_code(), "invalid_key");

    let listed = send(
        &app,
        reqwest::Method::GET,
        "/v1/admin/keys?tenant=tenant-b",
        None,
    )
    .await;
    let keys = listed.body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("key").is_none(), "a list never shows a key");

    // Rotation with an overlap: both keys work, the old one until its revocation time.
    let rotated = send(
        &app,
        reqwest::Method::POST,
        &format!("/v1/admin/keys/{id}/rotate"),
        Some(json!({"overlap_secs": 3600})),
    )
    .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let new_key = rotated.body["key"].as_str().expect("new key").to_owned();
    let new_id = rotated.body["id"].as_str().expect("new id").to_owned();
    assert_eq!(rotated.body["replaced"]["replaced_by"], new_id.as_str());
    assert!(rotated.body["replaced"]["revoked_at"].is_string());
    assert_eq!(
        app.get_as(Some(&key), "/v1/media/x").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get_as(Some(&new_key), "/v1/media/x").await.status,
        StatusCode::NOT_FOUND
    );

    // Revoking ends the overlap at once.
    let revoked = send(
        &app,
        reqwest::Method::POST,
        &format!("/v1/admin/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    wait_until_refused(&app, &key).await;
    assert_eq!(
        app.get_as(Some(&new_key), "/v1/media/x").await.status,
        StatusCode::NOT_FOUND
    );

    // An overlap that runs out ends the old key by itself.
    let short = app.key_for("tenant-c", "media");
    let short_id = key_id(&app, "tenant-c").await;
    let rotated = send(
        &app,
        reqwest::Method::POST,
        &format!("/v1/admin/keys/{short_id}/rotate"),
        Some(json!({"overlap_secs": 1})),
    )
    .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let successor = rotated.body["key"].as_str().expect("new key").to_owned();
    wait_until_refused(&app, &short).await;
    assert_eq!(
        app.get_as(Some(&successor), "/v1/media/x").await.status,
        StatusCode::NOT_FOUND
    );

    // Control characters (a NUL above all) are refused, not a 500.
    for body in [
        json!({"name": "bad\u{0}name", "scopes": ["media"]}),
        json!({"name": "fine", "tenant": "bad\u{0}tenant", "scopes": ["media"]}),
    ] {
        let answer = send(&app, reqwest::Method::POST, "/v1/admin/keys", Some(body)).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer.error_code(), "invalid_key");
    }
    let answer = send(
        &app,
        reqwest::Method::GET,
        "/v1/admin/keys?tenant=a%00b",
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["keys"], json!([]));

    let missing = uuid::Uuid::now_v7();
    let answer = send(
        &app,
        reqwest::Method::POST,
        &format!("/v1/admin/keys/{missing}/revoke"),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    // A key cannot revoke itself over HTTP, so a client cannot lock itself out by mistake.
    let own = send(
        &app,
        reqwest::Method::GET,
        "/v1/admin/keys?tenant=tenant-a",
        None,
    )
    .await;
    let own_id = own.body["keys"][0]["id"]
        .as_str()
        .expect("own id")
        .to_owned();
    let answer = send(
        &app,
        reqwest::Method::POST,
        &format!("/v1/admin/keys/{own_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.error_code(), "own_key");
    // Without the admin scope, none of it.
    let media_only = app.key_for("tenant-a", "media");
    let answer = app.get_as(Some(&media_only), "/v1/admin/keys").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn revoking_a_key_ends_its_dashboard_sessions() {
    let app = app().await;
    let admin = app.key_for("ops", "admin");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = client
        .post(format!("{}/admin/login", app.address))
        .form(&[("key", admin.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("cookie")
        .to_owned();
    let data = |cookie: String| {
        client
            .get(format!("{}/admin/data", app.address))
            .header(reqwest::header::COOKIE, cookie)
            .send()
    };
    assert_eq!(
        data(cookie.clone()).await.expect("data").status(),
        StatusCode::OK
    );
    let listed = cli(&app, &["keys", "list", "--tenant", "ops"]);
    let id = listed.split('\t').next().expect("id");
    cli(&app, &["keys", "revoke", id]);
    let after = data(cookie).await.expect("data");
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}
