//! The access log: gunicorn's `access_log_format` (`%(h)s %(l)s %(u)s %(t)s "%(r)s" …`) is
//! compiled once into segments, and each request renders only the atoms the format uses. The
//! record borrows what the request already holds; nothing is collected per request for atoms the
//! format does not name.

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, Method, Uri, Version};

use super::{Civil, Sink};

/// gunicorn's default `access_log_format`.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// What one finished request contributes to its access-log line.
pub struct AccessRecord<'a> {
    pub remote: &'a str,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub request_headers: &'a HeaderMap,
    /// Only filled when the format names a `%({x}o)s` atom.
    pub response_headers: Option<&'a HeaderMap>,
    pub status: u16,
    pub bytes: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    RemoteAddr,
    Dash,
    Time,
    RequestLine,
    Status,
    Method,
    Path,
    Query,
    Protocol,
    BytesOrDash,
    Bytes,
    Referer,
    UserAgent,
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    Pid,
    RequestHeader(http::HeaderName),
    ResponseHeader(http::HeaderName),
}

/// A compiled access-log format plus where its lines go.
#[derive(Debug, Clone)]
pub struct AccessLog {
    segments: Vec<Segment>,
    sink: Sink,
    pid: String,
}

impl AccessLog {
    /// Compiles `format`; an unknown atom renders as `-`, as it does in gunicorn.
    pub fn new(format: &str, sink: Sink) -> AccessLog {
        AccessLog {
            segments: compile(format),
            sink,
            pid: std::process::id().to_string(),
        }
    }

    /// Whether records must carry the response headers.
    pub fn wants_response_headers(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::ResponseHeader(_)))
    }

    pub fn log(&self, rec: &AccessRecord<'_>) {
        let mut line = self.render(rec);
        line.push('\n');
        self.sink.write_line(line.as_bytes());
    }

    fn render(&self, rec: &AccessRecord<'_>) -> String {
        let mut out = String::with_capacity(160);
        let header = |map: Option<&HeaderMap>, name: &http::HeaderName| {
            map.and_then(|m| m.get(name))
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_else(|| "-".into())
        };
        for seg in &self.segments {
            let _ = match seg {
                Segment::Literal(s) => write!(out, "{s}"),
                Segment::RemoteAddr => write!(out, "{}", rec.remote),
                Segment::Dash => write!(out, "-"),
                Segment::Time => write!(out, "{}", Civil::now().access_log_stamp()),
                Segment::RequestLine => {
                    write!(
                        out,
                        "{} {} {}",
                        rec.method,
                        rec.uri,
                        version_str(rec.version)
                    )
                }
                Segment::Status => write!(out, "{}", rec.status),
                Segment::Method => write!(out, "{}", rec.method),
                Segment::Path => write!(out, "{}", rec.uri.path()),
                Segment::Query => write!(out, "{}", rec.uri.query().unwrap_or("")),
                Segment::Protocol => write!(out, "{}", version_str(rec.version)),
                Segment::BytesOrDash | Segment::Bytes => write!(out, "{}", rec.bytes),
                Segment::Referer => {
                    write!(
                        out,
                        "{}",
                        header(Some(rec.request_headers), &http::header::REFERER)
                    )
                }
                Segment::UserAgent => {
                    write!(
                        out,
                        "{}",
                        header(Some(rec.request_headers), &http::header::USER_AGENT)
                    )
                }
                Segment::Seconds => write!(out, "{}", rec.elapsed.as_secs()),
                Segment::Millis => write!(out, "{}", rec.elapsed.as_millis()),
                Segment::Micros => write!(out, "{}", rec.elapsed.as_micros()),
                Segment::DecimalSeconds => write!(out, "{:.6}", rec.elapsed.as_secs_f64()),
                Segment::Pid => write!(out, "<{}>", self.pid),
                Segment::RequestHeader(n) => {
                    write!(out, "{}", header(Some(rec.request_headers), n))
                }
                Segment::ResponseHeader(n) => write!(out, "{}", header(rec.response_headers, n)),
            };
        }
        out
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Splits a Python `%(name)s` format into literal text and atoms.
fn compile(format: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("%(") {
        let Some(end) = rest[start..].find(")s").map(|e| start + e) else {
            break;
        };
        literal.push_str(&rest[..start]);
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        segments.push(atom(&rest[start + 2..end]));
        rest = &rest[end + 2..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    segments
}

fn atom(name: &str) -> Segment {
    if let Some(inner) = name.strip_prefix('{') {
        if let Some((header, kind)) = inner.rsplit_once('}') {
            if let Ok(h) = http::HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()) {
                match kind {
                    "i" => return Segment::RequestHeader(h),
                    "o" => return Segment::ResponseHeader(h),
                    _ => {}
                }
            }
        }
        return Segment::Dash;
    }
    match name {
        "h" => Segment::RemoteAddr,
        "t" => Segment::Time,
        "r" => Segment::RequestLine,
        "s" => Segment::Status,
        "m" => Segment::Method,
        "U" => Segment::Path,
        "q" => Segment::Query,
        "H" => Segment::Protocol,
        "b" => Segment::BytesOrDash,
        "B" => Segment::Bytes,
        "f" => Segment::Referer,
        "a" => Segment::UserAgent,
        "T" => Segment::Seconds,
        "M" => Segment::Millis,
        "D" => Segment::Micros,
        "L" => Segment::DecimalSeconds,
        "p" => Segment::Pid,
        _ => Segment::Dash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> AccessRecord<'a> {
        AccessRecord {
            remote: "10.0.0.1",
            method: &Method::GET,
            uri,
            version: Version::HTTP_11,
            request_headers: headers,
            response_headers: None,
            status: 200,
            bytes: 13,
            elapsed: Duration::from_micros(1500),
        }
    }

    #[test]
    fn default_format_renders_like_gunicorn() {
        let log = AccessLog::new(DEFAULT_FORMAT, Sink::Stdout);
        let uri: Uri = "/a/b?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", "curl/8.0".parse().unwrap());
        let line = log.render(&record(&uri, &headers));
        let (head, tail) = line.split_once(" [").unwrap();
        assert_eq!(head, "10.0.0.1 - -");
        let (_, after_time) = tail.split_once("] ").unwrap();
        assert_eq!(
            after_time,
            r#""GET /a/b?x=1 HTTP/1.1" 200 13 "-" "curl/8.0""#
        );
    }

    #[test]
    fn atoms_and_unknowns() {
        let log = AccessLog::new(
            "%(m)s %(U)s %(q)s %(H)s %(D)s %(zz)s %({X-Id}i)s %({a}o)s %",
            Sink::Stdout,
        );
        assert!(log.wants_response_headers());
        let uri: Uri = "/p?q=2".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-id", "7".parse().unwrap());
        assert_eq!(
            log.render(&record(&uri, &headers)),
            "GET /p q=2 HTTP/1.1 1500 - 7 - %"
        );
    }
}
