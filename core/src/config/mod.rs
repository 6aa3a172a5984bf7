//! Typed configuration, read once from the environment at start-up.
//!
//! Every variable has a default that works against the local services (see `.env.example`), and
//! a bad value stops the process with an error that names the variable.

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use secrecy::SecretString;

mod browser_uploads;
mod image_output;
mod limits;
mod media_urls;
mod video;
mod webhooks;

pub use browser_uploads::BrowserUploads;
pub use image_output::AvifOutput;
pub use limits::{Limits, Rate, RateLimits, parse_networks, parse_rate};
pub use media_urls::MediaUrls;
pub use video::VideoConfig;
pub use webhooks::Webhooks;

/// A configuration value that could not be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

/// One output size: `thumb:160` (at most 160 wide), `hero:2048x1024:contain` (fits inside
/// the box) or `avatar:256x256:cover` (fills the box, cropped around what is interesting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSpec {
    /// Name used in URLs and rows (`[a-z0-9_-]+`).
    pub name: String,
    /// Target width in pixels.
    pub width: u32,
    /// The box's height, for `contain` and `cover`; `None`: the height follows the width.
    pub height: Option<u32>,
    /// How the image meets the box.
    pub fit: Fit,
}

/// How a variant meets its box. None of them ever upscales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// At most `width` wide, the aspect ratio kept (`name:W`).
    Width,
    /// Inside `width`×`height`, the aspect ratio kept (`name:WxH` or `name:WxH:contain`).
    Contain,
    /// Exactly `width`×`height`, cropped to the most interesting region; a smaller source
    /// gives the largest crop of the box's aspect ratio it holds (`name:WxH:cover`).
    Cover,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log shippers (and the tests, which read it).
    Json,
}

/// Everything Kiln's processes are configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Postgres, the source of truth.
    pub database_url: SecretString,
    /// Redis, a cache only: Kiln keeps working without it.
    pub redis_url: SecretString,
    /// RabbitMQ.
    pub amqp_url: SecretString,
    /// `file:///abs/dir`, a plain path, or `s3://bucket[/prefix]` (credentials from `AWS_*`).
    pub storage_url: String,
    /// SMTP server for email jobs: `smtp://host:port` (add `?tls=required` for STARTTLS),
    /// `smtps://host:port`, with `user:password@` for AUTH.
    pub smtp_url: SecretString,
    /// The `From` of every email Kiln sends.
    pub email_from: String,
    /// A directory of extra email templates (`KILN_EMAIL_TEMPLATES`): `<name>.subject`,
    /// `<name>.txt`, `<name>.html`.
    pub email_templates: Option<std::path::PathBuf>,
    /// The public base URL of the API, for links in notification emails (`KILN_PUBLIC_URL`).
    pub public_url: String,
    /// Where the public API listens.
    pub api_addr: SocketAddr,
    /// How long a client may take to send a request's headers, and how long an idle keep-alive
    /// connection stays open (`KILN_HEADER_TIMEOUT_SECS`).
    pub header_timeout: Duration,
    /// The whole time a request other than an upload may take, body included
    /// (`KILN_REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// Where this process serves `/metrics`; `None` means the process's own default.
    pub metrics_addr: Option<SocketAddr>,
    /// Prefix of exchanges, queues and Redis keys, so deployments and tests can share a broker.
    pub namespace: String,
    /// Variants made for every upload, largest first.
    pub variants: Vec<VariantSpec>,
    /// Uploads larger than this are refused with 413.
    pub max_upload_bytes: u64,
    /// Images whose header claims more pixels than this are refused with 422.
    pub max_pixels: u64,
    /// Jobs running at once per worker process, across the queues without an override of
    /// their own (`KILN_WORKER_CONCURRENCY`).
    pub worker_concurrency: u16,
    /// Queues with a concurrency of their own, not counted against `worker_concurrency`
    /// (`KILN_CONCURRENCY_MEDIA`, `_EMAIL`, `_BACKUP`, `_MAINTENANCE`, `_HTTP`: 16 by default).
    pub queue_concurrency: Vec<(crate::jobs::QueueKind, u16)>,
    /// Threads that decode/resize/encode at once; CPU-bound, so about the core count.
    pub cpu_threads: usize,
    /// JPEG quality of variants, 1–100.
    pub jpeg_quality: u8,
    /// WebP (lossy) quality of variants, 1–100.
    pub webp_quality: u8,
    /// libwebp's effort for variants, 0 (fastest) – 6 (`KILN_WEBP_METHOD`).
    pub webp_method: u8,
    /// AVIF variants too, with these settings (`KILN_FORMATS=jpeg,webp,avif`); off by default.
    pub avif: Option<AvifOutput>,
    /// Video uploads and their transcoding.
    pub video: VideoConfig,
    /// Run pending migrations at start-up.
    pub migrate: bool,
    /// How long a cached read stays in Redis.
    pub cache_ttl: Duration,
    /// How long SIGTERM waits for in-flight jobs before giving up on them.
    pub shutdown_grace: Duration,
    /// Attempts before a job that keeps failing transiently is declared dead
    /// (`KILN_MAX_ATTEMPTS`); see [`Config::max_attempts`] for the per-kind overrides.
    pub max_attempts: i32,
    /// Per-kind overrides: `KILN_MAX_ATTEMPTS_MEDIA`, `_EMAIL`, `_BACKUP`, `_CLEANUP`.
    pub max_attempts_by_kind: Vec<(crate::jobs::JobKind, i32)>,
    /// The retry ladder: attempt n waits `retry_delays[n-1]` (the last repeats) in a delay queue.
    pub retry_delays: Vec<Duration>,
    /// How often the broker may hand out one message before it gives up on it and dead-letters
    /// it (`KILN_DELIVERY_LIMIT`, the work queues' `x-delivery-limit`). Every return counts on
    /// RabbitMQ 3.x: a worker that crashed or lost its connection while holding it.
    pub delivery_limit: u32,
    /// How long a queue that no scheduler declares any more is kept before the scheduler drains
    /// and deletes it (`KILN_RETIRE_AFTER`): long enough for a rolling change of
    /// `KILN_DELIVERY_LIMIT` or `KILN_RETRY_DELAYS` to reach every scheduler.
    pub retire_after: Duration,
    /// How long a live job may go without moving before the rescuer republishes it
    /// (`KILN_RESCUE_AFTER`): a queued job published this long ago and not started, a failed
    /// job whose retry is this overdue. Also the least time between two rescues of one job.
    pub rescue_after: Duration,
    /// A worker whose heartbeat is older than this has lost its running jobs
    /// (`KILN_HEARTBEAT_TIMEOUT`); it heartbeats six times as often.
    pub heartbeat_timeout: Duration,
    /// Succeeded jobs are deleted this long after they finished (`KILN_RETAIN_SUCCEEDED`).
    pub retain_succeeded: Duration,
    /// Dead jobs are deleted this long after they died (`KILN_RETAIN_DEAD`).
    pub retain_dead: Duration,
    /// The database the `backup` job dumps (`KILN_BACKUP_DATABASE_URL`, default `DATABASE_URL`).
    pub backup_database_url: SecretString,
    /// Retention: the newest N backups are always kept (`KILN_BACKUP_KEEP_LAST`).
    pub backup_keep_last: usize,
    /// Retention: plus the newest backup of each of the last D days (`KILN_BACKUP_KEEP_DAYS`).
    pub backup_keep_days: u32,
    /// How long the API trusts a key it looked up (`KILN_AUTH_CACHE_SECS`, 0 = always ask
    /// Postgres): a revoked key stops working within this long.
    pub auth_cache_ttl: Duration,
    /// The cleanup job leaves alone files younger than this (`KILN_CLEANUP_GRACE_SECS`), so it
    /// never races an upload that is still being recorded.
    pub cleanup_grace: Duration,
    /// Overrides every job kind's run-time limit (`KILN_JOB_TIMEOUT_SECS`); `None` keeps each
    /// kind's own default (media 5 min, email 1 min, backup 1 h, cleanup 10 min).
    pub job_timeout: Option<Duration>,
    /// Test-only fault injection: `panic`, `hang`, `abort` (the whole process), `slow` (10 s,
    /// then the real work) or `cpu-slow` (rendering outlasts its CPU budget) makes every media
    /// job do that
    /// (`KILN_TEST_FAULT`), to prove the panic boundary and the timeouts.
    pub test_fault: String,
    /// Test-only fault injection: the first N storage writes of this process fail.
    pub fail_storage_writes: u64,
    /// Cron table for the scheduler: `name|cron expression|kind;...` (see the README).
    pub schedules: String,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// What one client may take from the API.
    pub limits: Limits,
    /// How webhooks are delivered: their retry schedule, time-outs and reach.
    pub webhooks: Webhooks,
    /// How variant URLs are signed and how long they work.
    pub media_urls: MediaUrls,
    /// Upload tokens, resumable uploads and CORS.
    pub browser_uploads: BrowserUploads,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can supply variables without touching the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let max_attempts = env.bounded("KILN_MAX_ATTEMPTS", 5, 1, 100)?;
        let mut max_attempts_by_kind = Vec::new();
        for kind in crate::jobs::JobKind::ALL {
            let var = match kind {
                crate::jobs::JobKind::Media => "KILN_MAX_ATTEMPTS_MEDIA",
                crate::jobs::JobKind::Video => "KILN_MAX_ATTEMPTS_VIDEO",
                crate::jobs::JobKind::Email => "KILN_MAX_ATTEMPTS_EMAIL",
                crate::jobs::JobKind::Backup => "KILN_MAX_ATTEMPTS_BACKUP",
                crate::jobs::JobKind::Cleanup => "KILN_MAX_ATTEMPTS_CLEANUP",
                crate::jobs::JobKind::Digest => "KILN_MAX_ATTEMPTS_DIGEST",
                crate::jobs::JobKind::Prune => "KILN_MAX_ATTEMPTS_PRUNE",
                crate::jobs::JobKind::Noop => "KILN_MAX_ATTEMPTS_NOOP",
                // A delivery's attempts come from its own schedule (KILN_WEBHOOK_RETRY_DELAYS).
                crate::jobs::JobKind::Webhook => continue,
                // A task's attempts are its own (`max_attempts` of the request).
                crate::jobs::JobKind::Task => continue,
            };
            max_attempts_by_kind.push((kind, env.bounded(var, max_attempts, 1, 100)?));
        }
        let mut queue_concurrency = Vec::new();
        for queue in crate::jobs::QueueKind::ALL {
            let var = match queue {
                crate::jobs::QueueKind::Media => "KILN_CONCURRENCY_MEDIA",
                crate::jobs::QueueKind::Video => "KILN_CONCURRENCY_VIDEO",
                crate::jobs::QueueKind::Email => "KILN_CONCURRENCY_EMAIL",
                crate::jobs::QueueKind::Backup => "KILN_CONCURRENCY_BACKUP",
                crate::jobs::QueueKind::Maintenance => "KILN_CONCURRENCY_MAINTENANCE",
                crate::jobs::QueueKind::Http => "KILN_CONCURRENCY_HTTP",
            };
            // Deliveries wait on other people's servers, not on this machine: they get slots of
            // their own by default, so a slow endpoint never holds up media or email.
            // A transcode uses every core it is given (`KILN_CPU_THREADS`): one at a time.
            let default = match queue {
                crate::jobs::QueueKind::Http => Some(16),
                crate::jobs::QueueKind::Video => Some(1),
                _ => None,
            };
            if let Some(limit) = env.optional::<u16>(var)?.or(default) {
                if !(1..=1024).contains(&limit) {
                    return Err(env.error(var, format!("{limit} is outside 1..=1024")));
                }
                queue_concurrency.push((queue, limit));
            }
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            database_url: env.secret("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kiln"),
            redis_url: env.secret("REDIS_URL", "redis://127.0.0.1:6379"),
            amqp_url: env.secret("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            storage_url: env.string("KILN_STORAGE_URL", "./var/kiln"),
            smtp_url: env.secret("KILN_SMTP_URL", "smtp://127.0.0.1:1025"),
            email_from: env.string("KILN_EMAIL_FROM", "Kiln <kiln@localhost>"),
            email_templates: env
                .optional::<String>("KILN_EMAIL_TEMPLATES")?
                .filter(|dir| !dir.is_empty())
                .map(Into::into),
            public_url: env
                .string("KILN_PUBLIC_URL", "http://localhost:8080")
                .trim_end_matches('/')
                .to_owned(),
            backup_database_url: env.secret(
                "KILN_BACKUP_DATABASE_URL",
                &env.string("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kiln"),
            ),
            backup_keep_last: env.bounded("KILN_BACKUP_KEEP_LAST", 7, 1, 10_000)?,
            backup_keep_days: env.bounded("KILN_BACKUP_KEEP_DAYS", 30, 0, 3_650)?,
            api_addr: env.parse("KILN_API_ADDR", "127.0.0.1:8080")?,
            metrics_addr: env.optional("KILN_METRICS_ADDR")?,
            namespace: parse_namespace(&env.string("KILN_NAMESPACE", "kiln"))?,
            variants: parse_variants(&env.string(
                "KILN_VARIANTS",
                "thumb:160,small:480,medium:1024,large:2048",
            ))?,
            max_upload_bytes: env.parse("KILN_MAX_UPLOAD_BYTES", "52428800")?,
            max_pixels: env.parse("KILN_MAX_PIXELS", "50000000")?,
            worker_concurrency: env.bounded("KILN_WORKER_CONCURRENCY", 4, 1, 1024)?,
            queue_concurrency,
            cpu_threads: env.bounded("KILN_CPU_THREADS", cpus, 1, 1024)?,
            jpeg_quality: env.bounded("KILN_JPEG_QUALITY", 82, 1, 100)?,
            webp_quality: env.bounded("KILN_WEBP_QUALITY", 80, 1, 100)?,
            webp_method: env.bounded("KILN_WEBP_METHOD", 2, 0, 6)?,
            avif: image_output::read(&env)?,
            video: VideoConfig::read(&env)?,
            migrate: env.parse("KILN_MIGRATE", "false")?,
            cache_ttl: Duration::from_secs(env.bounded("KILN_CACHE_TTL_SECS", 300, 1, 86_400)?),
            header_timeout: Duration::from_secs(env.bounded(
                "KILN_HEADER_TIMEOUT_SECS",
                10,
                1,
                3_600,
            )?),
            request_timeout: Duration::from_secs(env.bounded(
                "KILN_REQUEST_TIMEOUT_SECS",
                30,
                1,
                3_600,
            )?),
            shutdown_grace: Duration::from_secs(env.bounded(
                "KILN_SHUTDOWN_GRACE",
                30,
                0,
                3_600,
            )?),
            max_attempts,
            max_attempts_by_kind,
            retry_delays: parse_delays(&env.string("KILN_RETRY_DELAYS", "1s,5s,30s,2m,10m,1h"))?,
            delivery_limit: env.bounded("KILN_DELIVERY_LIMIT", 20, 1, 1_000_000)?,
            retire_after: parse_duration(
                "KILN_RETIRE_AFTER",
                &env.string("KILN_RETIRE_AFTER", "5m"),
            )?,
            rescue_after: parse_duration(
                "KILN_RESCUE_AFTER",
                &env.string("KILN_RESCUE_AFTER", "5m"),
            )?,
            heartbeat_timeout: parse_duration(
                "KILN_HEARTBEAT_TIMEOUT",
                &env.string("KILN_HEARTBEAT_TIMEOUT", "30s"),
            )
            .and_then(|timeout| {
                // Beats come every sixth of it, each a round trip to Postgres.
                if timeout < Duration::from_secs(1) {
                    return Err(env.error("KILN_HEARTBEAT_TIMEOUT", "must be at least 1s".into()));
                }
                Ok(timeout)
            })?,
            retain_succeeded: parse_retention(
                "KILN_RETAIN_SUCCEEDED",
                &env.string("KILN_RETAIN_SUCCEEDED", "7d"),
            )?,
            retain_dead: parse_retention(
                "KILN_RETAIN_DEAD",
                &env.string("KILN_RETAIN_DEAD", "14d"),
            )?,
            auth_cache_ttl: Duration::from_secs(env.bounded(
                "KILN_AUTH_CACHE_SECS",
                30,
                0,
                3_600,
            )?),
            cleanup_grace: Duration::from_secs(env.bounded(
                "KILN_CLEANUP_GRACE_SECS",
                3_600,
                0,
                30 * 86_400,
            )?),
            fail_storage_writes: env.parse("KILN_TEST_FAIL_STORAGE_WRITES", "0")?,
            job_timeout: env
                .optional::<u64>("KILN_JOB_TIMEOUT_SECS")?
                .map(Duration::from_secs),
            test_fault: match env.string("KILN_TEST_FAULT", "").as_str() {
                fault @ ("" | "panic" | "hang" | "abort" | "slow" | "cpu-slow") => fault.to_owned(),
                other => {
                    return Err(env.error(
                        "KILN_TEST_FAULT",
                        format!("{other:?} is not panic, hang, abort, slow or cpu-slow"),
                    ));
                }
            },
            schedules: env.string("KILN_SCHEDULES", ""),
            limits: Limits::read(&env)?,
            webhooks: Webhooks::read(&env)?,
            media_urls: MediaUrls::read(&env)?,
            browser_uploads: BrowserUploads::read(&env)?,
            log_format: match env.string("LOG_FORMAT", "text").as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(env.error("LOG_FORMAT", format!("{other:?} is not text or json")));
                }
            },
        })
    }

    /// Attempts a job of `kind` gets before it is dead.
    pub fn max_attempts(&self, kind: crate::jobs::JobKind) -> i32 {
        if kind == crate::jobs::JobKind::Webhook {
            return self.webhooks.max_attempts();
        }
        self.max_attempts_by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(self.max_attempts, |(_, n)| *n)
    }

    /// The concurrency of its own that `queue` has, if any.
    pub fn concurrency_override(&self, queue: crate::jobs::QueueKind) -> Option<u16> {
        self.queue_concurrency
            .iter()
            .find(|(q, _)| *q == queue)
            .map(|(_, n)| *n)
    }

    /// The RabbitMQ names for this namespace and retry ladder.
    pub fn topology(&self) -> crate::queue::Topology {
        crate::queue::Topology::new(&self.namespace, &self.retry_delays, self.delivery_limit)
    }

    /// The largest upload of `format`'s kind (`KILN_MAX_UPLOAD_BYTES` for images,
    /// `KILN_VIDEO_MAX_UPLOAD_BYTES` for videos).
    pub fn upload_limit(&self, format: crate::media_format::MediaFormat) -> u64 {
        match format {
            crate::media_format::MediaFormat::Image(_) => self.max_upload_bytes,
            crate::media_format::MediaFormat::Video(_) => self.video.max_upload_bytes,
        }
    }

    /// The larger of the two upload limits: what applies before the bytes say what they are.
    pub fn largest_upload(&self) -> u64 {
        self.max_upload_bytes.max(self.video.max_upload_bytes)
    }

    /// The local directory behind `storage_url`, when storage is local.
    pub fn local_storage_dir(&self) -> Option<PathBuf> {
        crate::storage::local_dir(&self.storage_url)
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    fn secret(&self, var: &str, default: &str) -> SecretString {
        SecretString::from(self.string(var, default))
    }

    fn error(&self, var: &'static str, message: String) -> ConfigError {
        ConfigError { var, message }
    }

    fn parse<T: FromStr>(&self, var: &'static str, default: &str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.string(var, default);
        raw.trim()
            .parse()
            .map_err(|e| self.error(var, format!("{raw:?}: {e}")))
    }

    fn optional<T: FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.get(var)
            .map(|raw| {
                raw.trim()
                    .parse()
                    .map_err(|e| self.error(var, format!("{raw:?}: {e}")))
            })
            .transpose()
    }

    fn bounded<T>(&self, var: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let value = self.optional(var)?.unwrap_or(default);
        if value < min || value > max {
            return Err(self.error(var, format!("{value} is outside {min}..={max}")));
        }
        Ok(value)
    }
}

fn parse_namespace(raw: &str) -> Result<String, ConfigError> {
    let ok = raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(ConfigError {
            var: "KILN_NAMESPACE",
            message: format!("{raw:?}: use up to 64 of [A-Za-z0-9_-]"),
        });
    }
    Ok(raw.to_owned())
}

/// Parses a comma-separated list of durations such as `500ms,5s,2m,1h` (`KILN_RETRY_DELAYS`).
pub fn parse_delays(raw: &str) -> Result<Vec<Duration>, ConfigError> {
    parse_delays_of("KILN_RETRY_DELAYS", raw)
}

/// [`parse_delays`] for another variable, named in its errors.
pub fn parse_delays_of(var: &'static str, raw: &str) -> Result<Vec<Duration>, ConfigError> {
    let delays = raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| parse_duration(var, entry))
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() {
        return Err(ConfigError {
            var,
            message: "at least one delay is needed".into(),
        });
    }
    Ok(delays)
}

/// Parses one duration of `var`, written as `KILN_RETRY_DELAYS` writes them: `500ms`, `5s`,
/// `2m`, `1h`; between 1 ms and 24 h.
pub fn parse_duration(var: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    parse_duration_up_to(var, raw, 24 * 3_600_000)
}

/// Parses a retention period: a duration as [`parse_duration`] takes, or days (`7d`), up to
/// ten years.
pub fn parse_retention(var: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    parse_duration_up_to(var, raw, 3_650 * 24 * 3_600_000)
}

fn parse_duration_up_to(
    var: &'static str,
    raw: &str,
    max_millis: u64,
) -> Result<Duration, ConfigError> {
    let error = |message: String| ConfigError { var, message };
    let entry = raw.trim();
    let split = entry
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| error(format!("{entry:?} needs a unit (ms, s, m, h)")))?;
    let (number, unit) = entry.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| error(format!("{entry:?} does not start with a number")))?;
    let unit_millis: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" if max_millis > 24 * 3_600_000 => 24 * 3_600_000,
        _ if max_millis > 24 * 3_600_000 => {
            return Err(error(format!("{entry:?}: unit must be ms, s, m, h or d")));
        }
        _ => return Err(error(format!("{entry:?}: unit must be ms, s, m or h"))),
    };
    let millis = number.saturating_mul(unit_millis);
    if millis == 0 || millis > max_millis {
        let most = if max_millis > 24 * 3_600_000 {
            "3650d"
        } else {
            "24h"
        };
        return Err(error(format!("{entry:?} must be between 1ms and {most}")));
    }
    Ok(Duration::from_millis(millis))
}

/// Parses `thumb:160,avatar:256x256:cover,hero:2048x1024:contain`, sorted widest first: the
/// worker makes the widest variant first from the decoded image and may derive smaller ones
/// from it.
pub fn parse_variants(raw: &str) -> Result<Vec<VariantSpec>, ConfigError> {
    let error = |message: String| ConfigError {
        var: "KILN_VARIANTS",
        message,
    };
    // 16383 is the largest dimension WebP can store.
    let dimension = |entry: &str, what: &str, raw: &str| {
        raw.parse::<u32>()
            .ok()
            .filter(|n| (1..=16_383).contains(n))
            .ok_or_else(|| {
                error(format!(
                    "{entry:?}: {what} must be a whole number in 1..=16383"
                ))
            })
    };
    let mut variants = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = entry.split(':');
        let name = parts.next().unwrap_or_default();
        let size = parts
            .next()
            .ok_or_else(|| error(format!("{entry:?} is not name:width or name:WxH[:mode]")))?;
        let mode = parts.next();
        if parts.next().is_some() {
            return Err(error(format!("{entry:?} has too many parts")));
        }
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid_name {
            return Err(error(format!("{name:?}: names use [a-z0-9_-]")));
        }
        let (width, height, fit) = match size.split_once('x') {
            None if mode.is_none() => (dimension(entry, "width", size)?, None, Fit::Width),
            None => return Err(error(format!("{entry:?}: a mode needs a WxH box"))),
            Some((w, h)) => {
                let fit = match mode {
                    None | Some("contain") => Fit::Contain,
                    Some("cover") => Fit::Cover,
                    Some(other) => {
                        return Err(error(format!(
                            "{entry:?}: {other:?} is not cover or contain"
                        )));
                    }
                };
                (
                    dimension(entry, "width", w)?,
                    Some(dimension(entry, "height", h)?),
                    fit,
                )
            }
        };
        if variants.iter().any(|v: &VariantSpec| v.name == name) {
            return Err(error(format!("{name:?} appears twice")));
        }
        variants.push(VariantSpec {
            name: name.to_owned(),
            width,
            height,
            fit,
        });
    }
    if variants.is_empty() {
        return Err(error("at least one variant is needed".into()));
    }
    variants.sort_by_key(|v| std::cmp::Reverse(v.width));
    Ok(variants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_work_without_any_variable() {
        let config = config(&[]).expect("defaults");
        assert_eq!(config.namespace, "kiln");
        assert_eq!(config.variants.len(), 4);
        assert_eq!(config.variants[0].name, "large");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = config(&[("KILN_MAX_UPLOAD_BYTES", "lots")]).expect_err("must fail");
        assert_eq!(err.var, "KILN_MAX_UPLOAD_BYTES");
        let err = config(&[("KILN_VARIANTS", "thumb")]).expect_err("must fail");
        assert!(err.to_string().contains("KILN_VARIANTS"), "{err}");
        let err = config(&[("KILN_JPEG_QUALITY", "0")]).expect_err("must fail");
        assert_eq!(err.var, "KILN_JPEG_QUALITY");
    }

    #[test]
    fn max_attempts_can_be_set_per_kind() {
        let config = config(&[
            ("KILN_MAX_ATTEMPTS", "3"),
            ("KILN_MAX_ATTEMPTS_EMAIL", "10"),
        ])
        .expect("ok");
        assert_eq!(config.max_attempts(crate::jobs::JobKind::Media), 3);
        assert_eq!(config.max_attempts(crate::jobs::JobKind::Email), 10);
    }

    #[test]
    fn a_queue_may_have_a_concurrency_of_its_own() {
        use crate::jobs::QueueKind;
        let set = config(&[("KILN_CONCURRENCY_MEDIA", "1")]).expect("ok");
        assert_eq!(set.concurrency_override(QueueKind::Media), Some(1));
        assert_eq!(set.concurrency_override(QueueKind::Email), None);
        let err = config(&[("KILN_CONCURRENCY_EMAIL", "0")]).expect_err("zero");
        assert_eq!(err.var, "KILN_CONCURRENCY_EMAIL");
    }

    #[test]
    fn retry_delays_take_units() {
        let delays = parse_delays("500ms, 5s,2m,1h").expect("valid");
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[3], Duration::from_secs(3600));
        assert!(parse_delays("5").is_err());
        assert!(parse_delays("0s").is_err());
        assert!(parse_delays("5d").is_err());
    }

    #[test]
    fn rescue_and_heartbeat_times_are_durations_with_units() {
        let defaults = config(&[]).expect("defaults");
        assert_eq!(defaults.rescue_after, Duration::from_secs(300));
        assert_eq!(defaults.heartbeat_timeout, Duration::from_secs(30));
        let set = config(&[("KILN_RESCUE_AFTER", "10s")]).expect("valid");
        assert_eq!(set.rescue_after, Duration::from_secs(10));
        let err = config(&[("KILN_HEARTBEAT_TIMEOUT", "30")]).expect_err("no unit");
        assert_eq!(err.var, "KILN_HEARTBEAT_TIMEOUT");
        assert_eq!(defaults.retain_succeeded, Duration::from_secs(7 * 86_400));
        assert_eq!(defaults.retain_dead, Duration::from_secs(14 * 86_400));
        let set = config(&[("KILN_RETAIN_DEAD", "90d")]).expect("valid");
        assert_eq!(set.retain_dead, Duration::from_secs(90 * 86_400));
        assert!(
            config(&[("KILN_RESCUE_AFTER", "2d")]).is_err(),
            "days only for retention"
        );
    }

    #[test]
    fn variants_are_sorted_largest_first_and_names_are_unique() {
        let v = parse_variants("a:10, b:300 ,c:20").expect("valid");
        let names: Vec<_> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        assert!(parse_variants("a:10,a:20").is_err());
        let boxes = parse_variants("avatar:256x256:cover,hero:2048x1024:contain,card:1200x630")
            .expect("valid");
        assert_eq!(
            boxes
                .iter()
                .map(|v| (v.width, v.height, v.fit))
                .collect::<Vec<_>>(),
            [
                (2048, Some(1024), Fit::Contain),
                (1200, Some(630), Fit::Contain),
                (256, Some(256), Fit::Cover)
            ]
        );
        assert!(parse_variants("a:10:cover").is_err());
        assert!(parse_variants("a:10x10:stretch").is_err());
        assert!(parse_variants("a:10x0:cover").is_err());
        assert!(parse_variants("a:10x10:cover:x").is_err());
        assert!(parse_variants("A B:10").is_err());
    }
}
