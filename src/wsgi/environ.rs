//! The WSGI environ. The part that never changes (`wsgi.version`, `SERVER_SOFTWARE`,
//! `wsgi.errors`, …) is built once into a template dict that each request copies; the rest comes
//! from the request head and the connection. Keys are interned. Path decoding and header-name
//! mapping are pure functions, tested without Python.

use std::borrow::Cow;

use std::net::IpAddr;

use http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{Method, Version};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};
use pyo3::{intern, Py};

use super::errors::ErrorStream;
use super::file_wrapper::FileWrapper;
use super::{ConnInfo, Failure};
use crate::config::{AllowList, HeaderMapMode, ProxySettings};

/// What every request's environ starts from, built once at startup.
pub struct Statics {
    template: Py<PyDict>,
    /// The mount point (`SCRIPT_NAME` env var), without a trailing slash; empty at the root.
    script_name: String,
    /// What `Served` carries past the response, for the access log.
    pub(super) keep: Keep,
    headers: HeaderPolicy,
    /// Run around every request (hooks), when any.
    pub(super) around: Option<std::sync::Arc<dyn super::Around>>,
}

/// What a served request keeps for whoever logs it; nothing by default, so requests that are
/// not logged that way pay nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    /// The response headers as sent.
    pub response_headers: bool,
    /// The environ dict.
    pub environ: bool,
}

impl Statics {
    pub fn new(
        py: Python<'_>,
        script_name: &str,
        multithread: bool,
        multiprocess: bool,
        keep: Keep,
        headers: HeaderPolicy,
    ) -> PyResult<Statics> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "wsgi.version"), PyTuple::new(py, [1, 0])?)?;
        d.set_item(
            intern!(py, "wsgi.multithread"),
            PyBool::new(py, multithread),
        )?;
        d.set_item(intern!(py, "wsgi.multiprocess"), multiprocess)?;
        d.set_item(intern!(py, "wsgi.run_once"), false)?;
        d.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        d.set_item(intern!(py, "wsgi.errors"), Py::new(py, ErrorStream)?)?;
        d.set_item(
            intern!(py, "wsgi.file_wrapper"),
            py.get_type::<FileWrapper>(),
        )?;
        d.set_item(
            intern!(py, "SERVER_SOFTWARE"),
            concat!("ferrocorn/", env!("CARGO_PKG_VERSION")),
        )?;
        d.set_item(intern!(py, "SCRIPT_NAME"), script_name)?;
        presize(py, &d)?;
        Ok(Statics {
            template: d.unbind(),
            script_name: script_name.to_string(),
            keep,
            headers,
            around: None,
        })
    }

    /// Runs `around` around every request.
    pub fn with_around(mut self, around: std::sync::Arc<dyn super::Around>) -> Statics {
        self.around = Some(around);
        self
    }
}

/// The keys `build` sets for every request. A key listed here that `build` stopped setting would
/// reach the app as `None`; `test_environ_core_keys` checks that none does.
const PER_REQUEST: [&str; 11] = [
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "wsgi.input",
    "SERVER_NAME",
    "SERVER_PORT",
];

/// Shapes the template so that a request's environ never grows its hash table: the keys every
/// request sets are placed in it already (`build` replaces their values, a lookup instead of
/// an insert), and the table is grown once to room for ~40 entries before the padding is taken
/// out again. A dict's copy keeps its table's size, so each environ starts with that room
/// instead of being resized once or twice as the request's entries and headers go in. Only
/// speed depends on this; any dict layout gives the same environ.
fn presize(py: Python<'_>, template: &Bound<'_, PyDict>) -> PyResult<()> {
    for key in PER_REQUEST {
        template.set_item(PyString::intern(py, key), py.None())?;
    }
    let pad: Vec<String> = (template.len()..ENVIRON_ROOM)
        .map(|i| format!("ferrocorn.pad{i}"))
        .collect();
    for key in &pad {
        template.set_item(key, py.None())?;
    }
    for key in &pad {
        template.del_item(key)?;
    }
    Ok(())
}

/// Entries a template must reach for CPython to grow its table to 64 slots (42 usable).
const ENVIRON_ROOM: usize = 22;

/// Why a request cannot be turned into an environ.
#[derive(Debug, thiserror::Error)]
pub(super) enum EnvironError {
    #[error("request path {path:?} is outside SCRIPT_NAME {script_name:?}")]
    OutsideScriptName { path: String, script_name: String },
    #[error("Invalid header name: {0} (--header-map refuse)")]
    UnderscoreHeader(String),
    #[error("Contradictory scheme headers")]
    ContradictoryScheme,
}

impl EnvironError {
    pub(super) fn failure(&self) -> Failure {
        match self {
            EnvironError::OutsideScriptName { .. } => Failure::OutsideScriptName,
            EnvironError::UnderscoreHeader(_) | EnvironError::ContradictoryScheme => {
                Failure::BadHeaders(self.to_string())
            }
        }
    }
}

/// What a request may say about itself through headers, and who may say it (gunicorn's
/// `forwarded_allow_ips`, `secure_scheme_headers`, `forwarder_headers`, `header_map`).
pub struct HeaderPolicy {
    allow: AllowList,
    secure: Vec<(HeaderName, Vec<u8>)>,
    forwarders: Vec<String>,
    any_forwarder: bool,
    mode: HeaderMapMode,
}

impl HeaderPolicy {
    pub fn new(proxy: &ProxySettings) -> HeaderPolicy {
        HeaderPolicy {
            allow: proxy.forwarded_allow.clone(),
            secure: proxy
                .secure_scheme_headers
                .iter()
                .filter_map(|(name, value)| {
                    let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?;
                    Some((name, value.as_bytes().to_vec()))
                })
                .collect(),
            forwarders: proxy.forwarder_headers.clone(),
            any_forwarder: proxy.forwarder_headers.iter().any(|h| h == "*"),
            mode: proxy.header_map,
        }
    }

    /// Decides the scheme, a forwarded `SCRIPT_NAME`, and which underscore headers are kept.
    fn review(&self, headers: &http::HeaderMap, conn: &ConnInfo) -> Result<Review, EnvironError> {
        let mut review = Review {
            scheme: conn.url_scheme,
            script_name: None,
            keep: Vec::new(),
        };
        let mut trusted = None;
        // Unix-socket peers (no address) are trusted, as in gunicorn.
        let mut is_trusted = || {
            *trusted.get_or_insert_with(|| match conn.remote_addr.parse::<IpAddr>() {
                Ok(ip) => self.allow.allows(ip),
                Err(_) => conn.is_unix(),
            })
        };
        let mut seen = false;
        for (name, https) in &self.secure {
            for value in headers.get_all(name) {
                if !is_trusted() {
                    break;
                }
                let scheme = if value.as_bytes() == https.as_slice() {
                    "https"
                } else {
                    "http"
                };
                if seen && scheme != review.scheme {
                    return Err(EnvironError::ContradictoryScheme);
                }
                review.scheme = scheme;
                seen = true;
            }
        }
        for name in headers.keys().filter(|n| n.as_str().contains('_')) {
            let upper = name.as_str().to_ascii_uppercase();
            let forwarded =
                (self.any_forwarder || self.forwarders.contains(&upper)) && is_trusted();
            if forwarded {
                if upper == "SCRIPT_NAME" {
                    let last = headers.get_all(name).iter().next_back();
                    review.script_name =
                        last.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                }
                review.keep.push(name.clone());
                continue;
            }
            match self.mode {
                HeaderMapMode::Drop => {}
                HeaderMapMode::Dangerous => review.keep.push(name.clone()),
                HeaderMapMode::Refuse => return Err(EnvironError::UnderscoreHeader(upper)),
            }
        }
        Ok(review)
    }
}

/// One request's header decisions.
struct Review {
    scheme: &'static str,
    /// `SCRIPT_NAME` sent by a trusted proxy.
    script_name: Option<String>,
    /// Underscore header names mapped into the environ.
    keep: Vec<HeaderName>,
}

/// Builds the environ for one request; `input` becomes `wsgi.input`.
pub(super) fn build<'py>(
    py: Python<'py>,
    statics: &Statics,
    parts: &Parts,
    raw_target: Option<&str>,
    conn: &ConnInfo,
    input: Bound<'py, PyAny>,
) -> PyResult<Result<Bound<'py, PyDict>, EnvironError>> {
    let (raw_uri, path, query) = match raw_target {
        Some(raw) => {
            let (path, query) = split_target(raw);
            (Cow::Borrowed(raw), path, query)
        }
        None => (
            raw_uri(&parts.uri),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
        ),
    };
    let review = match statics.headers.review(&parts.headers, conn) {
        Ok(r) => r,
        Err(err) => return Ok(Err(err)),
    };
    let script_name = review
        .script_name
        .as_deref()
        .unwrap_or(&statics.script_name);
    let path_info = decode_path(path);
    let path_info = match strip_script_name(&path_info, script_name) {
        Some(p) => p,
        None => {
            return Ok(Err(EnvironError::OutsideScriptName {
                path: String::from_utf8_lossy(&path_info).into_owned(),
                script_name: script_name.to_string(),
            }))
        }
    };

    let env = statics.template.bind(py).copy()?;
    env.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, &parts.method))?;
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info))?;
    env.set_item(intern!(py, "QUERY_STRING"), query)?;
    env.set_item(intern!(py, "RAW_URI"), raw_uri.as_ref())?;
    env.set_item(
        intern!(py, "SERVER_PROTOCOL"),
        protocol_str(py, parts.version),
    )?;
    let strings = conn.py_strings(py);
    env.set_item(intern!(py, "REMOTE_ADDR"), strings.remote_addr.bind(py))?;
    env.set_item(intern!(py, "REMOTE_PORT"), strings.remote_port.bind(py))?;
    env.set_item(intern!(py, "wsgi.url_scheme"), review.scheme)?;
    // The connection's own TLS, as Apache's mod_ssl and nginx's fastcgi params say it.
    if conn.url_scheme == "https" {
        env.set_item(intern!(py, "HTTPS"), intern!(py, "on"))?;
        if let Some(cert) = &strings.client_cert {
            env.set_item(intern!(py, "SSL_CLIENT_CERT"), cert.bind(py))?;
        }
    }
    if let Some(forwarded) = &review.script_name {
        env.set_item(intern!(py, "SCRIPT_NAME"), forwarded)?;
    }
    env.set_item(intern!(py, "wsgi.input"), input)?;

    // As gunicorn: a TCP listener names itself; behind a Unix socket the Host header (and the
    // scheme's default port) stands in for the address the socket does not have.
    let host = parts.headers.get(HOST).map(|h| h.as_bytes());
    match host {
        Some(host) if conn.is_unix() && !host.is_empty() => {
            let (name, port) = split_host(host, review.scheme);
            env.set_item(intern!(py, "SERVER_NAME"), name)?;
            env.set_item(intern!(py, "SERVER_PORT"), port)?;
        }
        _ => {
            env.set_item(intern!(py, "SERVER_NAME"), strings.server_name.bind(py))?;
            env.set_item(intern!(py, "SERVER_PORT"), strings.server_port.bind(py))?;
        }
    }

    for key in parts.headers.keys() {
        if key.as_str().contains('_') && !review.keep.contains(key) {
            continue;
        }
        let mut values = parts.headers.get_all(key).iter();
        let Some(first) = values.next() else { continue };
        let value = match values.next() {
            None => latin1(py, Cow::Borrowed(first.as_bytes())),
            Some(second) => {
                let mut joined = first.as_bytes().to_vec();
                for v in std::iter::once(second).chain(values) {
                    joined.push(b',');
                    joined.extend_from_slice(v.as_bytes());
                }
                latin1(py, Cow::Owned(joined))
            }
        };
        match common_key(py, key.as_str()) {
            Some(k) => env.set_item(k, value)?,
            None => env.set_item(header_key(key), value)?,
        }
    }
    Ok(Ok(env))
}

/// One request's environ exactly as `serve` builds it (with `wsgi.input` left `None`), for the
/// criterion benchmarks in `benches/micro/`, which measure it apart from hyper and the app.
#[doc(hidden)]
pub fn build_for_bench<'py>(
    py: Python<'py>,
    statics: &Statics,
    parts: &Parts,
    conn: &ConnInfo,
) -> PyResult<Bound<'py, PyDict>> {
    build(py, statics, parts, None, conn, py.None().into_bound(py))?
        .map_err(|err| pyo3::exceptions::PyValueError::new_err(err.to_string()))
}

/// The environ key of a header most requests carry, as a Python string made once (its hash
/// kept): a request pays no allocation and no hashing for these keys. Names arrive lower-case
/// from hyper. `header_key` gives the same key for every name here (a test checks).
macro_rules! common_keys {
    ($($name:literal => $key:literal,)*) => {
        fn common_key<'py>(py: Python<'py>, name: &str) -> Option<&'py Bound<'py, PyString>> {
            Some(match name {
                $($name => intern!(py, $key),)*
                _ => return None,
            })
        }

        #[cfg(test)]
        const COMMON_KEYS: &[(&str, &str)] = &[$(($name, $key),)*];
    };
}

common_keys! {
    "host" => "HTTP_HOST",
    "user-agent" => "HTTP_USER_AGENT",
    "accept" => "HTTP_ACCEPT",
    "accept-encoding" => "HTTP_ACCEPT_ENCODING",
    "accept-language" => "HTTP_ACCEPT_LANGUAGE",
    "connection" => "HTTP_CONNECTION",
    "cookie" => "HTTP_COOKIE",
    "referer" => "HTTP_REFERER",
    "origin" => "HTTP_ORIGIN",
    "authorization" => "HTTP_AUTHORIZATION",
    "cache-control" => "HTTP_CACHE_CONTROL",
    "pragma" => "HTTP_PRAGMA",
    "content-type" => "CONTENT_TYPE",
    "content-length" => "CONTENT_LENGTH",
    "if-none-match" => "HTTP_IF_NONE_MATCH",
    "if-modified-since" => "HTTP_IF_MODIFIED_SINCE",
    "range" => "HTTP_RANGE",
    "upgrade-insecure-requests" => "HTTP_UPGRADE_INSECURE_REQUESTS",
    "sec-fetch-dest" => "HTTP_SEC_FETCH_DEST",
    "sec-fetch-mode" => "HTTP_SEC_FETCH_MODE",
    "sec-fetch-site" => "HTTP_SEC_FETCH_SITE",
    "sec-fetch-user" => "HTTP_SEC_FETCH_USER",
    "sec-ch-ua" => "HTTP_SEC_CH_UA",
    "sec-ch-ua-mobile" => "HTTP_SEC_CH_UA_MOBILE",
    "sec-ch-ua-platform" => "HTTP_SEC_CH_UA_PLATFORM",
    "priority" => "HTTP_PRIORITY",
    "dnt" => "HTTP_DNT",
    "x-requested-with" => "HTTP_X_REQUESTED_WITH",
    "x-csrftoken" => "HTTP_X_CSRFTOKEN",
    "x-forwarded-for" => "HTTP_X_FORWARDED_FOR",
    "x-forwarded-proto" => "HTTP_X_FORWARDED_PROTO",
    "x-forwarded-host" => "HTTP_X_FORWARDED_HOST",
    "x-forwarded-port" => "HTTP_X_FORWARDED_PORT",
    "x-real-ip" => "HTTP_X_REAL_IP",
    "x-request-id" => "HTTP_X_REQUEST_ID",
    "forwarded" => "HTTP_FORWARDED",
}

/// `user-agent` → `HTTP_USER_AGENT`; `content-type` and `content-length` lose the prefix.
/// Names with `_` map onto the same keys as names with `-`, which is why `HeaderPolicy`
/// decides first whether they get here at all.
fn header_key(name: &http::HeaderName) -> Cow<'static, str> {
    if name == CONTENT_TYPE {
        return Cow::Borrowed("CONTENT_TYPE");
    }
    if name == CONTENT_LENGTH {
        return Cow::Borrowed("CONTENT_LENGTH");
    }
    let s = name.as_str();
    let mut key = String::with_capacity(5 + s.len());
    key.push_str("HTTP_");
    key.extend(s.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    Cow::Owned(key)
}

/// Percent-decodes a path to bytes. Invalid escapes stay as they are, as in `urllib.parse`.
pub(crate) fn decode_path(path: &str) -> Cow<'_, [u8]> {
    let bytes = path.as_bytes();
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// The value of one hex digit.
fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `PATH_INFO` without the mount point; `None` when the path is outside it.
fn strip_script_name<'a>(path: &Cow<'a, [u8]>, script_name: &str) -> Option<Cow<'a, [u8]>> {
    if script_name.is_empty() {
        return Some(path.clone());
    }
    let rest = path.strip_prefix(script_name.as_bytes())?;
    if !rest.is_empty() && rest[0] != b'/' {
        return None;
    }
    Some(Cow::Owned(rest.to_vec()))
}

/// The request target as the client sent it (origin form, absolute form, `*`).
fn raw_uri(uri: &http::Uri) -> Cow<'_, str> {
    if uri.scheme().is_none() && uri.authority().is_none() {
        match uri.path_and_query() {
            Some(pq) => Cow::Borrowed(pq.as_str()),
            None => Cow::Borrowed(uri.path()),
        }
    } else {
        Cow::Owned(uri.to_string())
    }
}

/// A raw target's path and query: origin form `/p?q`, or absolute form `http://h/p?q` (whose
/// path may be empty, as gunicorn reports it). Only a target that does not start with `/` can
/// be in absolute form: a URL inside a query (`/p?next=http://h/x`) must never pick the path.
fn split_target(raw: &str) -> (&str, &str) {
    let raw = raw.split_once('#').map_or(raw, |(t, _)| t);
    let authority = match raw.starts_with('/') {
        true => None,
        false => raw
            .split_once("://")
            .filter(|(scheme, _)| is_scheme(scheme))
            .map(|(_, rest)| rest),
    };
    let path_query = match authority {
        Some(rest) => rest.find(['/', '?']).map_or("", |i| &rest[i..]),
        None => raw,
    };
    path_query.split_once('?').unwrap_or((path_query, ""))
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// `Host: example.com:8080` → (`example.com`, `8080`); no port → the scheme's default.
fn split_host(host: &[u8], scheme: &str) -> (String, String) {
    let host = String::from_utf8_lossy(host);
    let default_port = if scheme == "https" { "443" } else { "80" };
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => (format!("[{v6}]"), after.strip_prefix(':').unwrap_or("")),
            None => (host.to_string(), ""),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name.to_string(), port),
            None => (host.to_string(), ""),
        }
    };
    let port = if port.is_empty() { default_port } else { port };
    (name, port.to_string())
}

/// Bytes as a `str` where each byte is one code point (PEP 3333's "bytes as latin-1").
fn latin1<'py>(py: Python<'py>, bytes: Cow<'_, [u8]>) -> Bound<'py, PyString> {
    match std::str::from_utf8(&bytes) {
        Ok(s) if s.is_ascii() => PyString::new(py, s),
        _ => {
            let s: String = bytes.iter().map(|&b| b as char).collect();
            PyString::new(py, &s)
        }
    }
}

fn method_str<'py>(py: Python<'py>, m: &Method) -> Bound<'py, PyString> {
    match *m {
        Method::GET => intern!(py, "GET").clone(),
        Method::POST => intern!(py, "POST").clone(),
        Method::HEAD => intern!(py, "HEAD").clone(),
        _ => PyString::new(py, m.as_str()),
    }
}

fn protocol_str<'py>(py: Python<'py>, v: Version) -> Bound<'py, PyString> {
    match v {
        Version::HTTP_10 => intern!(py, "HTTP/1.0").clone(),
        Version::HTTP_2 => intern!(py, "HTTP/2").clone(),
        _ => intern!(py, "HTTP/1.1").clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_decoded_to_bytes() {
        assert_eq!(&*decode_path("/a/b"), b"/a/b");
        assert_eq!(&*decode_path("/a%20b"), b"/a b");
        assert_eq!(&*decode_path("/%E2%82%AC"), "/€".as_bytes());
        assert_eq!(&*decode_path("/%2Fx"), b"//x");
        assert_eq!(&*decode_path("/bad%zz%4"), b"/bad%zz%4");
        assert_eq!(&*decode_path("/end%"), b"/end%");
        assert_eq!(&*decode_path("%41"), b"A");
    }

    #[test]
    fn script_name_is_stripped_at_a_segment_boundary() {
        let p = Cow::Borrowed(&b"/app/x"[..]);
        assert_eq!(strip_script_name(&p, "").as_deref(), Some(&b"/app/x"[..]));
        assert_eq!(strip_script_name(&p, "/app").as_deref(), Some(&b"/x"[..]));
        assert_eq!(
            strip_script_name(&Cow::Borrowed(&b"/app"[..]), "/app").as_deref(),
            Some(&b""[..])
        );
        assert_eq!(
            strip_script_name(&Cow::Borrowed(&b"/apple"[..]), "/app"),
            None
        );
        assert_eq!(strip_script_name(&p, "/other"), None);
    }

    #[test]
    fn header_names_map_like_gunicorn() {
        let k = |s: &str| header_key(&http::HeaderName::from_bytes(s.as_bytes()).unwrap());
        assert_eq!(k("user-agent"), "HTTP_USER_AGENT");
        assert_eq!(k("content-type"), "CONTENT_TYPE");
        assert_eq!(k("content-length"), "CONTENT_LENGTH");
        assert_eq!(k("x_forwarded_for"), "HTTP_X_FORWARDED_FOR");
        assert_eq!(k("x-custom-thing"), "HTTP_X_CUSTOM_THING");
    }

    #[test]
    fn common_keys_are_what_the_mapping_gives() {
        for (name, key) in COMMON_KEYS {
            assert_eq!(
                *key,
                header_key(&http::HeaderName::from_static(name)),
                "{name}"
            );
        }
        Python::attach(|py| {
            let key = common_key(py, "user-agent").unwrap();
            assert_eq!(key.to_str().unwrap(), "HTTP_USER_AGENT");
            assert!(common_key(py, "x-custom-thing").is_none());
        });
    }

    fn policy(allow: &str, mode: HeaderMapMode) -> HeaderPolicy {
        HeaderPolicy::new(&ProxySettings {
            forwarded_allow: AllowList::parse(allow),
            secure_scheme_headers: vec![
                ("X-FORWARDED-PROTO".into(), "https".into()),
                ("X-FORWARDED-SSL".into(), "on".into()),
            ],
            forwarder_headers: vec!["SCRIPT_NAME".into()],
            header_map: mode,
        })
    }

    fn peer(addr: &str) -> ConnInfo {
        ConnInfo::new(
            addr.into(),
            "1".into(),
            "s".into(),
            "80".into(),
            "http",
            None,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn secure_scheme_headers_from_trusted_peers_only() {
        let p = policy("127.0.0.1", HeaderMapMode::Drop);
        let h = headers(&[("x-forwarded-proto", "https")]);
        assert_eq!(p.review(&h, &peer("127.0.0.1")).unwrap().scheme, "https");
        assert_eq!(p.review(&h, &peer("10.0.0.9")).unwrap().scheme, "http");
        // A Unix-socket peer has no address and is trusted.
        assert_eq!(p.review(&h, &peer("")).unwrap().scheme, "https");
        let h = headers(&[("x-forwarded-proto", "http")]);
        assert_eq!(p.review(&h, &peer("127.0.0.1")).unwrap().scheme, "http");
    }

    #[test]
    fn disagreeing_scheme_headers_are_refused() {
        let p = policy("*", HeaderMapMode::Drop);
        let h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "off")]);
        assert!(matches!(
            p.review(&h, &peer("1.2.3.4")),
            Err(EnvironError::ContradictoryScheme)
        ));
        let h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "on")]);
        assert_eq!(p.review(&h, &peer("1.2.3.4")).unwrap().scheme, "https");
        // From an untrusted peer they are not even read.
        let p = policy("127.0.0.1", HeaderMapMode::Drop);
        let h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "off")]);
        assert_eq!(p.review(&h, &peer("1.2.3.4")).unwrap().scheme, "http");
    }

    #[test]
    fn underscore_headers_follow_header_map_and_forwarders() {
        let h = headers(&[("x_evil", "1"), ("script_name", "/app")]);
        let r = policy("127.0.0.1", HeaderMapMode::Drop)
            .review(&h, &peer("127.0.0.1"))
            .unwrap();
        assert_eq!(r.keep, [HeaderName::from_static("script_name")]);
        assert_eq!(r.script_name.as_deref(), Some("/app"));
        let r = policy("127.0.0.1", HeaderMapMode::Drop)
            .review(&h, &peer("10.0.0.1"))
            .unwrap();
        assert!(r.keep.is_empty() && r.script_name.is_none());
        let r = policy("127.0.0.1", HeaderMapMode::Dangerous)
            .review(&h, &peer("10.0.0.1"))
            .unwrap();
        assert_eq!(r.keep.len(), 2);
        let err = policy("127.0.0.1", HeaderMapMode::Refuse)
            .review(&h, &peer("10.0.0.1"))
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("Invalid header name: "),
            "{err}"
        );
    }

    #[test]
    fn host_header_gives_server_name_and_port() {
        assert_eq!(
            split_host(b"example.com:8080", "http"),
            ("example.com".into(), "8080".into())
        );
        assert_eq!(
            split_host(b"example.com", "http"),
            ("example.com".into(), "80".into())
        );
        assert_eq!(
            split_host(b"example.com", "https"),
            ("example.com".into(), "443".into())
        );
        assert_eq!(split_host(b"[::1]:9", "http"), ("[::1]".into(), "9".into()));
        assert_eq!(split_host(b"[::1]", "http"), ("[::1]".into(), "80".into()));
    }

    #[test]
    fn raw_targets_split_into_path_and_query() {
        assert_eq!(split_target("/a\"b?x=\"1\""), ("/a\"b", "x=\"1\""));
        assert_eq!(split_target("/p"), ("/p", ""));
        assert_eq!(split_target("http://h:1/p|q?z#frag"), ("/p|q", "z"));
        assert_eq!(split_target("http://h"), ("", ""));
    }

    #[test]
    fn split_target_never_takes_the_path_from_a_query() {
        assert_eq!(
            split_target("/p?next=http://h/admin"),
            ("/p", "next=http://h/admin")
        );
        assert_eq!(split_target("/?://\""), ("/", "://\""));
        assert_eq!(split_target("http://h/p?q#f"), ("/p", "q"));
        assert_eq!(split_target("http://h"), ("", ""));
        assert_eq!(split_target("http://h?x=1"), ("", "x=1"));
        assert_eq!(split_target("/a#frag"), ("/a", ""));
    }

    #[test]
    fn raw_uri_keeps_the_target_form() {
        let u: http::Uri = "/a%20b?x=1".parse().unwrap();
        assert_eq!(raw_uri(&u), "/a%20b?x=1");
        let u: http::Uri = "http://h/p?q".parse().unwrap();
        assert_eq!(raw_uri(&u), "http://h/p?q");
        let u: http::Uri = "*".parse().unwrap();
        assert_eq!(raw_uri(&u), "*");
    }
}
