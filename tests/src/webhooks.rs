//! A webhook receiver for the tests (`tests/support/webhook_receiver.py`): it verifies every
//! delivery with the Standard Webhooks reference library from PyPI (`standardwebhooks`, which
//! Kiln did not write), logs it, and answers as the test scripts.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A running receiver.
pub struct Receiver {
    pub port: u16,
    child: Child,
    client: reqwest::Client,
}

impl Receiver {
    /// Starts one on a free port (`KILN_TEST_PYTHON`, or `python3`, with `standardwebhooks`).
    pub fn start() -> anyhow::Result<Self> {
        let port = crate::private::free_port();
        let python = std::env::var("KILN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/webhook_receiver.py");
        let mut child = Command::new(&python)
            .arg(script)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("{python} with standardwebhooks must be installed"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!(
                "the webhook receiver did not start (is standardwebhooks installed for {python}?)"
            );
        }
        Ok(Self {
            port,
            child,
            client: reqwest::Client::new(),
        })
    }

    /// A URL on it, by 127.0.0.1.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn control(&self, what: &str, body: Value) {
        let answer = self
            .client
            .post(self.url(&format!("/_control/{what}")))
            .json(&body)
            .send()
            .await
            .expect("the receiver answers");
        assert!(answer.status().is_success(), "control {what}");
    }

    /// The secrets deliveries are verified with (each on its own).
    pub async fn verify_with(&self, secrets: &[&str]) {
        self.control("secrets", json!(secrets)).await;
    }

    /// How the next deliveries are answered, in order (`{"status", "retry_after"?}`); 200 after.
    pub async fn script(&self, answers: Value) {
        self.control("script", answers).await;
    }

    /// Every delivery so far.
    pub async fn log(&self) -> Vec<Value> {
        self.client
            .get(self.url("/_control/log"))
            .send()
            .await
            .expect("the receiver answers")
            .json()
            .await
            .expect("a JSON log")
    }

    /// Waits (two minutes at most) until `count` deliveries came; returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let log = self.log().await;
            if log.len() >= count {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {count} deliveries arrived: {log:?}",
                log.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
