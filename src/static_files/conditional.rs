//! Conditional requests (RFC 9110 §13): the validators of a file (a strong ETag and its
//! modification time) and the evaluation of `If-Match`, `If-Unmodified-Since`, `If-None-Match`
//! and `If-Modified-Since` in the RFC's order. `If-Range` belongs to `range`, which uses the
//! comparisons defined here. Pure functions over headers; no filesystem.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{
    HeaderMap, HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE,
};

/// What identifies one version of one representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Validators {
    /// A strong entity-tag with its quotes, e.g. `"1f-65a1b2c3.0"`.
    pub(super) etag: String,
    /// The modification time, whole seconds (HTTP dates have no finer resolution); `None`
    /// when the filesystem gives none or it is before 1970.
    pub(super) modified: Option<SystemTime>,
}

impl Validators {
    /// An ETag from the size and modification time, stable across restarts and identical in
    /// every worker process (no inode, no random seed); `tag` tells representations of one
    /// file apart (`br`, `gz`).
    pub(super) fn new(len: u64, modified: Option<SystemTime>, tag: Option<&str>) -> Validators {
        let since = modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok());
        let mut etag = match since {
            Some(d) => format!("\"{len:x}-{:x}.{:x}", d.as_secs(), d.subsec_nanos()),
            None => format!("\"{len:x}"),
        };
        if let Some(tag) = tag {
            etag.push('-');
            etag.push_str(tag);
        }
        etag.push('"');
        Validators {
            etag,
            modified: since.map(|d| UNIX_EPOCH + Duration::from_secs(d.as_secs())),
        }
    }

    /// Strong comparison: both tags strong and equal (If-Match, If-Range).
    fn strong_match(&self, weak: bool, tag: &str) -> bool {
        !weak && tag == self.etag
    }

    /// Weak comparison: equal opaque tags, weak or not (If-None-Match).
    fn weak_match(&self, tag: &str) -> bool {
        tag == self.etag
    }

    /// `If-Range` with an entity-tag (strong comparison) or a date (equal to Last-Modified).
    pub(super) fn if_range_holds(&self, value: &str) -> bool {
        let value = value.trim();
        if value.starts_with('"') || value.starts_with("W/") {
            let mut held = false;
            let whole = each_tag(value, |weak, tag| held |= self.strong_match(weak, tag));
            return whole && held;
        }
        match (date(value), self.modified) {
            (Some(since), Some(modified)) => since == modified,
            _ => false,
        }
    }
}

/// The outcome of the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Precondition {
    /// Serve the file (possibly a range of it).
    Proceed,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: `If-Match` or `If-Unmodified-Since` failed.
    Failed,
}

/// Evaluates the preconditions of a GET or HEAD in RFC 9110 §13.2.2's order: If-Match, else
/// If-Unmodified-Since; then If-None-Match, else If-Modified-Since (a client that sends both
/// is judged on the tag, which is exact, not the one-second date).
pub(super) fn evaluate(headers: &HeaderMap, v: &Validators) -> Precondition {
    if let Some(value) = joined(headers, &IF_MATCH) {
        let any = value.trim() == "*";
        let mut held = false;
        each_tag(&value, |weak, tag| held |= v.strong_match(weak, tag));
        if !any && !held {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) =
        (single_date(headers, &IF_UNMODIFIED_SINCE), v.modified)
    {
        if modified > since {
            return Precondition::Failed;
        }
    }
    if let Some(value) = joined(headers, &IF_NONE_MATCH) {
        let any = value.trim() == "*";
        let mut held = false;
        each_tag(&value, |_, tag| held |= v.weak_match(tag));
        if any || held {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(modified)) =
        (single_date(headers, &IF_MODIFIED_SINCE), v.modified)
    {
        if modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Every line of a list header, joined with commas (one line, the usual case, is not copied
/// twice); `None` if absent or not text.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let text = value.to_str().ok()?;
        match &mut out {
            None => out = Some(text.to_string()),
            Some(s) => {
                s.push(',');
                s.push_str(text);
            }
        }
    }
    out
}

/// A date header sent once; RFC 9110 has a recipient ignore one with several members.
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut all = headers.get_all(name).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    date(value.to_str().ok()?)
}

/// An HTTP-date in any of the three forms RFC 9110 requires recipients to read.
fn date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

/// Calls `f(weak, tag)` for each entity-tag of a comma-separated list, `tag` with its quotes;
/// returns whether the whole list parsed. An entity-tag may itself contain commas, so the
/// list is scanned tag by tag rather than split.
fn each_tag(list: &str, mut f: impl FnMut(bool, &str)) -> bool {
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return true;
        }
        let (weak, body) = match rest.strip_prefix("W/") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let Some(after_quote) = body.strip_prefix('"') else {
            return false;
        };
        let Some(end) = after_quote.find('"') else {
            return false;
        };
        let (tag, tail) = body.split_at(end + 2);
        f(weak, tag);
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn v() -> Validators {
        Validators::new(31, Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)), None)
    }

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, val) in pairs {
            h.append(*k, val.parse().unwrap());
        }
        h
    }

    fn http_date(secs: u64) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn etags_come_from_size_and_mtime_and_tell_encodings_apart() {
        assert_eq!(v().etag, "\"1f-6553f100.5\"");
        assert_eq!(v().modified, at(1_700_000_000));
        let br = Validators::new(31, at(1_700_000_000), Some("br"));
        assert_eq!(br.etag, "\"1f-6553f100.0-br\"");
        assert_ne!(
            Validators::new(32, at(1_700_000_000), None).etag,
            Validators::new(31, at(1_700_000_000), None).etag
        );
        assert_eq!(Validators::new(1, None, None).etag, "\"1\"");
    }

    #[test]
    fn tag_lists() {
        let mut seen = Vec::new();
        let ok = each_tag(r#"W/"a", "b,c" ,, "d""#, |w, t| {
            seen.push((w, t.to_string()))
        });
        assert!(ok);
        assert_eq!(
            seen,
            [
                (true, "\"a\"".to_string()),
                (false, "\"b,c\"".to_string()),
                (false, "\"d\"".to_string())
            ]
        );
        assert!(!each_tag("abc", |_, _| {}));
        assert!(!each_tag("\"open", |_, _| {}));
    }

    #[test]
    fn if_none_match_compares_weakly_and_star_matches() {
        let etag = v().etag;
        let weak = format!("W/{etag}");
        for value in [etag.as_str(), weak.as_str(), "*", &format!("\"x\", {etag}")] {
            let h = headers(&[(&IF_NONE_MATCH, value)]);
            assert_eq!(evaluate(&h, &v()), Precondition::NotModified, "{value}");
        }
        let h = headers(&[(&IF_NONE_MATCH, "\"other\"")]);
        assert_eq!(evaluate(&h, &v()), Precondition::Proceed);
        let h = headers(&[(&IF_NONE_MATCH, "\"other\""), (&IF_NONE_MATCH, &etag)]);
        assert_eq!(evaluate(&h, &v()), Precondition::NotModified);
    }

    #[test]
    fn if_modified_since_is_to_the_second() {
        let same = http_date(1_700_000_000);
        let h = headers(&[(&IF_MODIFIED_SINCE, &same)]);
        assert_eq!(evaluate(&h, &v()), Precondition::NotModified);
        let later = http_date(1_700_000_100);
        let h = headers(&[(&IF_MODIFIED_SINCE, &later)]);
        assert_eq!(evaluate(&h, &v()), Precondition::NotModified);
        let earlier = http_date(1_699_999_999);
        let h = headers(&[(&IF_MODIFIED_SINCE, &earlier)]);
        assert_eq!(evaluate(&h, &v()), Precondition::Proceed);
        let h = headers(&[(&IF_MODIFIED_SINCE, "yesterday")]);
        assert_eq!(evaluate(&h, &v()), Precondition::Proceed);
        // RFC 850 and asctime forms are read too.
        let h = headers(&[(&IF_MODIFIED_SINCE, "Tue Nov 14 22:13:20 2023")]);
        assert_eq!(evaluate(&h, &v()), Precondition::NotModified);
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let same = http_date(1_700_000_000);
        let h = headers(&[(&IF_NONE_MATCH, "\"stale\""), (&IF_MODIFIED_SINCE, &same)]);
        assert_eq!(evaluate(&h, &v()), Precondition::Proceed);
        let earlier = http_date(1);
        let etag = v().etag;
        let h = headers(&[(&IF_NONE_MATCH, &etag), (&IF_MODIFIED_SINCE, &earlier)]);
        assert_eq!(evaluate(&h, &v()), Precondition::NotModified);
    }

    #[test]
    fn if_match_and_if_unmodified_since_fail_with_412() {
        let etag = v().etag;
        let h = headers(&[(&IF_MATCH, &etag)]);
        assert_eq!(evaluate(&h, &v()), Precondition::Proceed);
        let h = headers(&[(&IF_MATCH, "*")]);
        assert_eq!(evaluate(&h, &v()), Precondition::Proceed);
        let weak = format!("W/{etag}");
        let h = headers(&[(&IF_MATCH, &weak)]);
        assert_eq!(evaluate(&h, &v()), Precondition::Failed);
        let h = headers(&[(&IF_UNMODIFIED_SINCE, &http_date(1))]);
        assert_eq!(evaluate(&h, &v()), Precondition::Failed);
        let h = headers(&[(&IF_UNMODIFIED_SINCE, &http_date(1_700_000_000))]);
        assert_eq!(evaluate(&h, &v()), Precondition::Proceed);
    }

    #[test]
    fn if_range_needs_a_strong_tag_or_the_exact_date() {
        let etag = v().etag;
        assert!(v().if_range_holds(&etag));
        assert!(!v().if_range_holds(&format!("W/{etag}")));
        assert!(!v().if_range_holds("\"other\""));
        assert!(v().if_range_holds(&http_date(1_700_000_000)));
        assert!(!v().if_range_holds(&http_date(1_700_000_001)));
        assert!(!v().if_range_holds("garbage"));
    }
}
