//! The access log: gunicorn's `access_log_format` (`%(h)s %(l)s %(u)s %(t)s "%(r)s" …`) is
//! compiled once into segments, and each request renders only the atoms the format uses. The
//! record borrows what the request already holds; nothing is collected per request for atoms the
//! format does not name. `--dev` has its own compact line (time, status, method, target, duration,
//! size), with the status colored by class when it goes to a terminal.
//!
//! Atoms are escaped as gunicorn escapes them (`"` becomes `\"`), so a quoted atom stays one
//! field; a format shaped like a JSON object (`{"status": "%(s)s", ...}`, how gunicorn users
//! write JSON logs) has its atoms escaped as JSON strings instead (quotes, backslashes, control
//! characters), so every line parses. `--access-log-json` writes a fixed JSON object per line
//! with a field for each atom (see `render_json`). Header bytes that are not UTF-8 are read as
//! Latin-1, as the WSGI environ reads them, so nothing is lost or replaced.

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, Method, Uri, Version};

use super::{Civil, Sink};

/// gunicorn's default `access_log_format`.
pub const DEFAULT_FORMAT: &str = crate::config::cli::DEFAULT_ACCESS_LOG_FORMAT;

/// What one finished request contributes to its access-log line.
pub struct AccessRecord<'a> {
    pub remote: &'a str,
    pub method: &'a Method,
    pub uri: &'a Uri,
    /// The target as sent (`RAW_URI`), when it differs from `uri`.
    pub raw_target: Option<&'a str>,
    /// `PATH_INFO`; only needed when the format names `%(U)s` (see [`Needs`]).
    pub path_info: Option<&'a str>,
    pub version: Version,
    pub request_headers: &'a HeaderMap,
    /// Only needed when the format names a `%({x}o)s` atom.
    pub response_headers: Option<&'a HeaderMap>,
    /// The values of the format's `%({key}e)s` atoms, in [`Needs::environ`] order.
    pub environ: &'a [Option<String>],
    pub status: u16,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// What a format needs beyond what every request has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    pub response_headers: bool,
    pub path_info: bool,
    /// Environ keys named by `%({key}e)s` atoms (matched case-insensitively, as gunicorn does).
    pub environ: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    RemoteAddr,
    Dash,
    User,
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
    /// An index into `Needs::environ`.
    Environ(usize),
}

/// A compiled access-log format plus where its lines go.
#[derive(Debug, Clone)]
pub struct AccessLog {
    segments: Vec<Segment>,
    needs: Needs,
    sink: Sink,
    pid: String,
    /// `--dev`'s compact line instead of the format, and whether it is colored.
    compact: Option<bool>,
    /// How atoms are escaped.
    escape: Escape,
    /// `--access-log-json`: the fixed JSON object instead of the format.
    json: bool,
}

/// How an atom's text is escaped in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// gunicorn's: `"` becomes `\"`.
    Quotes,
    /// As a JSON string's contents.
    Json,
}

impl AccessLog {
    /// Compiles `format`; an unknown atom renders as `-`, as it does in gunicorn.
    pub fn new(format: &str, sink: Sink) -> AccessLog {
        let (segments, environ) = compile(format);
        let needs = Needs {
            response_headers: segments
                .iter()
                .any(|s| matches!(s, Segment::ResponseHeader(_))),
            path_info: segments.contains(&Segment::Path),
            environ,
        };
        let trimmed = format.trim();
        let escape = match trimmed.starts_with('{') && trimmed.ends_with('}') {
            true => Escape::Json,
            false => Escape::Quotes,
        };
        AccessLog {
            segments,
            needs,
            sink,
            pid: std::process::id().to_string(),
            compact: None,
            escape,
            json: false,
        }
    }

    /// `--access-log-json`: one JSON object per line (see `render_json`).
    pub fn json(sink: Sink) -> AccessLog {
        AccessLog {
            json: true,
            needs: Needs {
                path_info: true,
                ..Needs::default()
            },
            ..AccessLog::new("", sink)
        }
    }

    /// `--dev`'s line: `14:03:27 200 GET /admin/login/ 12.3ms 4.2kB`, the status in its class's
    /// color when `color`.
    pub fn compact(sink: Sink, color: bool) -> AccessLog {
        AccessLog {
            compact: Some(color),
            ..AccessLog::new("", sink)
        }
    }

    /// What records must carry for this format.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    pub fn log(&self, rec: &AccessRecord<'_>) {
        let mut line = self.render(rec);
        line.push('\n');
        self.sink.write_line(line.as_bytes());
    }

    /// The line for one request, without its newline (also what `benches/micro/` measures).
    pub fn render(&self, rec: &AccessRecord<'_>) -> String {
        if let Some(color) = self.compact {
            return render_compact(rec, color);
        }
        if self.json {
            return self.render_json(rec);
        }
        let mut out = String::with_capacity(160);
        let header = |map: Option<&HeaderMap>, name: &http::HeaderName| {
            last_header(map, name).unwrap_or_else(|| "-".into())
        };
        for seg in &self.segments {
            let start = out.len();
            let _ = match seg {
                Segment::Literal(s) => {
                    out.push_str(s);
                    continue;
                }
                Segment::RemoteAddr => write!(out, "{}", rec.remote),
                Segment::Dash => write!(out, "-"),
                Segment::User => write!(
                    out,
                    "{}",
                    basic_auth_user(rec.request_headers).unwrap_or_else(|| "-".into())
                ),
                Segment::Time => write!(out, "{}", Civil::now().access_log_stamp()),
                Segment::RequestLine => {
                    let target = match rec.raw_target {
                        Some(raw) => raw.to_string(),
                        None => rec.uri.to_string(),
                    };
                    write!(out, "{} {target} {}", rec.method, version_str(rec.version))
                }
                Segment::Status => write!(out, "{}", rec.status),
                Segment::Method => write!(out, "{}", rec.method),
                Segment::Path => write!(out, "{}", rec.path_info.unwrap_or(rec.uri.path())),
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
                Segment::DecimalSeconds => write!(
                    out,
                    "{}.{:06}",
                    rec.elapsed.as_secs(),
                    rec.elapsed.subsec_micros()
                ),
                Segment::Pid => write!(out, "<{}>", self.pid),
                Segment::RequestHeader(n) => {
                    write!(out, "{}", header(Some(rec.request_headers), n))
                }
                Segment::ResponseHeader(n) => write!(out, "{}", header(rec.response_headers, n)),
                Segment::Environ(i) => write!(
                    out,
                    "{}",
                    rec.environ
                        .get(*i)
                        .cloned()
                        .flatten()
                        .as_deref()
                        .unwrap_or("-")
                ),
            };
            escape_from(&mut out, start, self.escape);
        }
        out
    }

    /// `--access-log-json`: `{"remote_addr": ..., "time": ..., "request": ..., "method": ...,
    /// "path": ..., "query": ..., "protocol": ..., "status": ..., "bytes": ..., "referer": ...,
    /// "user_agent": ..., "user": ..., "duration_s": ..., "duration_us": ..., "pid": ...}`, the
    /// atoms `h t r m U q H s B f a u L D p`; a header or user that is absent is `null`.
    fn render_json(&self, rec: &AccessRecord<'_>) -> String {
        let mut out = String::with_capacity(320);
        let string = |out: &mut String, key: &str, value: Option<&str>| {
            let _ = write!(out, "\"{key}\":");
            match value {
                Some(v) => {
                    out.push('"');
                    push_json(out, v);
                    out.push('"');
                }
                None => out.push_str("null"),
            }
            out.push(',');
        };
        out.push('{');
        string(&mut out, "remote_addr", Some(rec.remote));
        string(&mut out, "time", Some(&Civil::now().iso8601()));
        let target = rec
            .raw_target
            .map_or_else(|| rec.uri.to_string(), str::to_string);
        let request = format!("{} {target} {}", rec.method, version_str(rec.version));
        string(&mut out, "request", Some(&request));
        string(&mut out, "method", Some(rec.method.as_str()));
        string(
            &mut out,
            "path",
            Some(rec.path_info.unwrap_or(rec.uri.path())),
        );
        string(&mut out, "query", Some(rec.uri.query().unwrap_or("")));
        string(&mut out, "protocol", Some(version_str(rec.version)));
        let _ = write!(out, "\"status\":{},\"bytes\":{},", rec.status, rec.bytes);
        let referer = last_header(Some(rec.request_headers), &http::header::REFERER);
        string(&mut out, "referer", referer.as_deref());
        let agent = last_header(Some(rec.request_headers), &http::header::USER_AGENT);
        string(&mut out, "user_agent", agent.as_deref());
        string(
            &mut out,
            "user",
            basic_auth_user(rec.request_headers).as_deref(),
        );
        let _ = write!(
            out,
            "\"duration_s\":{}.{:06},\"duration_us\":{},\"pid\":{}}}",
            rec.elapsed.as_secs(),
            rec.elapsed.subsec_micros(),
            rec.elapsed.as_micros(),
            self.pid
        );
        out
    }
}

/// The last of a header's values (gunicorn's atoms hold the last of repeated headers), as text:
/// UTF-8 when it is, else byte by byte as Latin-1.
fn last_header(map: Option<&HeaderMap>, name: &http::HeaderName) -> Option<String> {
    let value = map?.get_all(name).iter().next_back()?;
    Some(latin1_or_utf8(value.as_bytes()))
}

fn latin1_or_utf8(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Escapes what was written to `out` from `start` on.
fn escape_from(out: &mut String, start: usize, how: Escape) {
    let needs = |c: char| match how {
        Escape::Quotes => c == '"',
        Escape::Json => c == '"' || c == '\\' || c.is_control(),
    };
    if !out[start..].contains(needs) {
        return;
    }
    let atom = out.split_off(start);
    match how {
        Escape::Quotes => out.push_str(&atom.replace('"', "\\\"")),
        Escape::Json => push_json(out, &atom),
    }
}

/// Appends `s` escaped as the contents of a JSON string: quotes, backslashes and control
/// characters (C0, DEL and C1) are escaped; other characters are written as they are.
fn push_json(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn render_compact(rec: &AccessRecord<'_>, color: bool) -> String {
    let now = Civil::now();
    let target = rec
        .raw_target
        .map_or_else(|| rec.uri.to_string(), str::to_string);
    let status = match (color, rec.status / 100) {
        (false, _) | (true, 1) => rec.status.to_string(),
        (true, 2) => format!("\x1b[32m{}\x1b[0m", rec.status),
        (true, 3) => format!("\x1b[36m{}\x1b[0m", rec.status),
        (true, 4) => format!("\x1b[33m{}\x1b[0m", rec.status),
        (true, _) => format!("\x1b[1;31m{}\x1b[0m", rec.status),
    };
    let ms = rec.elapsed.as_secs_f64() * 1000.0;
    let size = match rec.bytes {
        b if b < 1000 => format!("{b}B"),
        b if b < 1_000_000 => format!("{:.1}kB", b as f64 / 1e3),
        b => format!("{:.1}MB", b as f64 / 1e6),
    };
    format!(
        "{:02}:{:02}:{:02} {status} {} {target} {ms:.1}ms {size}",
        now.hour, now.minute, now.second, rec.method
    )
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

/// Splits a Python `%(name)s` format into literal text and atoms (`%%` is a literal `%`, as
/// in Python), and lists the environ keys it names.
fn compile(format: &str) -> (Vec<Segment>, Vec<String>) {
    let mut segments = Vec::new();
    let mut environ: Vec<String> = Vec::new();
    let mut literal = String::new();
    let mut rest = format;
    while let Some(start) = rest.find('%') {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            literal.push('%');
            rest = tail;
            continue;
        }
        let Some(end) = after
            .strip_prefix('(')
            .and_then(|a| a.find(")s"))
            .map(|e| e + 1)
        else {
            literal.push('%');
            rest = after;
            continue;
        };
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        segments.push(atom(&after[1..end], &mut environ));
        rest = &after[end + 2..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    (segments, environ)
}

fn atom(name: &str, environ: &mut Vec<String>) -> Segment {
    if let Some(inner) = name.strip_prefix('{') {
        if let Some((key, kind)) = inner.rsplit_once('}') {
            if kind == "e" {
                let key = key.to_ascii_lowercase();
                let i = environ.iter().position(|k| *k == key).unwrap_or_else(|| {
                    environ.push(key);
                    environ.len() - 1
                });
                return Segment::Environ(i);
            }
            if let Ok(h) = http::HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()) {
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
        "u" => Segment::User,
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

/// The user name of `Authorization: Basic ...`, as gunicorn's `%(u)s` shows it.
fn basic_auth_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(token.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(u, _)| u)
            .to_string(),
    )
}

/// Standard base64 with padding; `None` on anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> AccessRecord<'a> {
        AccessRecord {
            remote: "10.0.0.1",
            method: &Method::GET,
            uri,
            raw_target: None,
            path_info: None,
            version: Version::HTTP_11,
            request_headers: headers,
            response_headers: None,
            environ: &[],
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
    fn compact_lines_color_the_status_by_class_only_when_asked() {
        let uri: Uri = "/admin/?next=/".parse().unwrap();
        let headers = HeaderMap::new();
        let mut rec = record(&uri, &headers);
        let plain = AccessLog::compact(Sink::Stderr, false).render(&rec);
        let (_, rest) = plain.split_once(' ').unwrap();
        assert_eq!(rest, "200 GET /admin/?next=/ 1.5ms 13B");
        rec.status = 404;
        rec.bytes = 4200;
        let colored = AccessLog::compact(Sink::Stderr, true).render(&rec);
        assert!(colored.contains(" \x1b[33m404\x1b[0m GET "), "{colored:?}");
        assert!(colored.ends_with(" 4.2kB"), "{colored:?}");
        rec.status = 502;
        let colored = AccessLog::compact(Sink::Stderr, true).render(&rec);
        assert!(colored.contains("\x1b[1;31m502"), "{colored:?}");
    }

    #[test]
    fn atoms_and_unknowns() {
        let log = AccessLog::new(
            "%(m)s %(U)s %(q)s %(H)s %(D)s %(zz)s %({X-Id}i)s %({a}o)s %",
            Sink::Stdout,
        );
        assert!(log.needs().response_headers);
        let uri: Uri = "/p?q=2".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-id", "7".parse().unwrap());
        assert_eq!(
            log.render(&record(&uri, &headers)),
            "GET /p q=2 HTTP/1.1 1500 - 7 - %"
        );
    }

    #[test]
    fn user_environ_and_percent() {
        let log = AccessLog::new(
            "%(u)s %({REMOTE_ADDR}e)s %({x}e)s 100%% %(L)s",
            Sink::Stdout,
        );
        assert_eq!(log.needs().environ, ["remote_addr", "x"]);
        let uri: Uri = "/".parse().unwrap();
        let mut headers = HeaderMap::new();
        // "aladdin:open sesame"
        headers.insert(
            "authorization",
            "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ==".parse().unwrap(),
        );
        let env = [Some("10.0.0.1".to_string()), None];
        let rec = AccessRecord {
            environ: &env,
            ..record(&uri, &headers)
        };
        assert_eq!(log.render(&rec), "aladdin 10.0.0.1 - 100% 0.001500");
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("YWJ").is_none());
        assert!(base64_decode("Y!==").is_none());
    }

    #[test]
    fn atoms_escape_quotes_as_gunicorn_does() {
        let log = AccessLog::new(DEFAULT_FORMAT, Sink::Stdout);
        let uri: Uri = "/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", r#"say "hi" \o/"#.parse().unwrap());
        let line = log.render(&record(&uri, &headers));
        assert!(line.ends_with(r#" "-" "say \"hi\" \o/""#), "{line}");
    }

    #[test]
    fn a_json_shaped_format_escapes_atoms_as_json() {
        let log = AccessLog::new(
            r#"{"ua": "%(a)s", "s": %(s)s, "x": "%({x}i)s"}"#,
            Sink::Stdout,
        );
        let uri: Uri = "/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", r#"a"b\c"#.parse().unwrap());
        headers.insert("x", http::HeaderValue::from_bytes(b"\xe9t\xe9\tz").unwrap());
        let line = log.render(&record(&uri, &headers));
        assert_eq!(line, r#"{"ua": "a\"b\\c", "s": 200, "x": "été\tz"}"#);
    }

    #[test]
    fn json_lines_name_every_atom() {
        let log = AccessLog::json(Sink::Stdout);
        let uri: Uri = "/p%20q?a=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("referer", "http://x/\"".parse().unwrap());
        let rec = AccessRecord {
            path_info: Some("/p q"),
            ..record(&uri, &headers)
        };
        let line = log.render(&rec);
        assert!(
            line.starts_with(r#"{"remote_addr":"10.0.0.1","time":""#),
            "{line}"
        );
        assert!(
            line.contains(
                r#""request":"GET /p%20q?a=1 HTTP/1.1","method":"GET","path":"/p q","query":"a=1","protocol":"HTTP/1.1","status":200,"bytes":13,"referer":"http://x/\"","user_agent":null,"user":null,"duration_s":0.001500,"duration_us":1500,"pid":"#
            ),
            "{line}"
        );
        assert!(line.ends_with('}'));
    }
}
