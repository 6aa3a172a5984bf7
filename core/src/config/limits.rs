//! What one client may take from the API: the pace of an upload, uploads in flight, request
//! rates, failed authentications and daily quotas per tenant. `0` turns any of them off.

use std::{net::IpAddr, time::Duration};

use super::{ConfigError, Env};

/// A rate with a burst: `burst` requests at once, refilled at one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub interval: Duration,
    pub burst: u32,
}

impl Rate {
    /// How long a full burst takes to refill: the window of the `RateLimit-Policy` header.
    pub fn window(&self) -> Duration {
        self.interval * self.burst
    }
}

/// The request rates per key, by the scope a route needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    pub media: Option<Rate>,
    pub email: Option<Rate>,
    pub admin: Option<Rate>,
    pub webhooks: Option<Rate>,
    pub tasks: Option<Rate>,
}

/// The API's limits (see the module documentation).
#[derive(Debug, Clone)]
pub struct Limits {
    /// An upload must bring at least this many bytes a second over every window
    /// (`KILN_UPLOAD_MIN_BYTES_PER_SEC`; 0 disables the check).
    pub upload_min_bytes_per_sec: u64,
    /// The window the upload pace is judged over (`KILN_UPLOAD_RATE_WINDOW_SECS`).
    pub upload_rate_window: Duration,
    /// Uploads one API process receives at once (`KILN_MAX_UPLOADS_IN_FLIGHT`).
    pub uploads_in_flight: u32,
    /// Uploads one tenant sends at once across every API process
    /// (`KILN_TENANT_UPLOADS_IN_FLIGHT`).
    pub tenant_uploads_in_flight: u32,
    pub rates: RateLimits,
    /// Failed authentications per client address (`KILN_AUTH_FAILURE_LIMIT`).
    pub auth_failures: Option<Rate>,
    /// Peers whose `X-Forwarded-For` is believed (`KILN_TRUSTED_PROXIES`, CIDRs or addresses).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Emails a tenant may send a day (`KILN_EMAIL_DAILY_LIMIT`; 0: unlimited).
    pub emails_per_day: u64,
    /// Uploads a tenant may make a day (`KILN_UPLOAD_DAILY_LIMIT`; 0: unlimited).
    pub uploads_per_day: u64,
    /// Bytes a tenant may upload a day (`KILN_UPLOAD_BYTES_DAILY_LIMIT`; 0: unlimited).
    pub upload_bytes_per_day: u64,
}

impl Limits {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let rate = |var: &'static str, default: &str| {
            parse_rate(&env.string(var, default)).map_err(|message| env.error(var, message))
        };
        let default = env.string("KILN_RATE_LIMIT", "100/s:200");
        let default_rate = rate("KILN_RATE_LIMIT", &default)?;
        let scoped = |var: &'static str| match env.get(var) {
            Some(raw) => parse_rate(&raw).map_err(|message| env.error(var, message)),
            None => Ok(default_rate),
        };
        Ok(Self {
            upload_min_bytes_per_sec: env.parse("KILN_UPLOAD_MIN_BYTES_PER_SEC", "1024")?,
            upload_rate_window: Duration::from_secs(env.bounded(
                "KILN_UPLOAD_RATE_WINDOW_SECS",
                30,
                1,
                3_600,
            )?),
            uploads_in_flight: env.parse("KILN_MAX_UPLOADS_IN_FLIGHT", "64")?,
            tenant_uploads_in_flight: env.parse("KILN_TENANT_UPLOADS_IN_FLIGHT", "16")?,
            rates: RateLimits {
                media: scoped("KILN_RATE_LIMIT_MEDIA")?,
                email: scoped("KILN_RATE_LIMIT_EMAIL")?,
                admin: scoped("KILN_RATE_LIMIT_ADMIN")?,
                webhooks: scoped("KILN_RATE_LIMIT_WEBHOOKS")?,
                tasks: scoped("KILN_RATE_LIMIT_TASKS")?,
            },
            auth_failures: rate("KILN_AUTH_FAILURE_LIMIT", "10/m:20")?,
            trusted_proxies: parse_networks(&env.string("KILN_TRUSTED_PROXIES", ""))
                .map_err(|message| env.error("KILN_TRUSTED_PROXIES", message))?,
            emails_per_day: env.parse("KILN_EMAIL_DAILY_LIMIT", "1000")?,
            uploads_per_day: env.parse("KILN_UPLOAD_DAILY_LIMIT", "0")?,
            upload_bytes_per_day: env.parse("KILN_UPLOAD_BYTES_DAILY_LIMIT", "0")?,
        })
    }
}

/// `<count>/<s|m|h>[:<burst>]`, e.g. `100/s:200` (burst defaults to the count); `0` is off.
pub fn parse_rate(raw: &str) -> Result<Option<Rate>, String> {
    let raw = raw.trim();
    if raw == "0" {
        return Ok(None);
    }
    let bad = || format!("{raw:?} is not <count>/<s|m|h>[:<burst>] (like 100/s:200) or 0");
    let (rate, burst) = match raw.split_once(':') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (raw, None),
    };
    let (count, unit) = rate.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3_600),
        _ => return Err(bad()),
    };
    let burst = match burst {
        Some(burst) => burst.trim().parse().map_err(|_| bad())?,
        None => count,
    };
    if count == 0 || burst == 0 {
        return Err(format!(
            "{raw:?}: a count and burst must be positive (0 alone is off)"
        ));
    }
    Ok(Some(Rate {
        interval: period / count,
        burst,
    }))
}

/// A comma-separated list of networks (`10.0.0.0/8`) or single addresses.
pub fn parse_networks(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<ipnet::IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{part:?} is not a network (10.0.0.0/8) or an address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_a_unit_and_an_optional_burst() {
        let rate = parse_rate("100/s:200").expect("valid").expect("on");
        assert_eq!(rate.interval, Duration::from_millis(10));
        assert_eq!(rate.burst, 200);
        assert_eq!(rate.window(), Duration::from_secs(2));
        let rate = parse_rate("10/m").expect("valid").expect("on");
        assert_eq!((rate.interval, rate.burst), (Duration::from_secs(6), 10));
        assert_eq!(parse_rate("0"), Ok(None));
        for bad in ["100", "100/d", "x/s", "0/s", "5/s:0", "5/s:x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        let nets = parse_networks("10.0.0.0/8, 127.0.0.1,::1").expect("valid");
        assert_eq!(nets.len(), 3);
        assert!(nets[1].contains(&"127.0.0.1".parse::<IpAddr>().expect("ip")));
        assert!(parse_networks("nginx").is_err());
        assert_eq!(parse_networks(""), Ok(Vec::new()));
    }
}
