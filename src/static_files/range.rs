//! Range requests (RFC 9110 §14): which part of a representation of `len` bytes a GET asks
//! for. One `bytes` range (`a-b`, `a-`, `-n`) is served as 206; a range that starts past the
//! end is 416; several ranges are answered with the whole representation (200), which the RFC
//! allows and which spares a multipart body; anything unparsable is ignored, as the RFC asks.
//! `If-Range` decides first whether the range still applies. Pure functions; no filesystem.

use http::header::{HeaderMap, IF_RANGE, RANGE};

use super::conditional::Validators;

/// What to send of a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ranged {
    /// The whole of it (no range, an ignored one, several, or a stale `If-Range`).
    Full,
    /// `len` bytes from `start`, both within the representation.
    Partial { start: u64, len: u64 },
    /// 416: the range starts at or past the end.
    Unsatisfiable,
}

/// The part of a `len`-byte representation a GET's `Range` and `If-Range` select.
pub(super) fn select(headers: &HeaderMap, len: u64, v: &Validators) -> Ranged {
    let mut ranges = headers.get_all(RANGE).iter();
    let (Some(range), None) = (ranges.next(), ranges.next()) else {
        return Ranged::Full;
    };
    let Ok(range) = range.to_str() else {
        return Ranged::Full;
    };
    if let Some(if_range) = headers.get(IF_RANGE) {
        let holds = if_range.to_str().is_ok_and(|s| v.if_range_holds(s));
        if !holds {
            return Ranged::Full;
        }
    }
    parse(range, len)
}

/// One `Range` value against a representation of `len` bytes.
pub(super) fn parse(value: &str, len: u64) -> Ranged {
    let Some((unit, set)) = value.split_once('=') else {
        return Ranged::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranged::Full;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        // None at all is malformed; several are allowed to be answered whole.
        return Ranged::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    match (number(first), number(last)) {
        // `-n`: the last n bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                return Ranged::Unsatisfiable;
            }
            let n = n.min(len);
            Ranged::Partial {
                start: len - n,
                len: n,
            }
        }
        // `a-`: from a to the end.
        (Some(a), None) if last.is_empty() => between(a, len, len),
        // `a-b`: both ends inclusive; b past the end means the end.
        (Some(a), Some(b)) if a <= b => between(a, b.saturating_add(1).min(len), len),
        _ => Ranged::Full,
    }
}

/// Bytes `start..end` of `len`, `end` already within `len`.
fn between(start: u64, end: u64, len: u64) -> Ranged {
    if start >= len {
        return Ranged::Unsatisfiable;
    }
    Ranged::Partial {
        start,
        len: end - start,
    }
}

/// ASCII digits only (`u64::from_str` takes a `+`); a number past u64 is as good as infinite.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn p(start: u64, len: u64) -> Ranged {
        Ranged::Partial { start, len }
    }

    #[test]
    fn the_three_forms() {
        assert_eq!(parse("bytes=0-4", 10), p(0, 5));
        assert_eq!(parse("bytes=2-2", 10), p(2, 1));
        assert_eq!(parse("bytes=5-", 10), p(5, 5));
        assert_eq!(parse("bytes=-3", 10), p(7, 3));
        assert_eq!(parse("BYTES = 1-2", 10), p(1, 2));
    }

    #[test]
    fn ends_are_clamped_to_the_representation() {
        assert_eq!(parse("bytes=5-100", 10), p(5, 5));
        assert_eq!(parse("bytes=-100", 10), p(0, 10));
        assert_eq!(parse("bytes=0-99999999999999999999999", 10), p(0, 10));
        assert_eq!(parse("bytes=9-", 10), p(9, 1));
    }

    #[test]
    fn a_start_past_the_end_is_unsatisfiable() {
        assert_eq!(parse("bytes=10-", 10), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=10-20", 10), Ranged::Unsatisfiable);
        assert_eq!(
            parse("bytes=99999999999999999999999-", 10),
            Ranged::Unsatisfiable
        );
        assert_eq!(parse("bytes=-0", 10), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Ranged::Unsatisfiable);
        assert_eq!(parse("bytes=-5", 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn several_ranges_and_garbage_get_the_whole() {
        for value in [
            "bytes=0-1,3-4",
            "bytes=0-1, -2",
            "bytes=",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=-",
            "bytes=1",
            "items=0-1",
            "0-1",
        ] {
            assert_eq!(parse(value, 10), Ranged::Full, "{value}");
        }
        // An empty list element is not a second range.
        assert_eq!(parse("bytes=1-2,", 10), p(1, 2));
    }

    #[test]
    fn if_range_decides_whether_the_range_applies() {
        let v = Validators::new(10, Some(UNIX_EPOCH + Duration::from_secs(1_000_000)), None);
        let mut h = HeaderMap::new();
        h.insert(RANGE, "bytes=0-1".parse().unwrap());
        assert_eq!(select(&h, 10, &v), p(0, 2));
        h.insert(IF_RANGE, v.etag.parse().unwrap());
        assert_eq!(select(&h, 10, &v), p(0, 2));
        h.insert(IF_RANGE, "\"stale\"".parse().unwrap());
        assert_eq!(select(&h, 10, &v), Ranged::Full);
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_000_000));
        h.insert(IF_RANGE, date.parse().unwrap());
        assert_eq!(select(&h, 10, &v), p(0, 2));
        let mut h2 = HeaderMap::new();
        h2.append(RANGE, "bytes=0-1".parse().unwrap());
        h2.append(RANGE, "bytes=2-3".parse().unwrap());
        assert_eq!(select(&h2, 10, &v), Ranged::Full);
    }
}
