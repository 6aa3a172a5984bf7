//! `scripts/run-local` from zero, as a new user would run it on a machine where none of
//! Postgres, Redis and RabbitMQ answers at its URL: it starts private ones under var/, writes
//! their URLs to var/run-local.env, and ends with an API that takes an upload and serves its
//! variants; a second run reuses them; `run-local stop` stops them.

use std::{collections::HashMap, os::unix::fs::PermissionsExt, process::Stdio, time::Duration};

use kiln_tests::{images, private::free_port};
use reqwest::StatusCode;
use tokio::process::{Child, Command};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

struct Setup {
    var: tempfile::TempDir,
    ports: HashMap<&'static str, String>,
    api: String,
}

impl Setup {
    fn new() -> Self {
        let var = tempfile::Builder::new()
            .prefix("kiln-run-local-")
            .tempdir()
            .expect("temp dir");
        // The services' own users (Postgres, RabbitMQ) must reach their directories in it.
        std::fs::set_permissions(var.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let ports = HashMap::from([
            ("KILN_LOCAL_POSTGRES_PORT", free_port().to_string()),
            ("KILN_LOCAL_REDIS_PORT", free_port().to_string()),
            ("KILN_LOCAL_RABBITMQ_PORT", free_port().to_string()),
            ("KILN_LOCAL_RABBITMQ_DIST_PORT", free_port().to_string()),
        ]);
        let api = format!("127.0.0.1:{}", free_port());
        Self { var, ports, api }
    }

    fn command(&self, args: &[&str]) -> Command {
        let bin = kiln_tests::binary("kiln-api");
        let mut command = Command::new("bash");
        command
            .arg(format!("{ROOT}/scripts/run-local"))
            .args(args)
            .current_dir(ROOT)
            .env("KILN_VAR_DIR", self.var.path())
            .env("KILN_BIN_DIR", bin.parent().expect("bin dir"))
            .env("KILN_API_ADDR", &self.api)
            .env("KILN_METRICS_ADDR", "127.0.0.1:0")
            .env("KILN_NAMESPACE", kiln_tests::unique_name())
            .env("LOG_FORMAT", "json")
            .envs(&self.ports)
            // Whatever the developer's shell or .env says, the test decides.
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("AMQP_URL")
            .env_remove("KILN_STORAGE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    fn url_env(&self) -> HashMap<String, String> {
        let written = std::fs::read_to_string(self.var.path().join("run-local.env"))
            .expect("run-local.env is written");
        written
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Waits for the API to answer, or for the script to die.
    async fn wait_for_api(&self, script: &mut Child) {
        let client = reqwest::Client::new();
        for _ in 0..1_200 {
            if let Ok(Some(status)) = script.try_wait() {
                panic!("run-local exited with {status}");
            }
            let health = client.get(format!("http://{}/healthz", self.api)).send();
            if health.await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the API never answered");
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // The private services outlive the script by design: stop them with it.
        let bash = format!("{ROOT}/scripts/run-local");
        let mut stop = std::process::Command::new("bash");
        stop.arg(bash)
            .arg("stop")
            .env("KILN_VAR_DIR", self.var.path());
        stop.envs(&self.ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        stop.status().ok();
    }
}

async fn stop(script: Child) -> String {
    let pid = script.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let waited = tokio::time::timeout(Duration::from_secs(60), script.wait_with_output()).await;
    let Ok(output) = waited else {
        // Say which process held on (a CI run once timed out here with nothing to go on):
        // what is still running under this script.
        let left = std::process::Command::new("pgrep")
            .args(["-a", "-P", &pid.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!("run-local did not stop within 60 s of SIGTERM; its children: {left}");
    };
    String::from_utf8_lossy(&output.expect("output").stderr).into_owned()
}

#[tokio::test]
async fn run_local_starts_what_is_missing_and_serves_an_upload() {
    let setup = Setup::new();
    // Nothing answers at these URLs, as on a machine with none of the services running.
    let dead = |scheme: &str| format!("{scheme}127.0.0.1:{}", free_port());
    let mut first = setup
        .command(&[])
        .env(
            "DATABASE_URL",
            format!("{}/kiln", dead("postgres://postgres@")),
        )
        .env("REDIS_URL", dead("redis://"))
        .env("AMQP_URL", format!("{}/%2f", dead("amqp://guest:guest@")))
        .spawn()
        .expect("run-local");
    setup.wait_for_api(&mut first).await;

    let mut env = setup.url_env();
    for url in ["DATABASE_URL", "REDIS_URL", "AMQP_URL"] {
        let port = &setup.ports[match url {
            "DATABASE_URL" => "KILN_LOCAL_POSTGRES_PORT",
            "REDIS_URL" => "KILN_LOCAL_REDIS_PORT",
            _ => "KILN_LOCAL_RABBITMQ_PORT",
        }];
        assert!(env[url].contains(&format!(":{port}")), "{url}: {env:?}");
    }
    // A second terminal makes a key with the written URLs, and the upload is served.
    env.insert("LOG_FORMAT".into(), "json".into());
    let key = kiln_tests::create_key(&env, "me", "media").expect("key");
    let client = reqwest::Client::new();
    let api = format!("http://{}", setup.api);
    let accepted: serde_json::Value = client
        .post(format!("{api}/v1/media"))
        .bearer_auth(&key)
        .body(images::sideways_jpeg(64, 32))
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let mut media = serde_json::Value::Null;
    for _ in 0..600 {
        media = client
            .get(format!("{api}/v1/media/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if media["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(media["status"], "ready", "{media}");
    let variant = media["variants"][0]["url"].as_str().expect("a variant url");
    let download = client
        .get(format!("{api}{variant}"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    let said = stop(first).await;
    assert!(said.contains("initialising a private Postgres"), "{said}");

    // A second run, with nothing set, reuses the private services.
    let mut second = setup.command(&[]).spawn().expect("run-local again");
    setup.wait_for_api(&mut second).await;
    let said = stop(second).await;
    assert!(!said.contains("starting"), "{said}");
}
