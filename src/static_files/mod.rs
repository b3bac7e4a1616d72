//! `--static URL_PREFIX=DIR`: files served from Rust, never through the Python pool. This
//! module owns the mount table and everything between a request head and a [`Reply`]: where
//! the path lands (`path`), the file and its siblings (`file`), content codings (`encoding`),
//! preconditions (`conditional`), ranges (`range`), and the answer (`reply`), with its errors
//! (`error`). It knows the `http` crate's types and the filesystem, not hyper, sockets or
//! Python: `http::static_reply` runs [`Mounts::serve`] on a blocking thread, streams the body
//! with the same file body `wsgi.file_wrapper` uses, and writes the access-log line.
//!
//! Data flow: `Mounts::find` (on the connection's task, allocation-free) says whether a path
//! is under a mount; only then `Mounts::serve` (blocking) resolves, opens and decides.

mod conditional;
mod encoding;
mod error;
mod file;
mod path;
mod range;
mod reply;

use std::path::PathBuf;

use crate::config::StaticMount;

pub use error::StaticError;
pub use reply::{Body, Reply};

/// The mounts of one server, most specific prefix first.
#[derive(Debug)]
pub struct Mounts {
    mounts: Vec<Mount>,
}

#[derive(Debug)]
struct Mount {
    /// Decoded, no trailing `/`; empty for the root mount.
    prefix: String,
    /// Canonical (resolved at startup), so a served file's real path must start with it.
    root: PathBuf,
}

/// A request path found under a mount: which one, and where the rest of the path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    mount: usize,
    rest: usize,
}

impl Mounts {
    /// The mounts of resolved `--static` settings. A longer prefix is tried first, so
    /// `/static/img` wins over `/static` for its paths; of two equal prefixes the first given
    /// wins.
    pub fn new(settings: &[StaticMount]) -> Mounts {
        let mut mounts: Vec<Mount> = settings
            .iter()
            .map(|m| Mount {
                prefix: m.prefix.clone(),
                root: m.dir.clone(),
            })
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        Mounts { mounts }
    }

    /// The mount a request path (as sent, percent-encoded) lies under, if any.
    pub fn find(&self, path: &str) -> Option<Hit> {
        self.mounts
            .iter()
            .enumerate()
            .find_map(|(mount, m)| path::under(path, &m.prefix).map(|rest| Hit { mount, rest }))
    }

    /// Answers a request found under a mount. Blocking (filesystem calls): run it off the
    /// async runtime.
    pub fn serve(&self, hit: Hit, parts: &http::request::Parts) -> Result<Reply, StaticError> {
        let mount = self.mounts.get(hit.mount).ok_or(StaticError::NotFound)?;
        let rest = parts.uri.path().get(hit.rest..).unwrap_or("");
        reply::serve(&mount.root, rest, parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(specs: &[&str]) -> Mounts {
        let parsed: Vec<_> = specs
            .iter()
            .map(|s| StaticMount::parse(s).unwrap())
            .collect();
        Mounts::new(&parsed)
    }

    #[test]
    fn the_longest_prefix_wins() {
        let m = mounts(&["/static=a", "/static/img=b", "/=c"]);
        let root = |p: &str| m.find(p).map(|h| m.mounts[h.mount].root.clone());
        assert_eq!(root("/static/img/x.png"), Some(PathBuf::from("b")));
        assert_eq!(root("/static/imgx.png"), Some(PathBuf::from("a")));
        assert_eq!(root("/other"), Some(PathBuf::from("c")));
        let m = mounts(&["/static=a"]);
        assert_eq!(m.find("/app"), None);
        assert_eq!(m.find("/static/x"), Some(Hit { mount: 0, rest: 7 }));
    }
}
