//! How variant URLs are signed and served (`KILN_URL_*`, `KILN_ACCEL_REDIRECT_PREFIX`).

use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, Env};

/// The key used when `KILN_URL_SIGNING_KEY` is unset: fine on a laptop, announced loudly at
/// start-up, because anyone who reads this file can sign URLs with it.
pub const DEV_SIGNING_KEY: &str = "kiln-local-development-url-signing-key";

/// The shortest signing key accepted: 32 bytes, the HMAC-SHA256 block's half.
const MIN_KEY_LEN: usize = 32;

/// Variant URL settings.
#[derive(Debug, Clone)]
pub struct MediaUrls {
    /// Keys that verify a signature; the first also signs (`KILN_URL_SIGNING_KEY`, then
    /// `KILN_URL_SIGNING_KEY_PREVIOUS` during a rotation).
    pub signing_keys: Vec<SecretString>,
    /// Whether the signing key is the built-in development key.
    pub dev_key: bool,
    /// How long a signed URL works by default (`KILN_URL_TTL_SECS`).
    pub ttl: Duration,
    /// The longest lifetime `?url_ttl=` may ask for (`KILN_URL_MAX_TTL_SECS`).
    pub max_ttl: Duration,
    /// With local storage behind the bundled nginx: answer a checked download with
    /// `X-Accel-Redirect: <prefix><storage key>` and let nginx send the bytes
    /// (`KILN_ACCEL_REDIRECT_PREFIX`, e.g. `/_kiln_files/`).
    pub accel_redirect_prefix: Option<String>,
}

impl MediaUrls {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        const KEY: &str = "KILN_URL_SIGNING_KEY";
        const PREVIOUS: &str = "KILN_URL_SIGNING_KEY_PREVIOUS";
        const ACCEL: &str = "KILN_ACCEL_REDIRECT_PREFIX";
        let mut signing_keys = Vec::new();
        let current = env.get(KEY);
        let dev_key = current.is_none();
        // The development key is public: a deployment others reach must have its own.
        let public_url = env.string("KILN_PUBLIC_URL", "http://localhost:8080");
        if dev_key && !is_local(&public_url) {
            return Err(env.error(
                KEY,
                format!(
                    "must be set (32+ characters, secret) when KILN_PUBLIC_URL ({public_url}) \
                     is not a local address"
                ),
            ));
        }
        for (var, key) in [
            (KEY, current.or_else(|| Some(DEV_SIGNING_KEY.to_owned()))),
            (PREVIOUS, env.get(PREVIOUS)),
        ] {
            let Some(key) = key else { continue };
            if key.len() < MIN_KEY_LEN {
                return Err(env.error(var, format!("use at least {MIN_KEY_LEN} characters")));
            }
            signing_keys.push(SecretString::from(key));
        }
        let ttl = env.bounded("KILN_URL_TTL_SECS", 3_600, 1, 31_536_000)?;
        let max_ttl = env.bounded("KILN_URL_MAX_TTL_SECS", 7 * 86_400, 1, 31_536_000)?;
        if ttl > max_ttl {
            return Err(env.error(
                "KILN_URL_TTL_SECS",
                format!("{ttl} is longer than KILN_URL_MAX_TTL_SECS ({max_ttl})"),
            ));
        }
        let accel_redirect_prefix = env.get(ACCEL);
        if let Some(prefix) = &accel_redirect_prefix
            && !(prefix.starts_with('/') && prefix.ends_with('/'))
        {
            return Err(env.error(ACCEL, "must start and end with '/'".into()));
        }
        Ok(Self {
            signing_keys,
            dev_key,
            ttl: Duration::from_secs(ttl),
            max_ttl: Duration::from_secs(max_ttl),
            accel_redirect_prefix,
        })
    }
}

/// Whether a URL points at this machine (localhost or a loopback address).
fn is_local(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost") || domain.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_local_deployments_may_run_on_the_development_key() {
        assert!(super::is_local("http://localhost:8080"));
        assert!(super::is_local("http://127.0.0.1"));
        assert!(super::is_local("http://[::1]:8080"));
        assert!(!super::is_local("https://media.example"));
        let config = |public: &'static str, key: Option<&'static str>| {
            crate::Config::from_lookup(move |name| match name {
                "KILN_PUBLIC_URL" => Some(public.to_owned()),
                "KILN_URL_SIGNING_KEY" => key.map(str::to_owned),
                _ => None,
            })
        };
        assert!(config("https://media.example", None).is_err());
        assert!(
            config(
                "https://media.example",
                Some("0123456789abcdef0123456789abcdef")
            )
            .is_ok()
        );
        assert!(config("http://localhost:8080", None).is_ok());
    }
}
