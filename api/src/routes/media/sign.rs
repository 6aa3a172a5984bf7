//! Signing the variant URLs of a media answer as it goes out: the cached view keeps unsigned
//! paths, so one cached entry serves every lifetime a client asks for.

use std::time::Duration;

use kiln_core::media_urls::UrlSigner;

/// How the URLs of one answer are made.
#[derive(Debug, Clone, Copy)]
pub enum UrlMode {
    /// Signed, working for this long.
    Expiring(Duration),
    /// The tenant opted into permanent public URLs.
    Permanent,
}

/// A 200 JSON answer of a (cached) media view, its URLs signed now.
pub fn signed_answer(view: &str, signer: &UrlSigner, mode: UrlMode) -> axum::response::Response {
    use axum::{
        http::{HeaderValue, header},
        response::IntoResponse,
    };
    let body = sign_view(view, signer, mode, chrono::Utc::now().timestamp());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON of a media view with every variant URL signed. The view's last fields are its
/// `variants` and `variant_urls` (see `MediaView`), so the URLs are the `"/v1/media/..."`
/// strings after the last `"variants":` key; what precedes it (metadata an app chose, an
/// error message) is copied untouched whatever it contains.
pub fn sign_view(view: &str, signer: &UrlSigner, mode: UrlMode, now: i64) -> String {
    const KEY: &str = ",\"variants\":[";
    const URL_START: &str = "\"/v1/media/";
    let Some(start) = view.rfind(KEY) else {
        return view.to_owned();
    };
    // One expiry for the whole answer, formatted once.
    let expires = match mode {
        UrlMode::Expiring(ttl) => Some(UrlSigner::expiry(now, ttl).to_string()),
        UrlMode::Permanent => None,
    };
    let mut signed = String::with_capacity(view.len() + 1024);
    signed.push_str(&view[..start]);
    let mut rest = &view[start..];
    while let Some(found) = rest.find(URL_START) {
        let path_start = found + 1;
        let Some(len) = rest[path_start..].find('"') else {
            break;
        };
        let path = &rest[path_start..path_start + len];
        signed.push_str(&rest[..path_start + len]);
        signer.append_query(&mut signed, path, expires.as_deref());
        rest = &rest[path_start + len..];
    }
    signed.push_str(rest);
    signed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        let config = kiln_core::Config::from_lookup(|_| None).expect("defaults");
        UrlSigner::new(&config.media_urls)
    }

    #[test]
    fn every_url_after_the_variants_key_is_signed_and_nothing_before_it() {
        let view = r#"{"id":"m","metadata":{"variants":"/v1/media/x","a":",\"variants\":["},"variants":[{"name":"thumb","url":"/v1/media/m/variants/thumb.jpg"}],"variant_urls":{"thumb":"/v1/media/m/variants/thumb"}}"#;
        let signed = sign_view(
            view,
            &signer(),
            UrlMode::Expiring(Duration::from_secs(60)),
            0,
        );
        let parsed: serde_json::Value = serde_json::from_str(&signed).expect("still JSON");
        let url = parsed["variants"][0]["url"].as_str().expect("url");
        assert!(
            // 60 s from 0, rounded up to a step of 7 (an eighth).
            url.starts_with("/v1/media/m/variants/thumb.jpg?expires=63&sig="),
            "{url}"
        );
        let negotiated = parsed["variant_urls"]["thumb"].as_str().expect("url");
        assert!(
            negotiated.starts_with("/v1/media/m/variants/thumb?expires="),
            "{negotiated}"
        );
        assert_eq!(parsed["metadata"]["variants"], "/v1/media/x");
        assert_eq!(parsed["metadata"]["a"], ",\"variants\":[");
    }

    #[test]
    fn permanent_urls_carry_no_expiry() {
        let view = r#"{"variants":[],"x":1,"variants":[{"url":"/v1/media/m/variants/a.webp"}],"variant_urls":{}}"#;
        let signed = sign_view(view, &signer(), UrlMode::Permanent, 0);
        assert!(
            signed.contains("\"/v1/media/m/variants/a.webp?sig="),
            "{signed}"
        );
    }
}
