//! The cache-aside read against a real Redis, each test under its own key prefix.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use kiln_core::cache::Cache;
use kiln_tests::unique_name;
use redis::AsyncCommands;
use secrecy::SecretString;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A cache under a fresh namespace; its keys are removed when the guard drops.
struct Prefix {
    cache: Cache,
    namespace: String,
}

impl Prefix {
    fn new() -> Self {
        let namespace = unique_name();
        let cache = Cache::new(
            &SecretString::from(redis_url()),
            &namespace,
            Duration::from_secs(60),
        )
        .expect("cache");
        Self { cache, namespace }
    }

    /// A prefix whose cache has reached Redis. Its connection is made lazily, with short
    /// time-outs, so on a loaded machine the first commands may time out and fall through to
    /// the loader; tests that count loads start from a working connection.
    async fn connected() -> Self {
        let prefix = Self::new();
        let key = prefix.cache.key("warm-up", 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let loads = AtomicUsize::new(0);
            for _ in 0..2 {
                let load = || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(Some(0u8))
                };
                prefix.cache.get_or_load(&key, load).await.expect("warm-up");
            }
            if loads.load(Ordering::SeqCst) == 0 {
                return prefix;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis")
    }

    async fn cleanup(&self) {
        let mut redis = self.raw().await;
        let keys: Vec<String> = redis
            .keys(format!("{}:*", self.namespace))
            .await
            .expect("keys");
        if !keys.is_empty() {
            let _: () = redis.del(keys).await.expect("del");
        }
    }
}

#[tokio::test]
async fn a_miss_loads_once_and_the_next_read_hits() {
    let prefix = Prefix::connected().await;
    let key = prefix.cache.key("thing", 1);
    let loads = AtomicUsize::new(0);
    let load = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(Some("from postgres".to_owned()))
    };

    let first = prefix.cache.get_or_load(&key, load).await.expect("first");
    let second = prefix.cache.get_or_load(&key, load).await.expect("second");

    assert_eq!(first.as_deref(), Some("from postgres"));
    assert_eq!(second, first);
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the second read is served by Redis"
    );
    prefix.cleanup().await;
}

#[tokio::test]
async fn concurrent_misses_for_one_key_share_a_single_load() {
    let prefix = Prefix::connected().await;
    let key = prefix.cache.key("thing", 2);
    let loads = Arc::new(AtomicUsize::new(0));

    let readers = (0..20).map(|_| {
        let cache = prefix.cache.clone();
        let key = key.clone();
        let loads = loads.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(&key, || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // Long enough that every reader's own Redis read is over before it ends.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok::<_, std::convert::Infallible>(Some(42u32))
                })
                .await
        })
    });
    let results = futures::future::join_all(readers).await;

    assert!(
        results
            .into_iter()
            .all(|r| r.expect("joined").expect("loaded") == Some(42))
    );
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    prefix.cleanup().await;
}

#[tokio::test]
async fn a_write_during_a_load_keeps_the_stale_value_out_of_the_cache() {
    let prefix = Prefix::new();
    let key = prefix.cache.key("thing", 3);
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let (write_done_tx, write_done_rx) = tokio::sync::oneshot::channel::<()>();

    let reader = {
        let cache = prefix.cache.clone();
        let key = key.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(&key, || async move {
                    // Read the old row, then let the writer commit and invalidate.
                    loaded_tx.send(()).ok();
                    write_done_rx.await.ok();
                    Ok::<_, std::convert::Infallible>(Some("old".to_owned()))
                })
                .await
        })
    };
    loaded_rx.await.expect("loader ran");
    prefix.cache.invalidate(&key).await;
    write_done_tx.send(()).ok();
    let returned = reader.await.expect("joined").expect("loaded");

    assert_eq!(
        returned.as_deref(),
        Some("old"),
        "the reader still gets what it loaded"
    );
    let mut redis = prefix.raw().await;
    let cached: Option<String> = redis.get(&key).await.expect("get");
    assert_eq!(
        cached, None,
        "the stale value must not be cached after the invalidation"
    );
    let fresh = prefix
        .cache
        .get_or_load(&key, || async {
            Ok::<_, std::convert::Infallible>(Some("new".to_owned()))
        })
        .await
        .expect("fresh");
    assert_eq!(fresh.as_deref(), Some("new"));
    prefix.cleanup().await;
}

#[tokio::test]
async fn with_redis_down_every_read_falls_through_to_the_loader() {
    let cache = Cache::new(
        &SecretString::from("redis://127.0.0.1:1".to_owned()),
        &unique_name(),
        Duration::from_secs(60),
    )
    .expect("a cache is built without connecting");
    let loads = AtomicUsize::new(0);
    for _ in 0..3 {
        let value = cache
            .get_or_load("k", || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(Some(7))
            })
            .await
            .expect("read");
        assert_eq!(value, Some(7));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    cache.invalidate("k").await; // logged and counted, never an error
    assert!(cache.ping().await.is_err());
}

#[tokio::test]
async fn absent_rows_are_not_cached() {
    let prefix = Prefix::new();
    let key = prefix.cache.key("thing", 4);
    let none = prefix
        .cache
        .get_or_load(&key, || async {
            Ok::<Option<String>, std::convert::Infallible>(None)
        })
        .await
        .expect("read");
    assert_eq!(none, None);
    let created = prefix
        .cache
        .get_or_load(&key, || async {
            Ok::<_, std::convert::Infallible>(Some("created".to_owned()))
        })
        .await
        .expect("read");
    assert_eq!(
        created.as_deref(),
        Some("created"),
        "a just-created row is seen at once"
    );
    prefix.cleanup().await;
}
