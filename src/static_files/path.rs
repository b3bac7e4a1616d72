//! Where a request path lands: whether it lies under a mount's URL prefix, and which file below
//! the mount's directory it names. The request path arrives percent-encoded, as sent; it is
//! compared with the prefix decoded, segment by segment, and the rest is decoded one segment at
//! a time so that an encoded `/` can never become a separator. Anything that could step out of
//! the directory (`..`, `.`, empty segments, encoded slashes, backslashes, NUL) is refused here,
//! before the filesystem is touched; symlinks are `file`'s concern, after this.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::error::StaticError;

/// The value of one hex digit.
fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The escape `%XY` at the start of `raw`, decoded.
fn escape(raw: &[u8]) -> Option<u8> {
    match raw {
        [b'%', h, l, ..] => Some(hex(*h)? << 4 | hex(*l)?),
        _ => None,
    }
}

/// If the request path `raw` (percent-encoded) is `prefix` or lies below it, the byte offset
/// in `raw` where the rest starts; that rest is empty or starts with a literal `/`. `prefix` is
/// decoded text without a trailing `/` (`""` for the root mount). Each `/` of the prefix must be
/// a literal `/` of the path (an encoded one is data, not a separator); other bytes may be
/// encoded. Allocates nothing, so paths outside every mount cost a byte comparison.
pub(super) fn under(raw: &str, prefix: &str) -> Option<usize> {
    let raw = raw.as_bytes();
    let mut at = 0;
    for &want in prefix.as_bytes() {
        let (got, used) = match escape(&raw[at..]) {
            Some(b) if want != b'/' => (b, 3),
            _ => (*raw.get(at)?, 1),
        };
        if got != want {
            return None;
        }
        at += used;
    }
    match raw.get(at) {
        None | Some(b'/') => Some(at),
        Some(_) => None,
    }
}

/// The relative path the rest of a request path names below its mount's directory, checked
/// segment by segment. The rest is empty or starts with `/`; naming the directory itself is
/// [`StaticError::Directory`].
pub(super) fn relative(rest: &str) -> Result<PathBuf, StaticError> {
    let Some(rest) = rest.strip_prefix('/').filter(|r| !r.is_empty()) else {
        return Err(StaticError::Directory);
    };
    let mut path = PathBuf::new();
    let mut decoded = Vec::new();
    for segment in rest.split('/') {
        decode(segment.as_bytes(), &mut decoded)?;
        check(&decoded)?;
        path.push(OsStr::from_bytes(&decoded));
    }
    Ok(path)
}

/// Decodes one segment into `out`; a `%` not followed by two hex digits is malformed.
fn decode(raw: &[u8], out: &mut Vec<u8>) -> Result<(), StaticError> {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            out.push(escape(&raw[i..]).ok_or(StaticError::BadEncoding)?);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(())
}

/// Refuses a decoded segment that is not a plain file or directory name. `PathBuf::push` would
/// treat `..` as a step up and a leading `/` as a new root; neither can reach it past here.
fn check(segment: &[u8]) -> Result<(), StaticError> {
    let why = match segment {
        [] => "an empty path segment",
        b"." | b".." => "a dot segment",
        s if s.contains(&b'/') => "an encoded slash",
        s if s.contains(&b'\\') => "a backslash",
        s if s.contains(&0) => "a NUL byte",
        _ => return Ok(()),
    };
    Err(StaticError::Refused(why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn prefixes_match_whole_segments() {
        assert_eq!(under("/static/app.js", "/static"), Some(7));
        assert_eq!(under("/static", "/static"), Some(7));
        assert_eq!(under("/static/", "/static"), Some(7));
        assert_eq!(under("/staticx/a", "/static"), None);
        assert_eq!(under("/stati", "/static"), None);
        assert_eq!(under("/other", "/static"), None);
        assert_eq!(under("/a/b/c", "/a/b"), Some(4));
        // The root mount takes every path.
        assert_eq!(under("/", ""), Some(0));
        assert_eq!(under("/x", ""), Some(0));
        assert_eq!(under("*", ""), None);
    }

    #[test]
    fn prefixes_are_compared_decoded_but_slashes_must_be_literal() {
        assert_eq!(under("/%73tatic/a", "/static"), Some(9));
        assert_eq!(under("/st%61tic/a", "/static"), Some(9));
        assert_eq!(under("%2Fstatic/a", "/static"), None);
        assert_eq!(under("/a%2Fb/c", "/a/b"), None);
        // An encoded slash right after the prefix is data, not the next segment.
        assert_eq!(under("/static%2Fa", "/static"), None);
        assert_eq!(under("/st%zztic/a", "/static"), None);
    }

    #[test]
    fn the_rest_becomes_a_checked_relative_path() {
        assert_eq!(relative("/a.txt").unwrap(), Path::new("a.txt"));
        assert_eq!(
            relative("/css/site.css").unwrap(),
            Path::new("css/site.css")
        );
        assert_eq!(relative("/sp%20ace.txt").unwrap(), Path::new("sp ace.txt"));
        assert_eq!(relative("/%e2%82%ac.txt").unwrap(), Path::new("€.txt"));
        // Dots are only refused as whole segments.
        assert_eq!(relative("/%2e%2e.txt").unwrap(), Path::new("...txt"));
    }

    #[test]
    fn the_directory_itself_is_not_a_file() {
        assert!(matches!(relative(""), Err(StaticError::Directory)));
        assert!(matches!(relative("/"), Err(StaticError::Directory)));
    }

    #[test]
    fn traversal_is_refused_before_the_filesystem() {
        for rest in [
            "/../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/.%2e/secret",
            "/a/../../secret",
            "/./a",
            "/..%2Fsecret",
            "/%2F..%2Fsecret",
            "/a%2fb",
            "/..%5Csecret",
            "/a%5Cb",
            "/a\\b",
            "/a%00b",
            "//etc/passwd",
            "/a//b",
            "/a/",
        ] {
            assert!(
                matches!(relative(rest), Err(StaticError::Refused(_))),
                "{rest}: {:?}",
                relative(rest)
            );
        }
    }

    #[test]
    fn malformed_escapes_are_bad_requests() {
        for rest in ["/%", "/%4", "/%zz", "/a%g1"] {
            assert!(
                matches!(relative(rest), Err(StaticError::BadEncoding)),
                "{rest}"
            );
        }
    }
}
