//! Private slices of the shared services for one test, removed on drop.

use std::{collections::HashMap, path::PathBuf};

use anyhow::Context;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::unique_name;

fn postgres_server() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The local Redis (or `TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The local RabbitMQ (or `TEST_AMQP_URL`).
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The retry ladder every test app uses: short, so retries happen within a test.
pub const TEST_RETRY_DELAYS: &str = "300ms,1s";

/// `KILN_DELIVERY_LIMIT`'s default.
const DEFAULT_DELIVERY_LIMIT: u32 = 20;

fn test_retry_delays() -> Vec<std::time::Duration> {
    kiln_core::config::parse_delays(TEST_RETRY_DELAYS).expect("valid test ladder")
}

/// One test's database, namespace (queues and Redis keys) and storage directory.
pub struct Services {
    /// Database name, namespace and Redis prefix alike.
    pub name: String,
    /// The Postgres server holding the database (shared, or a test's private one).
    postgres_server: String,
    pub database_url: String,
    pub storage: tempfile::TempDir,
    /// `KILN_DELIVERY_LIMIT` of the processes started on these services: it names the queues.
    pub delivery_limit: u32,
}

impl Services {
    /// Creates an empty database (on `postgres`, or the shared server) and a storage directory.
    pub async fn create(postgres: Option<&str>) -> anyhow::Result<Self> {
        let name = unique_name();
        let postgres_server = postgres.map_or_else(postgres_server, str::to_owned);
        let mut admin = PgConnection::connect(&format!("{postgres_server}/postgres"))
            .await
            .context("connecting to Postgres (is it running?)")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        admin.close().await.ok();
        Ok(Self {
            database_url: format!("{postgres_server}/{name}"),
            postgres_server,
            storage: tempfile::Builder::new().prefix("kiln-test-").tempdir()?,
            name,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
        })
    }

    /// The environment that points Kiln at these resources.
    pub fn env(&self) -> HashMap<String, String> {
        HashMap::from([
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("REDIS_URL".into(), redis_url()),
            ("AMQP_URL".into(), amqp_url()),
            ("KILN_NAMESPACE".into(), self.name.clone()),
            ("KILN_RETRY_DELAYS".into(), TEST_RETRY_DELAYS.into()),
            (
                "KILN_STORAGE_URL".into(),
                self.storage.path().display().to_string(),
            ),
        ])
    }

    /// The broker names of these services' processes.
    pub fn topology(&self) -> kiln_core::queue::Topology {
        kiln_core::queue::Topology::new(&self.name, &test_retry_delays(), self.delivery_limit)
    }

    /// A pool on this test's database.
    pub async fn db(&self) -> PgPool {
        PgPool::connect(&self.database_url)
            .await
            .expect("test database")
    }

    /// A Redis connection.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// Files under the storage directory, relative to it.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else if let Ok(relative) = path.strip_prefix(root) {
                    out.push(relative.to_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.storage.path(), self.storage.path(), &mut out);
        out.sort();
        out
    }

    async fn cleanup(
        name: String,
        postgres_server: String,
        delivery_limit: u32,
    ) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&format!("{postgres_server}/postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;

        let topology = kiln_core::queue::Topology::new(&name, &test_retry_delays(), delivery_limit);
        let connection = lapin::Connection::connect(&amqp_url(), Default::default()).await?;
        let channel = connection.create_channel().await?;
        for queue in topology.all_queues() {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in topology.all_exchanges() {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        connection.close(200, "test cleanup".into()).await.ok();

        let mut redis = redis::Client::open(redis_url())?
            .get_multiplexed_async_connection()
            .await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{name}:*"))
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut redis)
                .await?;
        }
        Ok(())
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let name = self.name.clone();
        let postgres_server = self.postgres_server.clone();
        let delivery_limit = self.delivery_limit;
        // Drop runs inside the test's runtime, which cannot block on async work: clean up on a
        // thread with its own small runtime.
        let cleaned = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime")
                .block_on(Self::cleanup(name, postgres_server, delivery_limit))
        })
        .join();
        match cleaned {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: test cleanup of {} failed: {error:#}", self.name),
            Err(_) => eprintln!("warning: test cleanup of {} panicked", self.name),
        }
    }
}
