//! A real SMTP server (Python's aiosmtpd, see `tests/support/smtp_server.py`) for email tests.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use serde_json::Value;

/// How the server answers.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// 250 for everything.
    Accept,
    /// 451 for the first `n` messages, then 250.
    TempFail(u32),
    /// 550 for everything.
    Reject,
}

/// A running SMTP server and the messages it accepted.
pub struct SmtpServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts one on a free port (`python3` with aiosmtpd, or `KILN_TEST_PYTHON`).
    pub fn start(mode: Mode) -> anyhow::Result<Self> {
        let port = crate::private::free_port();
        let dir = tempfile::Builder::new().prefix("kiln-smtp-").tempdir()?;
        let python = std::env::var("KILN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/smtp_server.py");
        let (mode, fail) = match mode {
            Mode::Accept => ("accept", 0),
            Mode::TempFail(n) => ("tempfail", n),
            Mode::Reject => ("reject", 0),
        };
        let mut child = Command::new(&python)
            .arg(script)
            .args([
                "--port",
                &port.to_string(),
                "--mode",
                mode,
                "--fail",
                &fail.to_string(),
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("{python} with aiosmtpd must be installed"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the SMTP server did not start (is aiosmtpd installed for {python}?)");
        }
        Ok(Self { port, child, dir })
    }

    /// The URL Kiln is configured with.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The accepted messages so far: `{mail_from, rcpt_tos, data}`.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
            .iter()
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    }

    /// Waits (up to a minute) for `count` accepted messages.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {count} messages arrived",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
