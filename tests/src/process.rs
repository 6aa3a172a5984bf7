//! Running the real binaries and reading their JSON logs.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use serde_json::Value;

/// Where cargo put the workspace's binaries: next to the test executable's `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// Runs a binary to completion.
pub fn run(name: &str, args: &[&str], env: &HashMap<String, String>) -> anyhow::Result<Output> {
    Command::new(binary(name))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .output()
        .with_context(|| format!("running {name}"))
}

/// A running binary whose stdout (JSON log lines) is collected for assertions.
pub struct Process {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `name` with exactly `env` (plus PATH).
    pub fn spawn(name: &str, args: &[&str], env: &HashMap<String, String>) -> anyhow::Result<Self> {
        let mut child = Command::new(binary(name))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let label = name.to_owned();
        // A plain thread drains the pipe so the child never blocks on a full buffer; it ends
        // when the child closes stdout.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if std::env::var_os("KILN_TEST_ECHO").is_some() {
                    eprintln!("[{label}] {line}");
                }
                sink.lock().expect("log buffer").push(line);
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            lines,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().expect("log buffer").clone()
    }

    /// Log lines parsed as JSON.
    pub fn log_events(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (up to 60 s) for a log event whose message is `message`; returns it.
    pub async fn wait_for_log(&self, message: &str) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(event) = self
                .log_events()
                .into_iter()
                .find(|e| e["fields"]["message"] == message)
            {
                return Ok(event);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{} never logged {message:?}; its output:\n{}",
                    self.name,
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for `message` and returns one of its fields as text.
    pub async fn wait_for_field(&self, message: &str, field: &str) -> anyhow::Result<String> {
        let event = self.wait_for_log(message).await?;
        event["fields"][field]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{message:?} has no {field} field: {event}"))
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (up to `limit`) for the process to exit.
    pub async fn wait_for_exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not exit within {limit:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}
