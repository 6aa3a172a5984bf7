//! The one way Kiln reads through its cache: Redis first, Postgres on a miss.
//!
//! - A hit returns the cached JSON; a miss runs the loader, stores its result with a TTL and
//!   returns it. Absent rows (`None`) are not cached, so a just-created row is seen at once.
//! - Writers update Postgres, commit, then [`Cache::invalidate`] the key.
//! - Concurrent misses for one key in one process share a single load.
//! - Redis errors are logged and counted, and the read falls through to the loader: with Redis
//!   down Kiln is slower, not broken. Short timeouts keep a dead Redis from stalling requests.
//!
//! Known limit of cache-aside: a read that loaded a row just before a concurrent write commits
//! may store the old value after the writer's delete. The TTL bounds how long that lasts.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{
    AsyncCommands,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::OnceCell;

/// A shared slot where concurrent misses for one key wait for one loader.
type Flight = Arc<OnceCell<Option<Vec<u8>>>>;

/// Cache-aside over Redis; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    redis: ConnectionManager,
    namespace: String,
    ttl: Duration,
    in_flight: Arc<Mutex<HashMap<String, Flight>>>,
}

/// How long one Redis command may take before the cache is skipped for that read.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

impl Cache {
    /// Prepares a cache; Redis is connected lazily, so a process starts with Redis down.
    pub fn new(url: &SecretString, namespace: &str, ttl: Duration) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            redis: ConnectionManager::new_lazy_with_config(client, config)?,
            namespace: namespace.to_owned(),
            ttl,
            in_flight: Arc::default(),
        })
    }

    /// The Redis key of an entity: `<namespace>:<kind>:<id>`.
    pub fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}:{kind}:{id}", self.namespace)
    }

    /// Returns the cached value of `key`, or loads it, caches it and returns it.
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, load: F) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        if let Some(bytes) = self.read(key).await {
            match serde_json::from_slice(&bytes) {
                Ok(value) => {
                    metrics::counter!("kiln_cache_lookups_total", "outcome" => "hit").increment(1);
                    return Ok(Some(value));
                }
                // An entry written by another version: treat as a miss and overwrite it.
                Err(error) => tracing::warn!(key, %error, "undecodable cache entry"),
            }
        }
        metrics::counter!("kiln_cache_lookups_total", "outcome" => "miss").increment(1);

        let flight = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight.entry(key.to_owned()).or_default().clone()
        };
        let loaded = flight
            .get_or_try_init(|| async {
                let value = load().await?;
                let bytes = value
                    .as_ref()
                    .map(|v| serde_json::to_vec(v).expect("cached values serialize"));
                if let Some(bytes) = &bytes {
                    self.write(key, bytes).await;
                }
                Ok(bytes)
            })
            .await;
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if in_flight.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                in_flight.remove(key);
            }
        }
        match loaded? {
            Some(bytes) => Ok(Some(
                serde_json::from_slice(bytes).expect("bytes were serialized from T"),
            )),
            None => Ok(None),
        }
    }

    /// Drops `key` after a committed write, so the next read loads fresh data.
    pub async fn invalidate(&self, key: &str) {
        let mut redis = self.redis.clone();
        let deleted: Result<(), _> = with_timeout(redis.del(key)).await;
        if let Err(error) = deleted {
            // The TTL still bounds staleness; the error is counted for operators.
            count_error("del", &error);
        }
    }

    /// Whether Redis answers a PING (for readiness checks).
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        with_timeout(redis::cmd("PING").query_async::<String>(&mut redis))
            .await
            .map(|_| ())
    }

    async fn read(&self, key: &str) -> Option<Vec<u8>> {
        let mut redis = self.redis.clone();
        match with_timeout(redis.get::<_, Option<Vec<u8>>>(key)).await {
            Ok(value) => value,
            Err(error) => {
                count_error("get", &error);
                None
            }
        }
    }

    async fn write(&self, key: &str, bytes: &[u8]) {
        let mut redis = self.redis.clone();
        let stored: Result<(), _> =
            with_timeout(redis.set_ex(key, bytes, self.ttl.as_secs().max(1))).await;
        if let Err(error) = stored {
            count_error("set", &error);
        }
    }
}

async fn with_timeout<T>(
    command: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(REDIS_TIMEOUT * 2, command)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "redis command timed out",
            )))
        })
}

fn count_error(op: &'static str, error: &redis::RedisError) {
    metrics::counter!("kiln_cache_errors_total", "op" => op).increment(1);
    tracing::warn!(op, %error, "redis unavailable; reading from postgres");
}
