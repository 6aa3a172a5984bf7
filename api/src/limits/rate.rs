//! Request rate limits shared by every API process, without a Redis round trip per request.
//!
//! Each bucket is a GCRA (the generic cell rate algorithm: one "theoretical arrival time" per
//! bucket, no counters to reset) decided in-process. A sync task sends each process's admitted
//! counts to Redis every [`SYNC_INTERVAL`], in one pipelined round trip, and takes back the
//! shared state of every bucket it uses: so the limit holds across processes to within what
//! they admit in one interval, and the hot path never waits on the network. With Redis down,
//! the in-process buckets go on alone: each process then enforces the limit by itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kiln_core::{cache::Cache, config::Rate};
use tokio::time::Instant;

/// How often admitted counts are exchanged with Redis.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// A bucket untouched this long, and full again, is forgotten.
const IDLE_FORGET: Duration = Duration::from_secs(30);
/// A bucket used within this long learns other processes' use of it at each sync.
const RECENT: Duration = Duration::from_secs(2);

/// Adds `ARGV[1]` cells of `ARGV[2]` µs each to the bucket at `KEYS[1]` (its arrival time in
/// Redis's clock, µs), never letting it run more than `ARGV[3]` µs ahead, and returns how far
/// ahead of now it is: the shared backlog every process applies.
const SYNC_BUCKET: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local add = tonumber(ARGV[1])
if add > 0 then
  tat = math.min(tat + add * tonumber(ARGV[2]), now + tonumber(ARGV[3]))
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
return string.format('%.0f', tat - now)
";

/// The outcome of one check, and what the `RateLimit` headers say about it.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub policy: &'static str,
    pub rate: Rate,
    pub allowed: bool,
    /// Requests that may still be made at once.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// Until the next request would be admitted (zero when one is).
    pub retry_after: Duration,
}

#[derive(Clone)]
pub struct RateLimiter {
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

struct Bucket {
    rate: Rate,
    /// When the bucket will be full again (the GCRA's theoretical arrival time).
    full_at: Instant,
    /// Cells admitted here since the last sync.
    unsent: u32,
    used_at: Instant,
}

impl Bucket {
    fn decide(&self, policy: &'static str, now: Instant) -> (Decision, Instant) {
        let window = self.rate.window();
        let full_at = self.full_at.max(now);
        let next = full_at + self.rate.interval;
        let ahead = next - now;
        let allowed = ahead <= window;
        let interval = self.rate.interval.as_nanos().max(1);
        let headroom = window.saturating_sub(if allowed { ahead } else { full_at - now });
        let decision = Decision {
            policy,
            rate: self.rate,
            allowed,
            remaining: u32::try_from(headroom.as_nanos() / interval).unwrap_or(u32::MAX),
            reset: if allowed { ahead } else { full_at - now },
            retry_after: ahead.saturating_sub(window),
        };
        (decision, next)
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self {
            buckets: Arc::default(),
        }
    }

    /// Takes one request from the bucket `key` (created full) if it has room.
    pub fn take(&self, policy: &'static str, key: String, rate: Rate) -> Decision {
        self.decide(policy, key, rate, true)
    }

    /// Whether the bucket has room, taking nothing: failed authentications are counted only
    /// once they fail, but a client out of room is refused before trying.
    pub fn peek(&self, policy: &'static str, key: String, rate: Rate) -> Decision {
        self.decide(policy, key, rate, false)
    }

    fn decide(&self, policy: &'static str, key: String, rate: Rate, take: bool) -> Decision {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !take && !buckets.contains_key(&key) {
            // A peek makes no bucket: every address that authenticates would get one to sync.
            let fresh = Bucket {
                rate,
                full_at: now,
                unsent: 0,
                used_at: now,
            };
            return fresh.decide(policy, now).0;
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            rate,
            full_at: now,
            unsent: 0,
            used_at: now,
        });
        bucket.rate = rate;
        bucket.used_at = now;
        let (decision, next) = bucket.decide(policy, now);
        if take && decision.allowed {
            bucket.full_at = next;
            bucket.unsent += 1;
        }
        decision
    }

    /// Exchanges counts with Redis every [`SYNC_INTERVAL`] until `cancel` fires.
    pub async fn sync_until(self, cache: Cache, cancel: tokio_util::sync::CancellationToken) {
        let prefix = format!("{}:rate:", cache.namespace());
        // Called by its hash (EVALSHA): the script is loaded once, and again after any failure
        // (a restarted Redis has forgotten it).
        let script = redis::Script::new(SYNC_BUCKET);
        let mut loaded = false;
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => return,
            }
            let synced = async {
                if !loaded {
                    let mut redis = cache.connection();
                    kiln_core::cache::bounded(script.load_async(&mut redis)).await?;
                    loaded = true;
                }
                self.sync_once(&cache, &prefix, script.get_hash()).await
            };
            let synced = synced.await;
            if synced.is_err() {
                loaded = false;
            }
            match synced {
                Ok(()) if failing => {
                    tracing::info!("rate limits are shared through redis again");
                    failing = false;
                }
                Ok(()) => {}
                Err(error) => {
                    metrics::counter!("kiln_rate_limit_sync_errors_total").increment(1);
                    if !failing {
                        tracing::warn!(%error, "redis unavailable; rate limits are per process");
                        failing = true;
                    }
                }
            }
        }
    }

    async fn sync_once(&self, cache: &Cache, prefix: &str, hash: &str) -> redis::RedisResult<()> {
        let batch = self.take_unsent();
        if batch.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, unsent, rate) in &batch {
            pipe.cmd("EVALSHA")
                .arg(hash)
                .arg(1)
                .arg(format!("{prefix}{key}"))
                .arg(unsent)
                .arg(micros(rate.interval))
                .arg(micros(rate.window() * 2));
        }
        let mut redis = cache.connection();
        let backlogs: Result<Vec<String>, _> =
            kiln_core::cache::bounded(pipe.query_async(&mut redis)).await;
        let backlogs = match backlogs {
            Ok(backlogs) => backlogs,
            Err(error) => {
                // Not sent: kept for the next sync, so Redis learns of them once it is back.
                self.restore_unsent(&batch);
                return Err(error);
            }
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for ((key, _, _), backlog) in batch.iter().zip(backlogs) {
            let Some(bucket) = buckets.get_mut(key) else {
                continue;
            };
            let backlog = Duration::from_micros(backlog.parse().unwrap_or(0));
            // What this process admitted since the batch was taken is not in Redis's answer yet.
            let since = bucket.rate.interval * bucket.unsent;
            bucket.full_at = now + backlog + since;
        }
        Ok(())
    }

    /// The buckets to exchange: those with cells admitted since the last sync, and those used
    /// lately (whose use by other processes matters now). Forgets idle, full ones.
    fn take_unsent(&self) -> Vec<(String, u32, Rate)> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.retain(|_, bucket| {
            bucket.unsent > 0 || bucket.full_at > now || now - bucket.used_at < IDLE_FORGET
        });
        buckets
            .iter_mut()
            .filter(|(_, bucket)| bucket.unsent > 0 || now - bucket.used_at < RECENT)
            .map(|(key, bucket)| {
                let unsent = std::mem::take(&mut bucket.unsent);
                (key.clone(), unsent, bucket.rate)
            })
            .collect()
    }

    /// Puts back cells a failed sync did not deliver, but never more than the bucket still
    /// holds: cells that drained meanwhile must not come back as a backlog once Redis does.
    fn restore_unsent(&self, batch: &[(String, u32, Rate)]) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for (key, unsent, _) in batch {
            if let Some(bucket) = buckets.get_mut(key) {
                let interval = bucket.rate.interval.as_nanos().max(1);
                let held = bucket.full_at.saturating_duration_since(now).as_nanos();
                let held = u32::try_from(held.div_ceil(interval)).unwrap_or(u32::MAX);
                bucket.unsent = (bucket.unsent + unsent).min(held);
            }
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_sec: u32, burst: u32) -> Rate {
        Rate {
            interval: Duration::from_secs(1) / per_sec,
            burst,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_admitted_then_the_rate() {
        let limiter = RateLimiter::new();
        let take = || limiter.take("media", "k".into(), rate(10, 5));
        for left in (0..5).rev() {
            let decision = take();
            assert!(decision.allowed);
            assert_eq!(decision.remaining, left);
        }
        let refused = take();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(take().allowed);
        assert!(!take().allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_separate_and_peeking_takes_nothing() {
        let limiter = RateLimiter::new();
        for _ in 0..10 {
            assert!(limiter.peek("auth", "a".into(), rate(1, 1)).allowed);
        }
        assert!(limiter.take("auth", "a".into(), rate(1, 1)).allowed);
        assert!(!limiter.peek("auth", "a".into(), rate(1, 1)).allowed);
        assert!(limiter.take("auth", "b".into(), rate(1, 1)).allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reset_is_when_the_bucket_is_full_again() {
        let limiter = RateLimiter::new();
        let first = limiter.take("media", "k".into(), rate(1, 10));
        assert_eq!(first.reset, Duration::from_secs(1));
        let second = limiter.take("media", "k".into(), rate(1, 10));
        assert_eq!(second.reset, Duration::from_secs(2));
        assert_eq!(second.remaining, 8);
    }
}
