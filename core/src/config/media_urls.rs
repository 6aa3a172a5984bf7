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
