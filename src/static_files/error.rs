//! Why a request under a `--static` mount gets no file, each reason with its status in one match
//! beside it. The error page itself is rendered by `http::error`, like every other error page;
//! answers that are not errors (304, 412, 416) are ordinary replies built in `reply`.

use http::header::{HeaderValue, ALLOW};
use http::{HeaderMap, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// Nothing of that name below the directory (or a name the filesystem refuses).
    #[error("no such file")]
    NotFound,
    /// The path names a directory; directories are never listed.
    #[error("the path names a directory")]
    Directory,
    /// The path could leave the directory, or resolves outside it (a symlink out).
    #[error("refused path: {0}")]
    Refused(&'static str),
    /// A `%` in the path not followed by two hex digits.
    #[error("malformed percent-encoding in the path")]
    BadEncoding,
    /// Only GET and HEAD read files.
    #[error("only GET and HEAD are allowed under a static mount")]
    Method,
    /// The file exists but the server may not read it.
    #[error("permission denied")]
    Forbidden,
    /// Anything else the filesystem said; logged, since it is the server's problem.
    #[error("cannot read the file: {0}")]
    Io(std::io::Error),
}

impl StaticError {
    pub fn status(&self) -> StatusCode {
        match self {
            // A refused path says nothing more than a missing file, so probing learns nothing.
            StaticError::NotFound | StaticError::Directory | StaticError::Refused(_) => {
                StatusCode::NOT_FOUND
            }
            StaticError::BadEncoding => StatusCode::BAD_REQUEST,
            StaticError::Method => StatusCode::METHOD_NOT_ALLOWED,
            StaticError::Forbidden => StatusCode::FORBIDDEN,
            StaticError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Headers the error page must carry.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        if let StaticError::Method = self {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
    }
}

impl From<std::io::Error> for StaticError {
    /// A name that cannot resolve to a file is "not found", whatever the exact reason.
    fn from(err: std::io::Error) -> StaticError {
        use nix::libc;
        match err.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
                return StaticError::NotFound
            }
            std::io::ErrorKind::PermissionDenied => return StaticError::Forbidden,
            _ => {}
        }
        match err.raw_os_error() {
            // A symlink loop (or, with O_NOFOLLOW, a final symlink that appeared since the path
            // was resolved), a name too long, or one with a byte the filesystem refuses.
            Some(libc::ELOOP | libc::ENAMETOOLONG | libc::EINVAL | libc::EILSEQ) => {
                StaticError::NotFound
            }
            _ => StaticError::Io(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(StaticError::Refused("x").status(), StatusCode::NOT_FOUND);
        assert_eq!(StaticError::Directory.status(), StatusCode::NOT_FOUND);
        assert_eq!(StaticError::BadEncoding.status(), StatusCode::BAD_REQUEST);
        let mut h = HeaderMap::new();
        StaticError::Method.add_headers(&mut h);
        assert_eq!(h[ALLOW], "GET, HEAD");
    }

    #[test]
    fn io_errors_map_to_not_found_where_the_name_is_at_fault() {
        let e = |code| StaticError::from(std::io::Error::from_raw_os_error(code));
        assert!(matches!(e(nix::libc::ENOENT), StaticError::NotFound));
        assert!(matches!(e(nix::libc::ENOTDIR), StaticError::NotFound));
        assert!(matches!(e(nix::libc::ELOOP), StaticError::NotFound));
        assert!(matches!(e(nix::libc::EACCES), StaticError::Forbidden));
        assert!(matches!(e(nix::libc::EIO), StaticError::Io(_)));
    }
}
