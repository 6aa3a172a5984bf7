//! The one way Kiln reads through its cache: Redis first, Postgres on a miss.
//!
//! - A hit returns the cached JSON; a miss runs the loader, stores its result with a TTL and
//!   returns it. Absent rows (`None`) are not cached, so a just-created row is seen at once.
//! - Writers update Postgres, commit, then [`Cache::invalidate`] the key.
//! - Concurrent misses for one key in one process share a single load.
//! - Redis errors are logged and counted, and the read falls through to the loader: with Redis
//!   down Kiln is slower, not broken. Short timeouts keep a dead Redis from stalling requests.
//!
//! Plain cache-aside has a race: a reader loads a row, a writer commits and deletes the key, then
//! the reader stores the row it loaded — stale until the TTL. Kiln closes it with a generation
//! counter per key: the reader notes the generation before loading and stores its value only if
//! no invalidation bumped the generation meanwhile (a compare-and-set in one Lua script).

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
    store_if_current: Arc<redis::Script>,
}

/// Stores `ARGV[2]` at `KEYS[1]` with TTL `ARGV[3]` only if the generation at `KEYS[2]` is still
/// `ARGV[1]` (empty when absent), i.e. no write invalidated the key since the value was loaded.
const STORE_IF_CURRENT: &str = r"
local current = redis.call('GET', KEYS[2]) or ''
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
";

/// How long a generation counter outlives its last invalidation; far longer than any load.
const GENERATION_TTL_SECS: i64 = 86_400;

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
            store_if_current: Arc::new(redis::Script::new(STORE_IF_CURRENT)),
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
        let (cached, generation) = self.read(key).await;
        if let Some(bytes) = cached {
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
                if let (Some(bytes), Some(generation)) = (&bytes, &generation) {
                    self.write(key, generation, bytes).await;
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

    /// Drops `key` after a committed write, so the next read loads fresh data, and bumps its
    /// generation so that a read which loaded the old row cannot store it afterwards.
    pub async fn invalidate(&self, key: &str) {
        // The TTL still bounds staleness; the error is counted for operators (and a writer
        // that must not wait for the TTL retries through `try_invalidate`).
        let _ = self.try_invalidate(key).await;
    }

    /// [`Cache::invalidate`], telling the caller whether Redis took it, so that a change that
    /// must be seen at once (a deletion) can retry until it did.
    pub async fn try_invalidate(&self, key: &str) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        let generation = generation_key(key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(key)
            .ignore()
            .incr(&generation, 1)
            .ignore()
            .expire(&generation, GENERATION_TTL_SECS)
            .ignore();
        let deleted: Result<(), _> = with_timeout(pipe.query_async(&mut redis)).await;
        if let Err(error) = &deleted {
            count_error("del", error);
        }
        deleted
    }

    /// The Redis connection, for other small shared state (the API's limits), to be used
    /// through [`bounded`] so a dead Redis costs no more there than here.
    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// The namespace keys are prefixed with.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether Redis answers a PING (for readiness checks).
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        with_timeout(redis::cmd("PING").query_async::<String>(&mut redis))
            .await
            .map(|_| ())
    }

    /// The cached value and the key's generation (`None` when Redis failed: then nothing
    /// loaded now may be stored, since its freshness cannot be checked).
    async fn read(&self, key: &str) -> (Option<Vec<u8>>, Option<String>) {
        let mut redis = self.redis.clone();
        let keys = [key.to_owned(), generation_key(key)];
        match with_timeout(redis.mget::<_, (Option<Vec<u8>>, Option<String>)>(&keys)).await {
            Ok((value, generation)) => (value, Some(generation.unwrap_or_default())),
            Err(error) => {
                count_error("get", &error);
                (None, None)
            }
        }
    }

    async fn write(&self, key: &str, generation: &str, bytes: &[u8]) {
        let mut redis = self.redis.clone();
        let mut invocation = self.store_if_current.key(key);
        invocation
            .key(generation_key(key))
            .arg(generation)
            .arg(bytes)
            .arg(self.ttl.as_secs().max(1));
        let stored: Result<i64, _> = with_timeout(invocation.invoke_async(&mut redis)).await;
        if let Err(error) = stored {
            count_error("set", &error);
        }
    }
}

fn generation_key(key: &str) -> String {
    format!("{key}:gen")
}

/// Runs a Redis command within the cache's time-out.
pub async fn bounded<T>(
    command: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    with_timeout(command).await
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
