//! Uploads straight from a browser: upload tokens, resumable (tus) uploads and CORS.

use std::time::Duration;

use super::{ConfigError, Env};

/// `KILN_TUS_*`, `KILN_UPLOAD_TOKEN_*` and `KILN_CORS_ORIGINS`.
#[derive(Debug, Clone)]
pub struct BrowserUploads {
    /// How long a resumable upload may take from its creation before it expires and its
    /// bytes are removed (`KILN_TUS_EXPIRE_SECS`).
    pub tus_expire: Duration,
    /// The longest life an upload token may ask for (`KILN_UPLOAD_TOKEN_MAX_TTL_SECS`).
    pub token_max_ttl: Duration,
    /// Origins whose pages may call the API (`KILN_CORS_ORIGINS`, comma-separated, `*` for
    /// any); empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
}

impl BrowserUploads {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        const ORIGINS: &str = "KILN_CORS_ORIGINS";
        let mut cors_origins = Vec::new();
        for origin in env.string(ORIGINS, "").split(',').map(str::trim) {
            if origin.is_empty() {
                continue;
            }
            if origin == "*" {
                cors_origins.push(origin.to_owned());
                continue;
            }
            // Kept as browsers send it (lower case, no default port), or it never matches.
            let serialized = url::Url::parse(origin)
                .ok()
                .filter(|url| {
                    matches!(url.scheme(), "http" | "https")
                        && url.path() == "/"
                        && url.query().is_none()
                        && url.fragment().is_none()
                })
                .map(|url| url.origin().ascii_serialization())
                .ok_or_else(|| {
                    env.error(
                        ORIGINS,
                        format!("{origin:?} is not an origin (scheme://host[:port]) or *"),
                    )
                })?;
            cors_origins.push(serialized);
        }
        Ok(Self {
            tus_expire: Duration::from_secs(env.bounded(
                "KILN_TUS_EXPIRE_SECS",
                86_400,
                60,
                30 * 86_400,
            )?),
            token_max_ttl: Duration::from_secs(env.bounded(
                "KILN_UPLOAD_TOKEN_MAX_TTL_SECS",
                3_600,
                1,
                7 * 86_400,
            )?),
            cors_origins,
        })
    }
}
