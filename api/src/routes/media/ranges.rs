//! The conditional and partial parts of a download: `If-None-Match`, `If-Range` and a single
//! `Range: bytes=...` (RFC 9110 §13 and §14). Pure functions of the header values.

use std::ops::Range;

/// Whether `If-None-Match` names `etag` (weak comparison, as §13.1.2 requires, or `*`).
pub fn none_match_hits(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == etag)
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No usable range (absent, not bytes, several ranges, or malformed): send it all.
    Whole,
    /// One satisfiable range.
    Part(Range<u64>),
    /// A single range that lies outside the file: 416.
    Unsatisfiable,
}

/// Reads `Range` against a file of `size` bytes. Several ranges are answered with the whole
/// file, which §14.2 allows and which keeps multipart/byteranges out of the picture.
pub fn wanted(range: Option<&str>, size: u64) -> Wanted {
    match parse(range, size) {
        // No byte of an empty file can be asked for (a malformed header is still ignored).
        Wanted::Part(_) if size == 0 => Wanted::Unsatisfiable,
        wanted => wanted,
    }
}

fn parse(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |n: &str| n.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part(size.saturating_sub(n)..size),
            None => Wanted::Whole,
        },
        // bytes=N-: from N to the end.
        (false, true) => match parse(first) {
            Some(start) if start < size => Wanted::Part(start..size),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Whole,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start < size {
                    Wanted::Part(start..end.saturating_add(1).min(size))
                } else {
                    Wanted::Unsatisfiable
                }
            }
            _ => Wanted::Whole,
        },
        (true, true) => Wanted::Whole,
    }
}

/// Whether a `Range` may be honoured given `If-Range`: only if it names the current strong
/// ETag (a date, or a weak tag, never matches: the file is then sent whole).
pub fn if_range_allows(if_range: Option<&str>, etag: Option<&str>) -> bool {
    match if_range {
        None => true,
        Some(value) => etag.is_some_and(|etag| value.trim() == etag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_a_star() {
        let tag = "\"abc\"";
        assert!(none_match_hits("\"abc\"", tag));
        assert!(none_match_hits("W/\"abc\"", tag));
        assert!(none_match_hits("\"x\", \"abc\"", tag));
        assert!(none_match_hits("*", tag));
        assert!(!none_match_hits("\"abcd\"", tag));
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-9"), 100), Wanted::Part(0..10));
        assert_eq!(wanted(Some("bytes=90-200"), 100), Wanted::Part(90..100));
        assert_eq!(wanted(Some("bytes=95-"), 100), Wanted::Part(95..100));
        assert_eq!(wanted(Some("bytes=-10"), 100), Wanted::Part(90..100));
        assert_eq!(wanted(Some("bytes=-500"), 100), Wanted::Part(0..100));
        assert_eq!(wanted(Some("bytes=-5"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=5-"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=x"), 0), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=100-120"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=5-1"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=x-1"), 100), Wanted::Whole);
        assert_eq!(
            wanted(Some("bytes=0-18446744073709551615"), 100),
            Wanted::Part(0..100)
        );
    }

    #[test]
    fn if_range_needs_the_current_strong_etag() {
        assert!(if_range_allows(None, None));
        assert!(if_range_allows(Some("\"a\""), Some("\"a\"")));
        assert!(!if_range_allows(Some("\"b\""), Some("\"a\"")));
        assert!(!if_range_allows(Some("W/\"a\""), Some("\"a\"")));
        assert!(!if_range_allows(
            Some("Tue, 01 Dec 2026 00:00:00 GMT"),
            Some("\"a\"")
        ));
        assert!(!if_range_allows(Some("\"a\""), None));
    }
}
