//! Picking a variant's format from `Accept`: AVIF, then WebP, then JPEG.
//!
//! AVIF and WebP are sent only to a client that names them (with a non-zero q): a `*/*` or
//! `image/*` says nothing about what a client can decode (curl, old browsers and many HTTP
//! libraries send it), so those get JPEG, which everything shows. Browsers that decode AVIF
//! or WebP name them in the `Accept` of every image request.

/// Formats in order of preference, with their media types.
const PREFERRED: [(&str, &str); 2] = [("avif", "image/avif"), ("webp", "image/webp")];

/// The best of `available` (stored formats: `avif`, `webp`, `jpeg`) for `accept`; `None` only
/// when `available` is empty.
pub fn pick<'a>(accept: Option<&str>, available: &[&'a str]) -> Option<&'a str> {
    let named = |media_type: &str| {
        accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';');
                let kind = parts.next().unwrap_or_default().trim();
                kind.eq_ignore_ascii_case(media_type) && quality(parts) > 0.0
            })
        })
    };
    PREFERRED
        .iter()
        .filter(|(format, media_type)| available.contains(format) && named(media_type))
        .map(|(format, _)| *format)
        .find_map(|format| available.iter().copied().find(|a| *a == format))
        .or_else(|| available.iter().copied().find(|a| *a == "jpeg"))
        .or_else(|| available.first().copied())
}

/// The `q` of a media range's parameters (1 when absent or unreadable).
fn quality<'a>(parameters: impl Iterator<Item = &'a str>) -> f32 {
    for parameter in parameters {
        if let Some((name, value)) = parameter.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            return value.trim().parse().unwrap_or(1.0);
        }
    }
    1.0
}

#[cfg(test)]
mod tests {
    use super::pick;

    const ALL: [&str; 3] = ["jpeg", "webp", "avif"];

    #[test]
    fn the_best_named_format_wins() {
        let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
        assert_eq!(pick(Some(chrome), &ALL), Some("avif"));
        assert_eq!(pick(Some(chrome), &["jpeg", "webp"]), Some("webp"));
        assert_eq!(pick(Some("image/webp,*/*"), &ALL), Some("webp"));
        assert_eq!(pick(Some("IMAGE/WEBP"), &ALL), Some("webp"));
    }

    #[test]
    fn wildcards_and_refusals_get_jpeg() {
        assert_eq!(pick(Some("*/*"), &ALL), Some("jpeg"));
        assert_eq!(pick(Some("image/*"), &ALL), Some("jpeg"));
        assert_eq!(pick(None, &ALL), Some("jpeg"));
        assert_eq!(
            pick(Some("image/avif;q=0, image/webp;q=0"), &ALL),
            Some("jpeg")
        );
        assert_eq!(pick(Some("image/png"), &ALL), Some("jpeg"));
        assert_eq!(pick(Some("image/webp"), &[]), None);
    }
}
