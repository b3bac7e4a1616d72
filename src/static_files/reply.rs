//! The answer to a request under a mount, decided in one pass: the method, the path, the
//! representation (a precompressed sibling when the client takes one), the preconditions, then
//! the range. The [`Reply`] carries the opened file, already positioned at the first byte to
//! send, so no later step reopens a path that may have changed meanwhile.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use http::header::{
    HeaderMap, HeaderValue, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, LAST_MODIFIED, SERVER, VARY,
};
use http::{Method, StatusCode};

use super::conditional::{self, Precondition};
use super::encoding::{self, Encoding};
use super::error::StaticError;
use super::file::{self, Opened};
use super::path;
use super::range::{self, Ranged};

/// What to answer: a status, its headers (`Content-Length` included whenever there is a body
/// or, for HEAD, would be), and the body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    /// No body: HEAD, 304, 412, 416.
    Empty,
    /// `len` bytes of `file` from its current position.
    File { file: File, len: u64 },
}

impl Reply {
    /// The body bytes this reply sends, for the access log.
    pub fn body_len(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::File { len, .. } => *len,
        }
    }
}

/// Answers a request whose path is `rest` below the canonical directory `root`.
pub(super) fn serve(
    root: &Path,
    rest: &str,
    parts: &http::request::Parts,
) -> Result<Reply, StaticError> {
    let head = match parts.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Err(StaticError::Method),
    };
    let wanted = root.join(path::relative(rest)?);
    let real = file::locate(root, &wanted)?;
    let (opened, has_siblings) = representation(root, &wanted, &real, &parts.headers)?;

    let mut headers = HeaderMap::with_capacity(10);
    headers.insert(SERVER, HeaderValue::from_static("ferrocorn"));
    if let Ok(etag) = HeaderValue::from_str(&opened.validators.etag) {
        headers.insert(ETAG, etag);
    }
    if let Some(modified) = opened.validators.modified {
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            headers.insert(LAST_MODIFIED, date);
        }
    }
    if has_siblings {
        // Caches must key on Accept-Encoding, whichever representation this client got.
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    match conditional::evaluate(&parts.headers, &opened.validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => return Ok(empty(StatusCode::NOT_MODIFIED, headers)),
        Precondition::Failed => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            return Ok(empty(StatusCode::PRECONDITION_FAILED, headers));
        }
    }
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let Opened {
        mut file,
        len: total,
        validators,
        encoding,
    } = opened;
    // RFC 9110 defines ranges for GET only; a HEAD gets the headers of the whole file.
    let ranged = match head {
        true => Ranged::Full,
        false => range::select(&parts.headers, total, &validators),
    };
    let (status, start, len) = match ranged {
        Ranged::Full => (StatusCode::OK, 0, total),
        Ranged::Partial { start, len } => {
            let range = format!("bytes {start}-{}/{total}", start + len - 1);
            if let Ok(v) = HeaderValue::from_str(&range) {
                headers.insert(CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, len)
        }
        Ranged::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                headers.insert(CONTENT_RANGE, v);
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            return Ok(empty(StatusCode::RANGE_NOT_SATISFIABLE, headers));
        }
    };
    // The type of what the client asked for, also when a compressed sibling is sent.
    headers.insert(CONTENT_TYPE, file::content_type(&wanted));
    if let Some(e) = encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(e.token()));
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if head {
        return Ok(empty(status, headers));
    }
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    Ok(Reply {
        status,
        headers,
        body: Body::File { file, len },
    })
}

fn empty(status: StatusCode, headers: HeaderMap) -> Reply {
    Reply {
        status,
        headers,
        body: Body::Empty,
    }
}

/// Opens what to send for `wanted` (located at `real`): the sibling of the coding the client
/// prefers among those on disk, else the file itself; and whether any sibling exists (which
/// makes the answer vary with `Accept-Encoding`).
fn representation(
    root: &Path,
    wanted: &Path,
    real: &Path,
    headers: &HeaderMap,
) -> Result<(Opened, bool), StaticError> {
    let siblings: Vec<(Encoding, std::path::PathBuf)> = Encoding::ALL
        .into_iter()
        .filter_map(|e| Some((e, file::sibling(root, wanted, e)?)))
        .collect();
    if !siblings.is_empty() {
        for wanted_coding in encoding::accepted(headers) {
            let Some((_, path)) = siblings.iter().find(|(e, _)| *e == wanted_coding) else {
                continue;
            };
            // A sibling that vanished since it was found is no reason to fail the request.
            if let Ok(opened) = file::open(path, Some(wanted_coding)) {
                return Ok((opened, true));
            }
        }
    }
    Ok((file::open(real, None)?, !siblings.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn site(name: &str) -> (Dir, std::path::PathBuf) {
        let tmp =
            std::env::temp_dir().join(format!("ferrocorn-reply-{name}-{}", std::process::id()));
        let root = tmp.join("root");
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::write(root.join("a.txt"), b"0123456789").unwrap();
        std::fs::write(root.join("app.js"), b"plain js").unwrap();
        std::fs::write(root.join("app.js.br"), b"BR").unwrap();
        std::fs::write(root.join("app.js.gz"), b"GZIP").unwrap();
        let root = root.canonicalize().unwrap();
        (Dir(tmp), root)
    }

    fn req(method: Method, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn body(reply: Reply) -> Vec<u8> {
        let mut out = Vec::new();
        if let Body::File { mut file, len } = reply.body {
            (&mut file).take(len).read_to_end(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn a_file_with_its_headers() {
        let (_d, root) = site("plain");
        let r = serve(&root, "/a.txt", &req(Method::GET, &[])).unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(r.headers[CONTENT_LENGTH], "10");
        assert_eq!(r.headers[ACCEPT_RANGES], "bytes");
        assert!(r.headers.contains_key(ETAG) && r.headers.contains_key(LAST_MODIFIED));
        assert!(!r.headers.contains_key(VARY));
        assert_eq!(body(r), b"0123456789");
    }

    #[test]
    fn head_has_the_headers_and_no_body() {
        let (_d, root) = site("head");
        let r = serve(
            &root,
            "/a.txt",
            &req(Method::HEAD, &[("range", "bytes=0-1")]),
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers[CONTENT_LENGTH], "10");
        assert!(matches!(r.body, Body::Empty));
    }

    #[test]
    fn ranges_are_positioned() {
        let (_d, root) = site("range");
        let r = serve(&root, "/a.txt", &req(Method::GET, &[("range", "bytes=-3")])).unwrap();
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers[CONTENT_RANGE], "bytes 7-9/10");
        assert_eq!(body(r), b"789");
        let r = serve(
            &root,
            "/a.txt",
            &req(Method::GET, &[("range", "bytes=10-")]),
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers[CONTENT_RANGE], "bytes */10");
    }

    #[test]
    fn precompressed_siblings() {
        let (_d, root) = site("enc");
        let get = |ae: &str| {
            serve(
                &root,
                "/app.js",
                &req(Method::GET, &[("accept-encoding", ae)]),
            )
            .unwrap()
        };
        let r = get("gzip, br");
        assert_eq!(r.headers[CONTENT_ENCODING], "br");
        assert_eq!(r.headers[VARY], "Accept-Encoding");
        assert!(r.headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript"));
        let br_etag = r.headers[ETAG].clone();
        assert_eq!(body(r), b"BR");
        let r = get("gzip, br;q=0");
        assert_eq!(r.headers[CONTENT_ENCODING], "gzip");
        assert_ne!(r.headers[ETAG], br_etag);
        assert_eq!(body(r), b"GZIP");
        let r = get("identity");
        assert!(!r.headers.contains_key(CONTENT_ENCODING));
        assert_eq!(r.headers[VARY], "Accept-Encoding");
        assert_eq!(body(r), b"plain js");
    }

    #[test]
    fn not_modified_keeps_validators_and_drops_the_body() {
        let (_d, root) = site("304");
        let first = serve(&root, "/a.txt", &req(Method::GET, &[])).unwrap();
        let etag = first.headers[ETAG].to_str().unwrap().to_string();
        let r = serve(
            &root,
            "/a.txt",
            &req(Method::GET, &[("if-none-match", &etag)]),
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers[ETAG], etag.as_str());
        assert!(r.headers.contains_key(LAST_MODIFIED));
        assert!(!r.headers.contains_key(CONTENT_LENGTH));
        assert!(matches!(r.body, Body::Empty));
    }

    #[test]
    fn errors() {
        let (_d, root) = site("err");
        let err = |m: Method, rest: &str| serve(&root, rest, &req(m, &[])).unwrap_err();
        assert!(matches!(err(Method::POST, "/a.txt"), StaticError::Method));
        assert!(matches!(err(Method::GET, "/dir"), StaticError::Directory));
        assert!(matches!(err(Method::GET, ""), StaticError::Directory));
        assert!(matches!(err(Method::GET, "/nope"), StaticError::NotFound));
        assert!(matches!(
            err(Method::GET, "/../root/a.txt"),
            StaticError::Refused(_)
        ));
    }
}
