//! The OpenAPI document is the contract: schemathesis (PyPI, installed by `.ci/run`) runs every
//! operation against a live kiln-api, with positive and negative data, and checks each answer
//! against the document: no server error, documented status codes, content types, headers and
//! response schemas, negative data rejected, unauthenticated requests refused. Not the response
//! time (that is the benchmarks'), and not "valid data is accepted": business rules refuse
//! some (random bytes are not an image, a random id names no key).

use std::process::Command;

use kiln_tests::{Options, spawn_app_with};
use reqwest::StatusCode;

/// The generator's seed, so a failure can be replayed: `.ci/run` sets it, and says so.
const DEFAULT_SEED: &str = "20261202";
/// Examples per operation and phase unless `KILN_SCHEMATHESIS_MAX_EXAMPLES` says otherwise.
const DEFAULT_MAX_EXAMPLES: &str = "40";

#[tokio::test]
async fn the_document_describes_every_route_and_is_served_with_its_reference_page() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
    })
    .await;
    let document = app.get_as(None, "/v1/openapi.json").await;
    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(document.body["openapi"], "3.1.0");
    let paths = document.body["paths"].as_object().expect("paths");
    for path in [
        "/healthz",
        "/readyz",
        "/v1/media",
        "/v1/media/{id}",
        "/v1/media/{id}/variants/{file}",
        "/v1/jobs/{id}",
        "/v1/emails",
        "/v1/usage",
        "/v1/admin/jobs",
        "/v1/admin/jobs/{id}",
        "/v1/admin/jobs/{id}/retry",
        "/v1/admin/jobs/retry",
        "/v1/admin/jobs/discard",
        "/v1/admin/queues",
        "/v1/admin/backups",
        "/v1/admin/schedules",
        "/v1/admin/keys",
        "/v1/admin/keys/{id}/revoke",
        "/v1/admin/keys/{id}/rotate",
        "/v1/admin/usage",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    let page = app
        .client
        .get(format!("{}/docs/", app.address))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page loads nothing from elsewhere: {html}"
    );
}

#[tokio::test]
async fn schemathesis_finds_every_answer_as_documented() {
    let Some(schemathesis) = schemathesis() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the contract test: .ci/run installs schemathesis"
        );
        eprintln!("skipped: schemathesis is not installed (KILN_SCHEMATHESIS)");
        return;
    };
    let app = spawn_app_with(Options {
        without_worker: true,
        // Volume, not limits, is what this run needs.
        ..Options::default()
            .env("KILN_RATE_LIMIT", "0")
            .env("KILN_AUTH_FAILURE_LIMIT", "0")
            .env("KILN_EMAIL_DAILY_LIMIT", "0")
    })
    .await;
    let seed = std::env::var("KILN_SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    let examples = std::env::var("KILN_SCHEMATHESIS_MAX_EXAMPLES")
        .unwrap_or_else(|_| DEFAULT_MAX_EXAMPLES.into());
    let report = tempfile::tempdir().expect("report dir");
    let output = Command::new(schemathesis)
        // Its example database (`.schemathesis/`) lands in the working directory: a fresh one
        // each run keeps the run a function of the seed alone, and the work tree clean.
        .current_dir(report.path())
        .arg("run")
        .arg(format!("{}/v1/openapi.json", app.address))
        .args(["--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed])
        .args(["--workers", "2"])
        .args(["--request-timeout", "15"])
        .args(["--no-color"])
        .arg("--report-dir")
        .arg(report.path())
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", app.key))
        .output()
        .expect("schemathesis runs");
    let said = String::from_utf8_lossy(&output.stdout);
    eprintln!("{said}");
    assert!(
        output.status.success(),
        "schemathesis (seed {seed}) found answers that break the document:\n{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The schemathesis command: `KILN_SCHEMATHESIS`, or the test venv's.
fn schemathesis() -> Option<String> {
    if let Ok(path) = std::env::var("KILN_SCHEMATHESIS") {
        return Some(path);
    }
    let home = std::env::var("HOME").ok()?;
    let venv = format!("{home}/.cache/kiln-venv/bin/schemathesis");
    std::path::Path::new(&venv).exists().then_some(venv)
}
