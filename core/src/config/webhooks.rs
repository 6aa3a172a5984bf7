//! How webhooks are delivered: the retry schedule (like Svix's by default), when a failing
//! endpoint is disabled, the request's limits, and which networks a delivery may reach.

use std::time::Duration;

use super::{ConfigError, Env, parse_delays_of, parse_networks, parse_retention};

/// Webhook delivery settings (`KILN_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// The wait after failed attempt n is the n-th step, with jitter; a delivery gets one
    /// attempt more than there are steps (`KILN_WEBHOOK_RETRY_DELAYS`).
    pub retry_delays: Vec<Duration>,
    /// An endpoint whose deliveries have failed for longer than this is disabled
    /// (`KILN_WEBHOOK_DISABLE_AFTER`).
    pub disable_after: Duration,
    /// One request's whole time, connect to last byte read (`KILN_WEBHOOK_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Deliveries one worker sends to one endpoint at once (`KILN_WEBHOOK_ENDPOINT_CONCURRENCY`).
    pub endpoint_concurrency: usize,
    /// Networks a delivery may reach although they are private, loopback or otherwise internal
    /// (`KILN_WEBHOOK_ALLOW_NETS`); empty: public addresses only.
    pub allow_nets: Vec<ipnet::IpNet>,
    /// How long a rotated-out secret keeps signing beside the new one, unless the rotation
    /// says otherwise (`KILN_WEBHOOK_SECRET_OVERLAP_SECS`).
    pub secret_overlap: Duration,
}

impl Webhooks {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        const DELAYS: &str = "KILN_WEBHOOK_RETRY_DELAYS";
        const DISABLE: &str = "KILN_WEBHOOK_DISABLE_AFTER";
        const NETS: &str = "KILN_WEBHOOK_ALLOW_NETS";
        let retry_delays = parse_delays_of(DELAYS, &env.string(DELAYS, "5s,5m,30m,2h,5h,10h,10h"))?;
        if retry_delays.len() > 50 {
            return Err(env.error(DELAYS, "at most 50 steps".into()));
        }
        Ok(Self {
            retry_delays,
            disable_after: parse_retention(DISABLE, &env.string(DISABLE, "5d"))?,
            timeout: Duration::from_secs(env.bounded("KILN_WEBHOOK_TIMEOUT_SECS", 15, 1, 300)?),
            endpoint_concurrency: env.bounded("KILN_WEBHOOK_ENDPOINT_CONCURRENCY", 4, 1, 1024)?,
            allow_nets: parse_networks(&env.string(NETS, ""))
                .map_err(|message| env.error(NETS, message))?,
            secret_overlap: Duration::from_secs(env.bounded(
                "KILN_WEBHOOK_SECRET_OVERLAP_SECS",
                86_400,
                0,
                30 * 86_400,
            )?),
        })
    }

    /// Attempts a delivery gets: the first, and one after each step of the schedule.
    pub fn max_attempts(&self) -> i32 {
        i32::try_from(self.retry_delays.len()).unwrap_or(50) + 1
    }

    /// How long after failed attempt `attempt` the next one starts: the schedule's step at
    /// 80–100% (jitter, so deliveries that failed together do not all return together), and
    /// never before the receiver's `Retry-After`.
    pub fn wait_after(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        use rand::Rng;
        let step = self
            .delay_after(attempt)
            .mul_f64(rand::rng().random_range(0.8..=1.0));
        retry_after.map_or(step, |after| step.max(after))
    }

    /// The wait after failed attempt `attempt` (1 for the first), before jitter.
    pub fn delay_after(&self, attempt: i32) -> Duration {
        let index = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
        self.retry_delays
            .get(index)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Webhooks, ConfigError> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        Webhooks::read(&Env(&lookup))
    }

    #[test]
    fn the_default_schedule_is_svix_s_and_gives_eight_attempts() {
        let webhooks = read(&[]).expect("defaults");
        assert_eq!(webhooks.max_attempts(), 8);
        assert_eq!(webhooks.delay_after(1), Duration::from_secs(5));
        assert_eq!(webhooks.delay_after(2), Duration::from_secs(300));
        assert_eq!(webhooks.delay_after(7), Duration::from_secs(36_000));
        assert_eq!(webhooks.delay_after(99), Duration::from_secs(36_000));
        assert_eq!(webhooks.disable_after, Duration::from_secs(5 * 86_400));
        assert!(webhooks.allow_nets.is_empty());
        let wait = webhooks.wait_after(1, None);
        assert!(wait >= Duration::from_secs(4) && wait <= Duration::from_secs(5));
        let later = Some(Duration::from_secs(60));
        assert_eq!(webhooks.wait_after(1, later), Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let error = read(&[("KILN_WEBHOOK_RETRY_DELAYS", "5x")]).expect_err("bad");
        assert_eq!(error.var, "KILN_WEBHOOK_RETRY_DELAYS");
        let error = read(&[("KILN_WEBHOOK_ALLOW_NETS", "nope")]).expect_err("bad");
        assert_eq!(error.var, "KILN_WEBHOOK_ALLOW_NETS");
    }
}
