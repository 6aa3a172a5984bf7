//! Caps on uploads in flight: per process (`KILN_MAX_UPLOADS_IN_FLIGHT`), since each holds a
//! connection, buffers and a staging file; and per tenant across every process
//! (`KILN_TENANT_UPLOADS_IN_FLIGHT`), so one tenant cannot take all of them.
//!
//! A tenant's uploads are leases in a Redis sorted set, scored by expiry: a process that dies
//! mid-upload leaves a lease that lapses within [`LEASE`] rather than a counter that never goes
//! down. A live upload renews its lease; with Redis down only the per-process cap applies.

use std::{sync::Arc, time::Duration};

use kiln_core::cache::{Cache, bounded};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How long a tenant's lease lives without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// What a refused client is told to wait.
const RETRY_AFTER_SECS: u32 = 5;

/// Drops expired leases, then adds lease `ARGV[2]` expiring `ARGV[3]` ms from now if fewer than
/// `ARGV[1]` are live. With `ARGV[1]` = 0 it only renews a lease that exists.
const LEASE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[1])
if cap == 0 then
  local renewed = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return renewed
end
-- A retry of a call whose answer was lost: the lease is there already.
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

#[derive(Clone)]
pub struct UploadSlots {
    local: Option<Arc<Semaphore>>,
    per_tenant: u32,
    cache: Cache,
}

/// Held while an upload is received; released when dropped.
pub struct UploadSlot {
    _local: Option<OwnedSemaphorePermit>,
    _lease: Option<Lease>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        metrics::gauge!("kiln_uploads_in_flight").decrement(1.0);
    }
}

struct Lease {
    cache: Cache,
    key: String,
    token: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        release(self.cache.clone(), self.key.clone(), self.token.clone());
    }
}

/// Removes a lease in the background; one that cannot be removed lapses within [`LEASE`].
fn release(cache: Cache, key: String, token: String) {
    tokio::spawn(async move {
        let mut redis = cache.connection();
        let removed: redis::RedisResult<i64> = bounded(
            redis::cmd("ZREM")
                .arg(&key)
                .arg(&token)
                .query_async(&mut redis),
        )
        .await;
        if let Err(error) = removed {
            // It lapses by itself within LEASE.
            tracing::debug!(%error, "could not release an upload lease");
        }
    });
}

impl UploadSlots {
    pub fn new(limits: &kiln_core::config::Limits, cache: Cache) -> Self {
        let local = (limits.uploads_in_flight > 0)
            .then(|| Arc::new(Semaphore::new(limits.uploads_in_flight as usize)));
        Self {
            local,
            per_tenant: limits.tenant_uploads_in_flight,
            cache,
        }
    }

    /// A slot for one of `tenant`'s uploads, or 429 `too_many_uploads`.
    pub async fn acquire(&self, tenant: &str) -> Result<UploadSlot, ApiError> {
        let local = match &self.local {
            Some(local) => Some(local.clone().try_acquire_owned().map_err(|_| {
                refused("this server is receiving as many uploads as it takes at once")
            })?),
            None => None,
        };
        let lease = match self.per_tenant {
            0 => None,
            cap => self.lease(tenant, cap).await?,
        };
        metrics::gauge!("kiln_uploads_in_flight").increment(1.0);
        Ok(UploadSlot {
            _local: local,
            _lease: lease,
        })
    }

    async fn lease(&self, tenant: &str, cap: u32) -> Result<Option<Lease>, ApiError> {
        let key = format!("{}:uploads:{tenant}", self.cache.namespace());
        let token = uuid::Uuid::new_v4().to_string();
        let mut redis = self.cache.connection();
        let script = redis::Script::new(LEASE_SCRIPT);
        let mut granted = Ok(0);
        // A slow answer under load is tried again before the tenant cap is given up on.
        for _ in 0..3 {
            granted = bounded(
                script
                    .key(&key)
                    .arg(cap)
                    .arg(&token)
                    .arg(millis(LEASE))
                    .invoke_async(&mut redis),
            )
            .await;
            if granted.is_ok() {
                break;
            }
        }
        match granted {
            Ok(1) => {}
            Ok(_) => {
                release(self.cache.clone(), key, token);
                return Err(refused(&format!(
                    "this tenant already has {cap} uploads in flight (KILN_TENANT_UPLOADS_IN_FLIGHT)"
                )));
            }
            Err(error) => {
                // The script may have run and only its answer been lost.
                release(self.cache.clone(), key, token);
                metrics::counter!("kiln_upload_slot_errors_total").increment(1);
                tracing::warn!(%error, "redis unavailable; uploads are capped per process only");
                return Ok(None);
            }
        }
        let renewer = tokio::spawn(renew(self.cache.clone(), key.clone(), token.clone()));
        Ok(Some(Lease {
            cache: self.cache.clone(),
            key,
            token,
            renewer,
        }))
    }
}

/// Keeps a live upload's lease from lapsing.
async fn renew(cache: Cache, key: String, token: String) {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let mut redis = cache.connection();
        let renewed: redis::RedisResult<i64> = bounded(
            redis::Script::new(LEASE_SCRIPT)
                .key(&key)
                .arg(0)
                .arg(&token)
                .arg(millis(LEASE))
                .invoke_async(&mut redis),
        )
        .await;
        if let Err(error) = renewed {
            tracing::debug!(%error, "could not renew an upload lease");
        }
    }
}

fn refused(message: &str) -> ApiError {
    metrics::counter!("kiln_uploads_refused_total").increment(1);
    ApiError::too_many("too_many_uploads", message, RETRY_AFTER_SECS)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
