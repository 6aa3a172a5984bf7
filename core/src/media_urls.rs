//! Signed variant URLs: `<path>?expires=<unix seconds>&sig=<base64url HMAC-SHA256>` over
//! `"<path>\n<expires>"`, or `<path>?sig=...` over `"<path>\npublic"` for a tenant that opted
//! into permanent public URLs. The path is the variant's canonical API path, so a signature is
//! good for one media, one variant and one format (or one negotiated name), nothing else.
//!
//! Expiry times are rounded up to a step (an eighth of the lifetime, at most an hour), so the
//! URLs handed out within one step are the same string and a browser's cache keeps working
//! across page loads; a URL therefore works between its lifetime and an eighth more.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::MediaUrls;

/// How far apart the clocks of the processes that sign and check may be.
const CLOCK_SLACK_SECS: i64 = 300;

/// The longest rounding step of an expiry.
const MAX_STEP_SECS: i64 = 3_600;

/// Signs and checks variant URLs; cheap to clone (the keys are pre-hashed HMAC states).
#[derive(Clone)]
pub struct UrlSigner {
    /// The first signs; all verify (a rotation's previous key).
    keys: Vec<Hmac<Sha256>>,
    /// No URL is handed out for longer (plus its rounding), so none with a later expiry is
    /// taken: a leaked key cannot mint URLs that work for years.
    max_ttl_secs: i64,
}

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not made with any current key, or for another path or expiry.
    Invalid,
    /// Its expiry has passed.
    Expired,
}

impl UrlSigner {
    pub fn new(config: &MediaUrls) -> Self {
        let keys = config
            .signing_keys
            .iter()
            // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
            .map(|key| {
                Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                    .expect("HMAC takes any key")
            })
            .collect();
        let max_ttl_secs = i64::try_from(config.max_ttl.as_secs()).unwrap_or(i64::MAX / 4);
        Self { keys, max_ttl_secs }
    }

    /// The expiry of URLs handed out at `now` (unix seconds) to work for `ttl`: rounded up to
    /// the step, so that every URL handed out within one step is the same string.
    pub fn expiry(now: i64, ttl: Duration) -> i64 {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 4).max(1);
        let step = (ttl / 8).clamp(1, MAX_STEP_SECS);
        (now.saturating_add(ttl) + step - 1) / step * step
    }

    /// The query string (with its `?`) that makes `path` work for `ttl` from `now` (unix
    /// seconds); returns it with the expiry it carries.
    pub fn expiring(&self, path: &str, now: i64, ttl: Duration) -> (String, i64) {
        let expires = Self::expiry(now, ttl);
        let mut query = String::with_capacity(72);
        self.append_query(&mut query, path, Some(&expires.to_string()));
        (query, expires)
    }

    /// The query string (with its `?`) of a permanent public URL of `path`.
    pub fn permanent(&self, path: &str) -> String {
        let mut query = String::with_capacity(48);
        self.append_query(&mut query, path, None);
        query
    }

    /// Appends the query string that signs `path`: `?expires=<expires>&sig=...`, or `?sig=...`
    /// for a permanent URL (`expires` is `None`). Writes into `out` without allocating, for
    /// the answers that sign a dozen URLs each.
    pub fn append_query(&self, out: &mut String, path: &str, expires: Option<&str>) {
        let mut mac = self.keys[0].clone();
        feed(&mut mac, path, expires.unwrap_or("public"));
        match expires {
            Some(expires) => {
                out.push_str("?expires=");
                out.push_str(expires);
                out.push_str("&sig=");
            }
            None => out.push_str("?sig="),
        }
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), out);
    }

    /// Checks a signature of `path` against the expiry it came with (`None`: a permanent URL),
    /// at `now` (unix seconds).
    pub fn check(
        &self,
        path: &str,
        expires: Option<i64>,
        sig: &str,
        now: i64,
    ) -> Result<(), Refusal> {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return Err(Refusal::Invalid);
        };
        let scope = expires.map_or_else(|| "public".to_owned(), |e| e.to_string());
        let valid = self.keys.iter().any(|key| {
            let mut mac = key.clone();
            feed(&mut mac, path, &scope);
            mac.verify_slice(&sig).is_ok()
        });
        // Plus the rounding step and a few minutes for clocks that disagree.
        let latest = now
            .saturating_add(self.max_ttl_secs)
            .saturating_add(MAX_STEP_SECS + CLOCK_SLACK_SECS);
        match (valid, expires) {
            (false, _) => Err(Refusal::Invalid),
            (true, Some(expires)) if expires < now => Err(Refusal::Expired),
            (true, Some(expires)) if expires > latest => Err(Refusal::Invalid),
            (true, _) => Ok(()),
        }
    }
}

fn feed(mac: &mut Hmac<Sha256>, path: &str, scope: &str) {
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(scope.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(keys: &[&str]) -> UrlSigner {
        let config = crate::Config::from_lookup(|name| match name {
            "KILN_URL_SIGNING_KEY" => keys.first().map(|k| (*k).to_owned()),
            "KILN_URL_SIGNING_KEY_PREVIOUS" => keys.get(1).map(|k| (*k).to_owned()),
            _ => None,
        })
        .expect("config");
        UrlSigner::new(&config.media_urls)
    }

    const A: &str = "0123456789abcdef0123456789abcdef-a";
    const B: &str = "0123456789abcdef0123456789abcdef-b";
    const PATH: &str = "/v1/media/x/variants/thumb.webp";

    fn parts(query: &str) -> (Option<i64>, String) {
        let query = query.trim_start_matches('?');
        let mut expires = None;
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse().ok(),
                Some(("sig", v)) => sig = v.to_owned(),
                _ => {}
            }
        }
        (expires, sig)
    }

    #[test]
    fn a_url_works_until_it_expires_and_only_for_its_path() {
        let signer = signer(&[A]);
        let (query, expires) = signer.expiring(PATH, 1_000_000, Duration::from_secs(3_600));
        assert!(
            (1_003_600..=1_003_600 + 450).contains(&expires),
            "{expires}"
        );
        let (e, sig) = parts(&query);
        assert_eq!(signer.check(PATH, e, &sig, 1_000_000), Ok(()));
        assert_eq!(
            signer.check(PATH, e, &sig, expires + 1),
            Err(Refusal::Expired)
        );
        let other = "/v1/media/x/variants/large.webp";
        assert_eq!(
            signer.check(other, e, &sig, 1_000_000),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            signer.check(PATH, e.map(|e| e + 1), &sig, 1_000_000),
            Err(Refusal::Invalid)
        );
        assert_eq!(signer.check(PATH, None, &sig, 0), Err(Refusal::Invalid));
        assert_eq!(signer.check(PATH, e, "%%%", 0), Err(Refusal::Invalid));
    }

    #[test]
    fn urls_handed_out_within_one_step_are_the_same() {
        let signer = signer(&[A]);
        let ttl = Duration::from_secs(3_600);
        assert_eq!(
            signer.expiring(PATH, 1_000_001, ttl),
            signer.expiring(PATH, 1_000_002, ttl)
        );
    }

    #[test]
    fn the_previous_key_verifies_during_a_rotation_but_does_not_sign() {
        let old = signer(&[A]);
        let rotated = signer(&[B, A]);
        let (query, _) = old.expiring(PATH, 0, Duration::from_secs(60));
        let (e, sig) = parts(&query);
        assert_eq!(rotated.check(PATH, e, &sig, 0), Ok(()));
        assert_eq!(signer(&[B]).check(PATH, e, &sig, 0), Err(Refusal::Invalid));
        let (_, new_sig) = parts(&rotated.expiring(PATH, 0, Duration::from_secs(60)).0);
        assert_ne!(new_sig, sig);
    }

    #[test]
    fn a_permanent_url_is_not_an_expiring_one() {
        let signer = signer(&[A]);
        let (_, sig) = parts(&signer.permanent(PATH));
        assert_eq!(signer.check(PATH, None, &sig, i64::MAX), Ok(()));
        assert_eq!(
            signer.check(PATH, Some(i64::MAX), &sig, 0),
            Err(Refusal::Invalid)
        );
    }
}
