//! Private instances of the services, started by one fault test on their own ports and data
//! directories, so stopping them disturbs neither the shared services nor other tests.
//!
//! They run as the services' own users when the tests run as root (as in CI): Postgres refuses
//! to run as root, and RabbitMQ's tools need the `rabbitmq` user's Erlang cookie.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use uuid::Uuid;

/// The ports a private instance may take: below Linux's ephemeral range (32768–60999), so no
/// outgoing connection of a parallel test can be handed the port between our check and the
/// server's bind, or while a stopped server is down (a CI run lost a Postgres start to that).
const PRIVATE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Ports [`free_port`] has handed out in this process.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A port free now, picked at random from [`PRIVATE_PORTS`].
pub fn free_port() -> u16 {
    let span = u32::from(PRIVATE_PORTS.end - PRIVATE_PORTS.start);
    for _ in 0..1000 {
        let random = u32::from_le_bytes(Uuid::new_v4().as_bytes()[..4].try_into().expect("4"));
        let port = PRIVATE_PORTS.start + u16::try_from(random % span).expect("in range");
        // Never the same port twice in one test process: a test that asks for several (one
        // per private service, or one nothing may answer at) must get distinct ones even
        // before the first is bound (a CI run once pointed a "dead" URL at its own Postgres).
        let fresh = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port);
        if fresh && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PRIVATE_PORTS:?}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as `user` when the tests are root, else as the current user.
fn command_as(user: &str, program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn chown(user: &str, path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", user])
            .arg(path)
            .status()
            .expect("chown runs");
        assert!(status.success(), "chown {user} {}", path.display());
    }
}

fn check(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

async fn wait_for_port(port: u16, up: bool, what: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let open = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        if open == up {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{what} on port {port} did not come {}",
                if up { "up" } else { "down" }
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private `redis-server`.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.resume().await?;
        Ok(redis)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        wait_for_port(self.port, false, "redis").await
    }

    /// Starts it again on the same port.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        wait_for_port(self.port, true, "redis").await
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A private Postgres cluster (`initdb` + `pg_ctl`) with trust auth for user `postgres`.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bindir: PathBuf,
}

impl PrivatePostgres {
    /// Initialises and starts a cluster on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let bindir = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .context("pg_config (postgresql) is installed")?;
        let bindir = PathBuf::from(String::from_utf8_lossy(&bindir.stdout).trim());
        let dir = tempfile::Builder::new().prefix("kiln-pg-").tempdir()?;
        chown("postgres", dir.path());
        let mut postgres = Self {
            port: free_port(),
            dir,
            bindir,
        };
        check(
            command_as("postgres", &postgres.tool("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(postgres.data()),
            "initdb",
        )?;
        // A port another process took between the pick and the bind fails the start: try
        // another port (restarts keep theirs, which is why the ports are non-ephemeral).
        for attempt in 1.. {
            match postgres.resume().await {
                Ok(()) => break,
                Err(error) if attempt < 3 => {
                    eprintln!("private postgres on port {}: {error:#}", postgres.port);
                    postgres.port = free_port();
                }
                Err(error) => return Err(error),
            }
        }
        Ok(postgres)
    }

    fn tool(&self, name: &str) -> String {
        self.bindir.join(name).display().to_string()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server URL (append `/<database>`).
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub async fn stop(&self) -> anyhow::Result<()> {
        check(
            command_as("postgres", &self.tool("pg_ctl"))
                .args(["-m", "fast", "-w", "stop", "-D"])
                .arg(self.data()),
            "pg_ctl stop",
        )?;
        wait_for_port(self.port, false, "postgres").await
    }

    /// Starts the server again on the same port and data.
    pub async fn resume(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        check(
            command_as("postgres", &self.tool("pg_ctl"))
                .args(["-w", "-o", &options, "-l"])
                .arg(&log)
                .arg("start")
                .arg("-D")
                .arg(self.data()),
            "pg_ctl start",
        )
        .with_context(|| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            format!(
                "its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })?;
        wait_for_port(self.port, true, "postgres").await
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        command_as("postgres", &self.tool("pg_ctl"))
            .args(["-m", "immediate", "stop", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok();
    }
}

/// A private RabbitMQ node (its own name, ports and data directory, no plugins).
pub struct PrivateRabbit {
    pub port: u16,
    node: String,
    dir: tempfile::TempDir,
}

const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

impl PrivateRabbit {
    /// Starts a node on free ports and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("kiln-rabbit-").tempdir()?;
        let port = free_port();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n")?;
        // Its own config file: the system one names the shared node's listener.
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )?;
        chown("rabbitmq", dir.path());
        let rabbit = Self {
            port,
            node: format!("{}@localhost", crate::unique_name()),
            dir,
        };
        let mut server = rabbit.tool("rabbitmq-server");
        server
            .arg("-detached")
            .env("RABBITMQ_NODE_PORT", rabbit.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", rabbit.dir.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", rabbit.dir.path().join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                rabbit.dir.path().join("enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", rabbit.dir.path().join("pid"))
            .env(
                "RABBITMQ_CONFIG_FILE",
                rabbit.dir.path().join("rabbitmq.conf"),
            );
        check(&mut server, "rabbitmq-server -detached")?;
        // `-detached` returns before the node registers; poll until it has booted.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let booted = check(
                rabbit.ctl().args(["await_startup", "--timeout", "60"]),
                "rabbitmqctl await_startup",
            );
            match booted {
                Ok(()) => break,
                Err(error) if tokio::time::Instant::now() > deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        wait_for_port(rabbit.port, true, "rabbitmq").await?;
        Ok(rabbit)
    }

    /// One of RabbitMQ's scripts, as the `rabbitmq` user (whose home holds the Erlang cookie),
    /// aimed at this node.
    fn tool(&self, name: &str) -> Command {
        let mut command = command_as("rabbitmq", &format!("{RABBIT_BIN}/{name}"));
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("HOME", "/var/lib/rabbitmq");
        command
    }

    fn ctl(&self) -> Command {
        let mut command = self.tool("rabbitmqctl");
        command.arg("-n").arg(&self.node);
        command
    }

    /// The AMQP URL of this node.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker application (connections drop, the port closes; data stays).
    pub async fn stop(&self) -> anyhow::Result<()> {
        check(self.ctl().arg("stop_app"), "rabbitmqctl stop_app")?;
        wait_for_port(self.port, false, "rabbitmq").await
    }

    /// Closes every client connection, as a broker restart or a network cut would.
    pub async fn close_all_connections(&self) -> anyhow::Result<()> {
        check(
            self.ctl()
                .args(["close_all_connections", "kiln fault test"]),
            "rabbitmqctl close_all_connections",
        )
    }

    /// Starts the broker application again.
    pub async fn resume(&self) -> anyhow::Result<()> {
        check(self.ctl().arg("start_app"), "rabbitmqctl start_app")?;
        wait_for_port(self.port, true, "rabbitmq").await
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.ctl()
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok();
        // `stop` returns before the VM has exited; let it finish writing before the data
        // directory is removed.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
