//! Property-based fuzzing of the request → environ path. Generated requests, well-formed and
//! broken, go to the real server over a real socket; the app writes back what it saw, and its
//! call counter tells whether a request reached it at all. Each test runs one server for all of
//! its cases.
//!
//! Cases per test: `PROPTEST_CASES` when set, otherwise a default sized so the whole module stays
//! within CI's time budget. A failure reports the shrunk request bytes, escaped.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::support::serve;

/// Echoes the environ keys under test, hex-encoded as latin-1 (so a value that is not latin-1
/// fails the request with a 500), and the body. The counter goes up only once the whole body was
/// read: a request whose body the server refuses mid-way is not one the app received.
const ECHO: &str = r#"
import itertools
calls = itertools.count(1)
KEYS = {"REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "RAW_URI", "CONTENT_LENGTH",
        "CONTENT_TYPE", "SERVER_PROTOCOL", "SCRIPT_NAME"}

def size(text):
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 1 << 20 else -1

def read_body(inp, mode):
    # Each way of reading wsgi.input must give the same bytes; each checks its own contract.
    if mode.startswith("read:") and size(mode[5:]) > 0:
        n, parts = size(mode[5:]), []
        while True:
            b = inp.read(n)
            assert len(b) <= n, (n, len(b))
            if not b:
                return b"".join(parts)
            parts.append(b)
    if mode == "readlines":
        lines = inp.readlines()
        assert all(b"\n" not in l[:-1] for l in lines), lines
        return b"".join(lines)
    if mode.startswith("readline"):
        n, parts = size(mode[9:]), []
        while True:
            line = inp.readline(n)
            assert b"\n" not in line[:-1] and (n < 0 or len(line) <= n), (n, line)
            if not line:
                return b"".join(parts)
            parts.append(line)
    if mode == "iter":
        return b"".join(inp)
    return inp.read()

def app(environ, start_response):
    try:
        body = read_body(environ["wsgi.input"], environ.get("HTTP_X_READ", ""))
    except OSError:
        # The server must answer 400 itself; this page reaching the client is a failure.
        start_response("200 OK", [("Content-Length", "8")])
        return [b"BODYFAIL"]
    n = next(calls)
    out = "".join(
        "%s=%s\n" % (k, environ[k].encode("latin-1").hex())
        for k in sorted(environ)
        if k in KEYS or k.startswith("HTTP_")
    ) + "BODY=%s\n" % body.hex()
    out = b"" if environ["REQUEST_METHOD"] == "HEAD" else out.encode()
    start_response("200 OK", [("X-N", str(n)), ("Content-Length", str(len(out)))])
    return [out]
"#;

/// Every status the server may send: the app's 200, the guard's refusals, hyper's 400, and the
/// interim 100 for `Expect: 100-continue`. Anything else (a 500 above all) is a failure.
const STATUSES: [u16; 8] = [100, 200, 400, 405, 417, 431, 501, 505];

/// How long one case may take before the server counts as hung.
const DEADLINE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Properties

/// Property 3: what the app sees of a valid request (or a pipeline of them on one connection) is
/// what was sent: method, target (PATH_INFO percent-decoded to latin-1), query, headers (repeats
/// joined with ","), body.
#[test]
fn fuzz_valid_requests_reach_the_app_as_sent() {
    let server = serve(ECHO, 2);
    let h = Harness::new(server.addr);
    check(600, (pipeline(true), splits()), |(reqs, splits)| {
        let wire: Vec<u8> = reqs.iter().flat_map(Req::wire).collect();
        let ex = h.exchange_split(&wire, &splits)?;
        prop_assert_eq!(ex.statuses(), vec![200; reqs.len()]);
        for (echo, req) in ex.echoes.iter().zip(&reqs) {
            let want = req.expected();
            if echo.env != want {
                return Err(TestCaseError::fail(format!(
                    "the app saw a different request:\n{}",
                    diff(&echo.env, &want)
                )));
            }
        }
        Ok(())
    });
}

/// Properties 1 and 2 with exact expectations: each broken request gets its one refusal (or,
/// cut short inside the head, a clean close without an answer), the app completes no call, and
/// the server serves the next connection.
#[test]
fn fuzz_malformed_requests_are_refused_before_the_app() {
    let server = serve(ECHO, 2);
    let h = Harness::new(server.addr);
    check(1200, (broken(), splits()), |(case, splits)| {
        let ex = h.exchange_split(&case.wire.0, &splits)?;
        match case.expect {
            Expect::Status(status) => {
                prop_assert_eq!(ex.statuses(), vec![status], "{}", case.what);
                let last = ex.responses.last().expect("a response");
                let close = last.header("connection");
                prop_assert_eq!(close, Some("close"), "a refused request leaves the stream");
            }
            Expect::Silent => prop_assert!(ex.responses.is_empty(), "{}", case.what),
        }
        Ok(())
    });
}

/// Property 4: a request hiding a second one behind conflicting or doubtful framing yields
/// exactly the requests a strict parser sees, and the hidden one only when the framing really
/// ends before it.
#[test]
fn fuzz_hidden_requests_are_never_smuggled() {
    let server = serve(ECHO, 2);
    let h = Harness::new(server.addr);
    check(800, smuggling(), |case| {
        let ex = h.exchange(&case.wire.0)?;
        prop_assert_eq!(ex.statuses(), case.statuses.clone(), "{}", case.what);
        let paths: Vec<String> = ex.echoes.iter().map(|e| e.text("PATH_INFO")).collect();
        prop_assert_eq!(paths, case.paths.clone(), "{}", case.what);
        if let Some(body) = &case.front_body {
            prop_assert_eq!(Wire(ex.echoes[0].bytes("BODY")), Wire(body.clone()));
        }
        Ok(())
    });
}

/// Properties 1 and 2 in their weak form, for valid pipelines with random byte edits, where the
/// right answer is not computed: the server answers well-formed responses with known statuses or
/// closes cleanly, never hangs, keeps serving; the app completes no more requests than the input
/// has request lines, each with a valid method that is in the input and header values free of
/// control characters.
#[test]
fn fuzz_mangled_requests_get_an_answer_or_a_clean_close() {
    let server = serve(ECHO, 2);
    let h = Harness::new(server.addr);
    check(1500, mangled(), |wire| {
        let wire = wire.0;
        let ex = h.exchange(&wire)?;
        if !ex.responses.is_empty() {
            prop_assert!(
                find(&wire, b"\n\n").is_some() || find(&wire, b"\n\r\n").is_some(),
                "an answer to input that never ends a head"
            );
        }
        let request_lines = wire.windows(7).filter(|w| w == b"HTTP/1.").count();
        prop_assert!(
            ex.echoes.len() <= request_lines,
            "the app saw {} requests in input with {} request lines",
            ex.echoes.len(),
            request_lines
        );
        for echo in ex.echoes.iter().filter(|e| !e.env.is_empty()) {
            let method = echo.bytes("REQUEST_METHOD");
            prop_assert!(
                valid_method(&method),
                "the app saw method {:?}",
                Wire(method)
            );
            // Pipelined requests follow a body directly, so no line start to look for.
            prop_assert!(
                find(&wire, &[&method[..], b" "].concat()).is_some(),
                "the app saw method {:?}, never sent",
                Wire(method)
            );
            let protocol = echo.text("SERVER_PROTOCOL");
            prop_assert!(
                protocol == "HTTP/1.1" || protocol == "HTTP/1.0",
                "{}",
                protocol
            );
            for (key, value) in echo.env.iter().filter(|(k, _)| k.starts_with("HTTP_")) {
                prop_assert!(
                    value
                        .iter()
                        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
                    "{} carries a control character: {:?}",
                    key,
                    Wire(value.clone())
                );
            }
        }
        Ok(())
    });
}

/// gunicorn's limits, on both sides of each boundary: the request line (4094), one header line
/// with its CRLF (8190), the number of header fields (100).
#[test]
fn fuzz_limits_hold_exactly_at_their_boundaries() {
    let server = serve(ECHO, 2);
    let h = Harness::new(server.addr);
    let strategy = prop_oneof![
        (4080usize..4110).prop_map(Limit::RequestLine),
        (8180usize..8200).prop_map(Limit::FieldLine),
        (95usize..106).prop_map(Limit::Fields),
    ];
    check(100, strategy, |limit| {
        let (wire, refused, key, value) = match limit {
            Limit::RequestLine(len) => {
                let target = format!("/{}", "a".repeat(len - 14));
                let wire = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
                (wire, len > 4094, "PATH_INFO", target)
            }
            Limit::FieldLine(len) => {
                let value = "v".repeat(len - 8);
                let wire = format!("GET / HTTP/1.1\r\nX-Long: {value}\r\n\r\n");
                (wire, len + 2 > 8190, "HTTP_X_LONG", value)
            }
            Limit::Fields(n) => {
                let fields: String = (1..n).map(|i| format!("X-F{i}: {i}\r\n")).collect();
                let wire = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
                (wire, n > 100, "HTTP_HOST", "x".to_string())
            }
        };
        let ex = h.exchange(wire.as_bytes())?;
        match (refused, limit) {
            (true, Limit::RequestLine(_)) => prop_assert_eq!(ex.statuses(), vec![400]),
            (true, _) => prop_assert_eq!(ex.statuses(), vec![431]),
            (false, _) => {
                prop_assert_eq!(ex.statuses(), vec![200]);
                prop_assert_eq!(ex.echoes[0].text(key), value);
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Bugs the properties found, each as its minimal case, all fixed: the first three in 8e6014a,
// the last two right after.

/// RAW_URI is the target as sent, fragment included, as in gunicorn: it used to be rebuilt from
/// hyper's URI, which drops the fragment (but not when the target also had a character the guard
/// re-encodes, so one client saw two behaviours).
#[test]
fn raw_uri_keeps_the_fragment_as_sent() {
    let server = serve(ECHO, 1);
    let h = Harness::new(server.addr);
    let ex = h
        .exchange(b"GET /a?q#frag HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(ex.echoes[0].text("RAW_URI"), "/a?q#frag");
    assert_eq!(ex.echoes[0].text("PATH_INFO"), "/a");
    assert_eq!(ex.echoes[0].text("QUERY_STRING"), "q");
}

/// An absolute target without a path is reported as sent, with an empty PATH_INFO, as gunicorn
/// does; hyper's URI used to add a `/` to both.
#[test]
fn raw_uri_of_an_absolute_target_without_a_path_is_as_sent() {
    let server = serve(ECHO, 1);
    let h = Harness::new(server.addr);
    let ex = h.exchange(b"GET http://h HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(ex.echoes[0].text("RAW_URI"), "http://h");
    assert_eq!(ex.echoes[0].text("PATH_INFO"), "");
}

/// Found by `fuzz_valid_requests_reach_the_app_as_sent` (shrunk to `GET /?://" HTTP/1.1`): with a
/// character the guard re-encodes in the target, the raw target was cut at its first "://" as if
/// in absolute form, so a URL in the query picked PATH_INFO: a proxy allowing `/public` let
/// through what the app routed to `/admin`.
#[test]
fn a_url_in_the_query_does_not_become_the_path() {
    let server = serve(ECHO, 1);
    let h = Harness::new(server.addr);
    let ex = h
        .exchange(b"GET /public?next=\"http://h/admin\" HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(ex.echoes[0].text("PATH_INFO"), "/public");
    assert_eq!(ex.echoes[0].text("QUERY_STRING"), "next=\"http://h/admin\"");
}

/// Found by `fuzz_valid_requests_reach_the_app_as_sent` after 8e6014a (shrunk to
/// `GET http://0?next=http://a HTTP/1.1`): an absolute target without a path was passed on raw
/// only when no `/` followed its "://" anywhere, query included, so hyper's URI added a `/`:
/// RAW_URI `http://h/?next=/x` and PATH_INFO `/`, where gunicorn reports the target as sent and
/// an empty PATH_INFO.
#[test]
fn a_pathless_absolute_target_with_a_slash_in_its_query_is_as_sent() {
    let server = serve(ECHO, 1);
    let h = Harness::new(server.addr);
    let ex = h
        .exchange(b"GET http://h?next=/x HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(ex.echoes[0].text("RAW_URI"), "http://h?next=/x");
    assert_eq!(ex.echoes[0].text("PATH_INFO"), "");
    assert_eq!(ex.echoes[0].text("QUERY_STRING"), "next=/x");
}

/// Found by `fuzz_mangled_requests_get_an_answer_or_a_clean_close` (a 100 kB upload, a 216 kB
/// echo, then a refused request: the client got a reset 128 kB into the first answer). After
/// refusing a request the server closed the socket with the client's later bytes unread, so the
/// kernel sent a reset, which threw away whatever of the earlier responses was still queued.
/// Fixed with a lingering close (RFC 9112 9.6) in `GuardedIo::poll_shutdown`.
#[test]
fn a_refusal_does_not_destroy_the_responses_before_it() {
    let big = 16 << 20;
    let app = format!(
        "def app(environ, start_response):\n    start_response('200 OK', [('Content-Length', '{big}')])\n    return [b'x' * {big}]\n"
    );
    let server = serve(&app, 1);
    // A lowercase method is refused; what follows it is never read.
    let mut input = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nget / HTTP/1.1\r\n\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 1 << 20));
    let (raw, end) = send(server.addr, &input, &[]);
    let statuses = parse_responses(&raw).map(|rs| rs.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(
        statuses,
        Ok(vec![200, 400]),
        "{end:?} after {} bytes, the first answer alone being {big}",
        raw.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Running cases against the server

fn check<S>(default_cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: fmt::Debug,
{
    let base = Config::default();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases,
        // Failures are kept as named regression tests instead of files in the tree.
        failure_persistence: None,
        // Each shrinking step is a real exchange; a hang would make shrinking endless.
        max_shrink_time: match base.max_shrink_time {
            0 => 60_000,
            t => t,
        },
        ..base
    };
    let mut runner = TestRunner::new(config);
    if let Err(err) = runner.run(&strategy, test) {
        panic!("{err}");
    }
}

/// One server's client side. `calls` is the app's counter as last seen: each case ends with a
/// request on a new connection, whose number says how many calls the app completed meanwhile.
struct Harness {
    addr: SocketAddr,
    calls: Cell<u64>,
}

impl Harness {
    fn new(addr: SocketAddr) -> Harness {
        let h = Harness {
            addr,
            calls: Cell::new(0),
        };
        h.calls.set(h.follow_up().unwrap());
        h
    }

    /// Sends `input` on a fresh connection, shuts the write side, and checks what holds for
    /// every input: an answer or a clean close in time, well-formed responses with known
    /// statuses, nothing after `connection: close`, every 200 an echo of the app, the app's
    /// completed calls exactly those echoes, and the server serving the next connection.
    fn exchange(&self, input: &[u8]) -> Result<Exchange, TestCaseError> {
        self.exchange_split(input, &[])
    }

    /// `exchange`, writing `input` in pieces cut at `splits`.
    fn exchange_split(&self, input: &[u8], splits: &[Index]) -> Result<Exchange, TestCaseError> {
        let (raw, end) = send(self.addr, input, splits);
        // Counted before anything else can fail, so the next case (a shrinking step, say) is
        // not charged with this one's calls.
        let alive = self.follow_up();
        prop_assert!(
            end != End::Hung,
            "no answer and no close within {:?}; got {:?}",
            DEADLINE,
            Wire(raw)
        );
        let after = alive?;
        let before = self.calls.replace(after);
        prop_assert!(
            !(raw.is_empty() && end == End::Reset),
            "connection reset without an answer"
        );
        let responses = parse_responses(&raw).map_err(|e| {
            TestCaseError::fail(format!("malformed response ({e}): {:?}", Wire(raw.clone())))
        })?;
        let mut echoes = Vec::new();
        for (i, r) in responses.iter().enumerate() {
            prop_assert!(STATUSES.contains(&r.status), "status {}", r.status);
            if r.header("connection") == Some("close") {
                prop_assert_eq!(i + 1, responses.len(), "a response after connection: close");
            }
            if r.status == 200 {
                echoes.push(Echo::parse(r).map_err(TestCaseError::fail)?);
            }
        }
        let seen: Vec<u64> = echoes.iter().map(|e| e.n).collect();
        let completed: Vec<u64> = (before + 1..after).collect();
        prop_assert_eq!(
            seen,
            completed,
            "the 200s against the app's completed calls"
        );
        Ok(Exchange { responses, echoes })
    }

    /// A plain request on a new connection; returns the app's call number.
    fn follow_up(&self) -> Result<u64, TestCaseError> {
        let (raw, _) = send(self.addr, b"GET /alive HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
        let rs = parse_responses(&raw).map_err(TestCaseError::fail)?;
        let alive = match rs.as_slice() {
            [r] if r.status == 200 => Echo::parse(r).map_err(TestCaseError::fail)?,
            _ => {
                return Err(TestCaseError::fail(format!(
                    "the server stopped serving: {:?}",
                    Wire(raw)
                )))
            }
        };
        prop_assert_eq!(alive.text("PATH_INFO"), "/alive");
        Ok(alive.n)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    Reset,
    Hung,
}

fn send(addr: SocketAddr, input: &[u8], splits: &[Index]) -> (Vec<u8>, End) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut from = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        if from > 0 {
            // A pause, so the pieces tend to reach the server's reads apart and the guard meets
            // heads, chunk-size lines and bodies split anywhere; the answer may not depend on it.
            std::thread::sleep(Duration::from_micros(300));
        }
        // The server may refuse and close before reading everything; what it answered still
        // counts.
        let _ = s.write_all(&input[from..cut]);
        from = cut;
    }
    let _ = s.shutdown(Shutdown::Write);
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, End::Hung);
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return (out, End::Closed),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, End::Hung)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (out, End::Reset),
        }
    }
}

struct Exchange {
    responses: Vec<Response>,
    /// The 200s, in order.
    echoes: Vec<Echo>,
}

impl Exchange {
    /// Final statuses (interim 100s left out).
    fn statuses(&self) -> Vec<u16> {
        self.responses
            .iter()
            .map(|r| r.status)
            .filter(|&s| s >= 200)
            .collect()
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a stream of HTTP/1.x responses, strictly: status line, headers, a body framed by
/// Content-Length (which every response of this server carries, bar 1xx).
fn parse_responses(mut raw: &[u8]) -> Result<Vec<Response>, String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let end = find(raw, b"\r\n\r\n").ok_or("a head without its end")?;
        let head = std::str::from_utf8(&raw[..end]).map_err(|_| "a head that is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default();
        let b = line.as_bytes();
        let well_formed = b.len() >= 13
            && (b.starts_with(b"HTTP/1.1 ") || b.starts_with(b"HTTP/1.0 "))
            && b[9..12].iter().all(u8::is_ascii_digit)
            && b[12] == b' '
            && b[13..].iter().all(|&c| (0x20..0x7f).contains(&c));
        let status: u16 = match well_formed {
            true => line[9..12].parse().map_err(|_| "status")?,
            false => return Err(format!("bad status line {line:?}")),
        };
        let mut headers = Vec::new();
        for l in lines {
            let (n, v) = l
                .split_once(": ")
                .ok_or_else(|| format!("bad header line {l:?}"))?;
            headers.push((n.to_string(), v.to_string()));
        }
        raw = &raw[end + 4..];
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if status >= 200 {
            let len: usize = r
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no Content-Length on a {status}"))?;
            if raw.len() < len {
                return Err(format!("a {status} body cut short"));
            }
            r.body = raw[..len].to_vec();
            raw = &raw[len..];
        }
        out.push(r);
    }
    Ok(out)
}

/// What the app saw of one request: `n` is its call number.
struct Echo {
    n: u64,
    env: BTreeMap<String, Vec<u8>>,
}

impl Echo {
    fn parse(r: &Response) -> Result<Echo, String> {
        let n = r
            .header("x-n")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("a 200 that is not the app's: {:?}", Wire(r.body.clone())))?;
        let text = std::str::from_utf8(&r.body).map_err(|_| "echo not UTF-8")?;
        let mut env = BTreeMap::new();
        for line in text.lines() {
            let (k, v) = line.split_once('=').ok_or("echo line without =")?;
            env.insert(k.to_string(), unhex(v).ok_or("echo value not hex")?);
        }
        Ok(Echo { n, env })
    }

    fn bytes(&self, key: &str) -> Vec<u8> {
        self.env.get(key).cloned().unwrap_or_default()
    }

    fn text(&self, key: &str) -> String {
        self.bytes(key).iter().map(|&b| b as char).collect()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes shown as an escaped string in failure reports.
#[derive(Clone, PartialEq, Eq)]
struct Wire(Vec<u8>);

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b\"")?;
        for &b in &self.0 {
            match b {
                b'\r' => f.write_str("\\r")?,
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                b'"' | b'\\' => write!(f, "\\{}", b as char)?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

fn diff(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) -> String {
    let mut keys: Vec<&String> = got.keys().chain(want.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| {
            let show = |v: Option<&Vec<u8>>| match v {
                Some(v) => format!("{:?}", Wire(v.clone())),
                None => "nothing".to_string(),
            };
            format!(
                "  {k}: got {}, sent {}\n",
                show(got.get(k)),
                show(want.get(k))
            )
        })
        .collect()
}

/// gunicorn's method rule as the guard applies it: a token without lowercase or `#`.
fn valid_method(m: &[u8]) -> bool {
    (3..=20).contains(&m.len())
        && m.iter().all(|&b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || b"!$%&'*+-.^_`|~".contains(&b)
        })
}

// ---------------------------------------------------------------------------------------------
// Valid requests

/// A valid request, and what the app must see of it.
#[derive(Clone, Debug)]
struct Req {
    /// Empty lines before the request line, which the server skips.
    lead: &'static str,
    method: String,
    target: String,
    version: &'static str,
    /// In wire order; values raw, optional whitespace included.
    fields: Vec<(String, Wire)>,
    /// The body the app must read.
    body: Wire,
    /// The body as framed on the wire.
    framed: Wire,
}

impl Req {
    fn head_lines(&self) -> Vec<Vec<u8>> {
        let request_line = format!("{} {} {}", self.method, self.target, self.version);
        std::iter::once(request_line.into_bytes())
            .chain(
                self.fields
                    .iter()
                    .map(|(n, v)| [n.as_bytes(), b":", &v.0].concat()),
            )
            .collect()
    }

    fn head(&self) -> Vec<u8> {
        let mut head = Vec::new();
        for line in self.head_lines() {
            head.extend_from_slice(&line);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    fn wire(&self) -> Vec<u8> {
        [self.lead.as_bytes(), &self.head(), &self.framed.0].concat()
    }

    fn without_framing(&self) -> Vec<(String, Wire)> {
        let framing = |n: &str| {
            n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
        };
        self.fields
            .iter()
            .filter(|(n, _)| !framing(n))
            .cloned()
            .collect()
    }

    /// The environ as PEP 3333 and gunicorn make it from what was sent.
    fn expected(&self) -> BTreeMap<String, Vec<u8>> {
        let mut env = BTreeMap::new();
        let mut put = |k: &str, v: &[u8]| env.insert(k.to_string(), v.to_vec());
        let (path, query) = split_target(&self.target);
        put("REQUEST_METHOD", self.method.as_bytes());
        put("PATH_INFO", &percent_decode(path));
        put("QUERY_STRING", query.as_bytes());
        put("RAW_URI", self.target.as_bytes());
        put("SERVER_PROTOCOL", self.version.as_bytes());
        put("SCRIPT_NAME", b"");
        put("BODY", &self.body.0);
        // Names with "_" are dropped (gunicorn's default header_map), the rest grouped
        // case-insensitively in order of appearance.
        let mut joined: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, value) in self.fields.iter().filter(|(n, _)| !n.contains('_')) {
            let name = name.to_ascii_lowercase();
            let value = value.0.trim_ascii();
            match joined.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => {
                    v.push(b',');
                    v.extend_from_slice(value);
                }
                None => joined.push((name, value.to_vec())),
            }
        }
        for (name, value) in joined {
            let key = match name.as_str() {
                "content-type" => "CONTENT_TYPE".to_string(),
                "content-length" => "CONTENT_LENGTH".to_string(),
                _ => format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")),
            };
            put(&key, &value);
        }
        env
    }
}

/// The path and query of a target in origin, absolute or asterisk form, as gunicorn's
/// `urlsplit` gives them: no fragment, and an absolute target may have an empty path.
fn split_target(target: &str) -> (&str, &str) {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let absolute = ["http://", "https://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme));
    let path_query = match absolute {
        Some(rest) => &rest[rest.find(['/', '?']).unwrap_or(rest.len())..],
        None => target,
    };
    path_query.split_once('?').unwrap_or((path_query, ""))
}

/// `urllib.parse.unquote_to_bytes`: `%XX` with two hex digits is a byte, anything else stays.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|&c| (c as char).to_digit(16));
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn method() -> impl Strategy<Value = String> {
    let common = vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "M-SEARCH",
    ];
    prop_oneof![
        4 => prop::sample::select(common).prop_map(String::from),
        // HEAD is answered without the echo, CONNECT is refused: both have their own cases.
        1 => "[A-Z0-9!$%&'*+.^_`|~-]{3,20}"
            .prop_filter("HEAD and CONNECT", |m| m != "HEAD" && m != "CONNECT"),
    ]
}

/// Paths with percent-escapes (valid, invalid, of any byte), and the characters hyper refuses
/// in a URI but the server takes. No `?` or `#`: the query and the fragment start there.
fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[A-Za-z0-9._~!$&'()*+,;=:@/-]{1,6}",
        2 => "%[0-9A-Fa-f]{2}",
        1 => "%[0-9A-Za-z%]{0,2}",
        1 => r#"["<>\\^`{|}]"#,
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| format!("/{}", p.concat()))
}

/// Origin or absolute form (with or without a path), a query that may hold a URL, and a
/// fragment, which is part of RAW_URI only.
fn target() -> impl Strategy<Value = String> {
    let query_piece = prop_oneof![
        3 => "[!\"$-~]{0,8}",
        1 => "next=https?://[a-z]{1,3}(/[a-z]{0,3})?",
    ];
    let query = prop::option::of(prop::collection::vec(query_piece, 1..3));
    let authority = prop::option::weighted(
        0.2,
        "https?://[a-z0-9]([a-z0-9.-]{0,8}[a-z0-9])?(:[1-9][0-9]{0,3})?",
    );
    let fragment = prop::option::weighted(0.1, "[!-~]{0,8}");
    (authority, path(), any::<bool>(), query, fragment).prop_map(
        |(authority, path, pathless, query, fragment)| {
            let path = match (&authority, pathless) {
                (Some(_), true) => String::new(),
                _ => path,
            };
            let query = query
                .map(|q| format!("?{}", q.concat()))
                .unwrap_or_default();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{}{path}{query}{fragment}", authority.unwrap_or_default())
        },
    )
}

fn ows() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", " ", "\t", " \t "])
}

/// A header that is not about framing or routing: some names recur (in any case) so repeats get
/// joined; names with "_" must not reach the environ at all.
fn field() -> impl Strategy<Value = (String, Wire)> {
    let recurring = vec!["X-A", "X-Bb", "X-Multi-Part-Name", "X-Sym!#$%&'*+.^`|~"];
    let name = prop_oneof![
        3 => (prop::sample::select(recurring), 0..3u8).prop_map(|(n, case)| match case {
            0 => n.to_string(),
            1 => n.to_ascii_lowercase(),
            _ => n.to_ascii_uppercase(),
        }),
        2 => "X-[A-Za-z0-9!#$%&'*+.^`|~-]{1,10}",
        1 => "X_[a-z]{1,4}",
    ];
    let byte = prop_oneof![
        8 => 0x21u8..=0x7e,
        2 => Just(b' '),
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ];
    let common = vec![
        ("Accept", " */*"),
        ("Cookie", " a=b; c=d"),
        ("User-Agent", " fuzz/1.0"),
        ("Connection", " keep-alive"),
        ("TE", " trailers"),
        ("Keep-Alive", " timeout=5"),
        ("Trailer", " X-T"),
        ("Authorization", " Basic eDp5"),
    ];
    prop_oneof![
        6 => (name, prop::collection::vec(byte, 0..24)).prop_map(|(n, v)| (n, Wire(v))),
        1 => prop::sample::select(common)
            .prop_map(|(n, v)| (n.to_string(), Wire(v.as_bytes().to_vec()))),
    ]
}

/// Framing fields, the body, and the body as framed.
#[derive(Clone, Debug, Default)]
struct Framed {
    fields: Vec<(String, Wire)>,
    body: Vec<u8>,
    wire: Vec<u8>,
    chunked: bool,
}

fn chunk_ext() -> impl Strategy<Value = String> {
    r#"([ \t]{0,2}(;[a-z]{1,4}(=([a-z0-9]{1,4}|"[ a-z;=]{0,6}"))?){1,2})?"#
}

/// A chunk size in hex of either case, with leading zeros.
fn size(n: usize, zeros: usize, upper: bool) -> String {
    let hex = match upper {
        true => format!("{n:X}"),
        false => format!("{n:x}"),
    };
    format!("{}{hex}", "0".repeat(zeros))
}

/// `big`: now and then a body of up to 300 kB.
fn framed(big: bool) -> BoxedStrategy<Framed> {
    let body = || prop::collection::vec(any::<u8>(), 0..160);
    let length = (
        body(),
        0..3usize,
        ows(),
        ows(),
        prop::sample::select(vec!["Content-Length", "content-length", "CONTENT-LENGTH"]),
    )
        .prop_map(|(body, zeros, a, b, name)| {
            let value = format!(" {a}{}{}{b}", "0".repeat(zeros), body.len());
            Framed {
                fields: vec![(name.to_string(), Wire(value.into_bytes()))],
                wire: body.clone(),
                body,
                chunked: false,
            }
        });
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..48),
        0..3usize,
        any::<bool>(),
        chunk_ext(),
    );
    let trailer = ("X-T[a-z]{0,4}", "[ -~]{0,10}");
    let te: Vec<&[&str]> = vec![
        &["chunked"],
        &["Chunked"],
        &["CHUNKED"],
        &["gzip, chunked"],
        &["identity,chunked"],
        &["\tchunked "],
        &["deflate , chunked"],
        &["gzip", "chunked"],
    ];
    let chunked = (
        prop::collection::vec(chunk, 0..4),
        (0..3usize, chunk_ext()),
        prop::collection::vec(trailer, 0..3),
        prop::sample::select(te),
        prop::sample::select(vec!["Transfer-Encoding", "transfer-encoding"]),
    )
        .prop_map(|(chunks, (zeros, ext), trailers, te, name)| {
            let mut f = Framed {
                chunked: true,
                ..Framed::default()
            };
            for v in te {
                f.fields
                    .push((name.to_string(), Wire(format!(" {v}").into_bytes())));
            }
            for (data, zeros, upper, ext) in chunks {
                f.wire.extend_from_slice(
                    format!("{}{ext}\r\n", size(data.len(), zeros, upper)).as_bytes(),
                );
                f.wire.extend_from_slice(&data);
                f.wire.extend_from_slice(b"\r\n");
                f.body.extend_from_slice(&data);
            }
            f.wire
                .extend_from_slice(format!("{}{ext}\r\n", "0".repeat(zeros + 1)).as_bytes());
            for (n, v) in trailers {
                f.wire.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            f.wire.extend_from_slice(b"\r\n");
            f
        });
    let large = (1usize..300_000, any::<u64>(), any::<bool>(), 1usize..70_000).prop_map(
        |(len, seed, chunked, piece)| {
            let body = noise(len, seed);
            match chunked {
                false => Framed {
                    fields: vec![(
                        "Content-Length".into(),
                        Wire(format!(" {len}").into_bytes()),
                    )],
                    wire: body.clone(),
                    body,
                    chunked,
                },
                true => {
                    let mut wire = Vec::new();
                    for data in body.chunks(piece) {
                        wire.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        wire.extend_from_slice(data);
                        wire.extend_from_slice(b"\r\n");
                    }
                    wire.extend_from_slice(b"0\r\n\r\n");
                    let te = ("Transfer-Encoding".into(), Wire(b" chunked".to_vec()));
                    Framed {
                        fields: vec![te],
                        wire,
                        body,
                        chunked,
                    }
                }
            }
        },
    );
    let small = prop_oneof![1 => Just(Framed::default()), 2 => length, 2 => chunked];
    match big {
        true => prop_oneof![20 => small, 1 => large].boxed(),
        false => small.boxed(),
    }
}

/// `len` bytes of xorshift noise.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn request(big: bool) -> impl Strategy<Value = Req> {
    let host = (
        prop::sample::select(vec!["Host", "host", "HOST"]),
        "[a-z0-9.-]{1,12}(:[0-9]{1,5})?",
    );
    let expect = (
        Just("Expect"),
        prop::sample::select(vec!["100-continue", "100-Continue"]),
    );
    let read = (
        Just("X-Read"),
        prop_oneof![
            Just("readlines".to_string()),
            Just("iter".to_string()),
            Just("readline".to_string()),
            (1..5000usize).prop_map(|n| format!("read:{n}")),
            (1..100usize).prop_map(|n| format!("readline:{n}")),
        ],
    );
    let content_type = (
        prop::sample::select(vec!["Content-Type", "content-type"]),
        "[a-z]{1,8}/[a-z0-9.+-]{1,8}(; ?charset=[a-z0-9-]{1,8})?",
    );
    let head = (
        method(),
        target(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec!["", "", "", "\r\n", "\n"]),
    );
    let fields = (
        prop::collection::vec(field(), 0..6),
        prop::option::of(host),
        prop::option::of(content_type),
        prop::option::weighted(0.1, expect),
        prop::option::of(read),
        prop::collection::vec(any::<Index>(), 5),
    );
    (head, fields, framed(big)).prop_map(
        |(
            (method, target, star, http10, lead),
            (mut fields, host, ctype, expect, read, at),
            framed,
        )| {
            let target = match method.as_str() {
                "OPTIONS" if star => "*".to_string(),
                _ => target,
            };
            let singles = host
                .into_iter()
                .chain(ctype)
                .chain(expect.map(|(n, v)| (n, v.to_string())))
                .map(|(n, v)| (n.to_string(), format!(" {v}")))
                .chain(read.map(|(n, v)| (n.to_string(), format!(" {v}"))))
                .map(|(n, v)| (n, Wire(v.into_bytes())));
            for (i, f) in singles.enumerate() {
                fields.insert(at[i].index(fields.len() + 1), f);
            }
            // Framing fields stay together and in order: "gzip" then "chunked" is not the
            // reverse.
            let at = at[4].index(fields.len() + 1);
            fields.splice(at..at, framed.fields);
            Req {
                lead,
                method,
                target,
                // hyper refuses Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1).
                version: match http10 && !framed.chunked {
                    true => "HTTP/1.0",
                    false => "HTTP/1.1",
                },
                fields,
                body: Wire(framed.body),
                framed: Wire(framed.wire),
            }
        },
    )
}

/// Where to cut the input into separate writes: mostly nowhere.
fn splits() -> impl Strategy<Value = Vec<Index>> {
    prop_oneof![
        2 => Just(vec![]),
        1 => prop::collection::vec(any::<Index>(), 1..4),
    ]
}

/// One to three requests on one connection; only the last may be HTTP/1.0, which closes it.
fn pipeline(big: bool) -> impl Strategy<Value = Vec<Req>> {
    prop::collection::vec(request(big), 1..4).prop_map(|mut reqs| {
        let last = reqs.len() - 1;
        for r in &mut reqs[..last] {
            r.version = "HTTP/1.1";
        }
        reqs
    })
}

// ---------------------------------------------------------------------------------------------
// Broken requests with a known answer

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Status(u16),
    /// Cut short inside the head: nothing to answer, the connection just closes.
    Silent,
}

#[derive(Clone, Debug)]
struct Broken {
    what: String,
    wire: Wire,
    expect: Expect,
}

/// One thing wrong with an otherwise valid HTTP/1.1 request that has a Host header.
#[derive(Clone, Debug)]
enum Break {
    /// A control character (not HTAB, CR or LF) anywhere in the head that leaves its end alone.
    Ctl(Index, u8),
    LoneLf(Index),
    LoneCr(Index),
    CrlfToLf(Index),
    /// Any CRLF but the head's last two, whose loss would leave the head unfinished.
    CrlfToCr(Index),
    ObsFold(Index, &'static str),
    BadField(Index, Wire),
    DupContentLength(Index, bool),
    ContentLength(&'static str),
    ContentLengthAndChunked(Index, bool),
    TransferEncoding(&'static [&'static str], u16),
    LowercaseMethod(Index),
    Method(String, u16),
    Version(&'static str, u16),
    Target(&'static str),
    HighByteInTarget(Index, u8),
    DupHost(Index),
    DupContentType(Index),
    Expectation(&'static str),
    TooManyFields(usize),
    Chunks(Wire),
    Truncate(Index),
}

fn breaks() -> impl Strategy<Value = Break> {
    let ctl = prop_oneof![0u8..=8, 0x0bu8..=0x0c, 0x0eu8..=0x1f, Just(0x7f)];
    let bad_fields: Vec<&[u8]> = vec![
        b"X-A : v",
        b": v",
        b"X-A v",
        b"X A: v",
        b"X-A\t: v",
        b"X(A): v",
        b"X-\xc3\xa4: v",
        b"X-A: v\x7f",
        b"X-A: \x00",
    ];
    let content_lengths = vec![
        "+5",
        "-1",
        "5, 5",
        "5,5",
        "0x5",
        "5 5",
        "",
        "1e3",
        "5.0",
        "\u{0665}",
        "1000000000000000000",
        "0000000000000000005",
    ];
    let transfer_encodings: Vec<(&[&str], u16)> = vec![
        (&["chunked, chunked"], 400),
        (&["chunked", "chunked"], 400),
        (&["chunked, gzip"], 400),
        (&["chunked", "gzip"], 400),
        (&["gzip"], 400),
        (&["identity"], 400),
        (&[""], 400),
        (&["chunked,"], 400),
        (&[",chunked"], 400),
        (&["gzip,,chunked"], 400),
        (&["xchunked"], 501),
        (&["chunked;q=1"], 501),
        (&["foo, chunked"], 501),
        (&["br", "chunked"], 501),
        (&["\"chunked\""], 501),
    ];
    let methods = prop_oneof![
        "[A-Z]{0,2}".prop_map(|m| (m, 400)),
        "[A-Z]{21,30}".prop_map(|m| (m, 400)),
        "[A-Z]{1,5}#[A-Z]{1,5}".prop_map(|m| (m, 400)),
        r#"[A-Z]{1,4}[(),/:;<=>?@\[\]{}"][A-Z]{1,4}"#.prop_map(|m| (m, 400)),
        Just(("CONNECT".to_string(), 405)),
    ];
    let versions = vec![
        ("HTTP/1.2", 505),
        ("HTTP/2.0", 505),
        ("HTTP/0.9", 505),
        ("HTTP/9.9", 505),
        ("http/1.1", 400),
        ("HTTP/1", 400),
        ("HTTP/2", 400),
        ("HTTP/1.10", 400),
        ("HTTP/a.b", 400),
        ("HTTP\\1.1", 400),
        ("HTTP/1.1 x", 400),
        ("", 400),
    ];
    let targets = vec![
        "a", "x/y", "?q", "ftp://h/", "*", "", "/a b", "http:/x", "http//x",
    ];
    let expectations = vec!["nope", "100-continue, x", "200-ok", "", "100-continuee"];
    let chunks: Vec<&[u8]> = vec![
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"g\r\n\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",
        b"00000000000000005\r\nhello\r\n0\r\n\r\n",
        b"5;a\x01b\r\nhello\r\n0\r\n\r\n",
        b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        b"0;\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloXY0\r\n\r\n",
        b"3\r\nhello\r\n0\r\n\r\n",
        b"9\r\nhello",
        b"FFFFFFFFFFFFFFFF\r\nhello",
        b"5\r\nhello\r\n",
        b"5\r\nhello\r\n0\r\n",
        b"5\r\nhello\r\n0\r\nX-T: 1\r\n",
        b"0\r\nContent-Length: 5\r\n\r\n",
        b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"0\r\nhost: x\r\n\r\n",
        b"0\r\nTrailer: x\r\n\r\n",
        b"0\r\nTE: x\r\n\r\n",
        b"0\r\nExpect: x\r\n\r\n",
        b"0\r\n folded\r\n\r\n",
        b"0\r\nX-T : 1\r\n\r\n",
        b"0\r\nX-T: \x01\r\n\r\n",
        b"0\r\nnocolon\r\n\r\n",
        b"0\r\nX-T: 1\n\r\n",
        b"0\r\n\n",
    ];
    prop_oneof![
        (any::<Index>(), ctl).prop_map(|(i, b)| Break::Ctl(i, b)),
        any::<Index>().prop_map(Break::LoneLf),
        any::<Index>().prop_map(Break::LoneCr),
        any::<Index>().prop_map(Break::CrlfToLf),
        any::<Index>().prop_map(Break::CrlfToCr),
        (
            any::<Index>(),
            prop::sample::select(vec![" x", "\tx", " ", "\t"])
        )
            .prop_map(|(i, f)| Break::ObsFold(i, f)),
        (any::<Index>(), prop::sample::select(bad_fields))
            .prop_map(|(i, f)| Break::BadField(i, Wire(f.to_vec()))),
        (any::<Index>(), any::<bool>()).prop_map(|(i, same)| Break::DupContentLength(i, same)),
        prop::sample::select(content_lengths).prop_map(Break::ContentLength),
        (any::<Index>(), any::<bool>())
            .prop_map(|(i, first)| Break::ContentLengthAndChunked(i, first)),
        prop::sample::select(transfer_encodings)
            .prop_map(|(te, status)| Break::TransferEncoding(te, status)),
        any::<Index>().prop_map(Break::LowercaseMethod),
        methods.prop_map(|(m, status)| Break::Method(m, status)),
        prop::sample::select(versions).prop_map(|(v, status)| Break::Version(v, status)),
        prop::sample::select(targets).prop_map(Break::Target),
        (any::<Index>(), 0x80u8..=0xff).prop_map(|(i, b)| Break::HighByteInTarget(i, b)),
        any::<Index>().prop_map(Break::DupHost),
        any::<Index>().prop_map(Break::DupContentType),
        prop::sample::select(expectations).prop_map(Break::Expectation),
        (0..4usize).prop_map(Break::TooManyFields),
        prop::sample::select(chunks).prop_map(|c| Break::Chunks(Wire(c.to_vec()))),
        any::<Index>().prop_map(Break::Truncate),
    ]
}

fn broken() -> impl Strategy<Value = Broken> {
    (request(true), breaks()).prop_map(|(mut req, brk)| {
        req.lead = "";
        req.version = "HTTP/1.1";
        if !req
            .fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            req.fields.insert(0, ("Host".into(), Wire(b" x".to_vec())));
        }
        let what = format!("{brk:?}");
        let (wire, expect) = apply(&req, brk);
        Broken {
            what,
            wire: Wire(wire),
            expect,
        }
    })
}

fn insert_at(mut v: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    v.splice(at..at, bytes.iter().copied());
    v
}

fn crlfs(head: &[u8]) -> Vec<usize> {
    (0..head.len() - 1)
        .filter(|&i| &head[i..i + 2] == b"\r\n")
        .collect()
}

fn apply(req: &Req, brk: Break) -> (Vec<u8>, Expect) {
    use Expect::Status;
    let head = req.head();
    let body = &req.framed.0;
    let with_head = |head: Vec<u8>| [head, body.clone()].concat();
    let with_fields = |req: &Req, fields: Vec<(String, Wire)>, framed: Vec<u8>| {
        let r = Req {
            fields,
            framed: Wire(framed),
            ..req.clone()
        };
        r.wire()
    };
    let field = |n: &str, v: &str| (n.to_string(), Wire(format!(" {v}").into_bytes()));
    // Positions past the first byte and before the head's final "\r\n\r\n" (or its "\n\r\n"):
    // a byte there can neither turn into a skipped empty line nor hide the head's end.
    let inside =
        |i: Index, from: usize, before_end: usize| from + i.index(head.len() - before_end - from);
    match brk {
        Break::Ctl(i, b) => (
            with_head(insert_at(head.clone(), inside(i, 0, 2), &[b])),
            Status(400),
        ),
        Break::LoneLf(i) => (
            with_head(insert_at(head.clone(), inside(i, 1, 1), b"\n")),
            Status(400),
        ),
        Break::LoneCr(i) => (
            with_head(insert_at(head.clone(), inside(i, 1, 2), b"\r")),
            Status(400),
        ),
        Break::CrlfToLf(i) => {
            let at = *i.get(&crlfs(&head));
            let mut h = head.clone();
            h.remove(at);
            (with_head(h), Status(400))
        }
        Break::CrlfToCr(i) => {
            let all = crlfs(&head);
            let at = *i.get(&all[..all.len() - 2]);
            let mut h = head.clone();
            h.remove(at + 1);
            (with_head(h), Status(400))
        }
        Break::ObsFold(i, fold) => {
            let mut lines = req.head_lines();
            lines.insert(1 + i.index(lines.len()), fold.as_bytes().to_vec());
            let mut h: Vec<u8> = lines
                .iter()
                .flat_map(|l| [&l[..], b"\r\n"].concat())
                .collect();
            h.extend_from_slice(b"\r\n");
            (with_head(h), Status(400))
        }
        Break::BadField(i, line) => {
            let mut lines = req.head_lines();
            lines.insert(1 + i.index(lines.len()), line.0);
            let mut h: Vec<u8> = lines
                .iter()
                .flat_map(|l| [&l[..], b"\r\n"].concat())
                .collect();
            h.extend_from_slice(b"\r\n");
            (with_head(h), Status(400))
        }
        Break::DupContentLength(i, same) => {
            let n = req.body.0.len();
            let mut fields = req.without_framing();
            fields.push(field("Content-Length", &n.to_string()));
            let other = if same { n } else { n + 1 };
            fields.insert(
                i.index(fields.len() + 1),
                field("content-length", &other.to_string()),
            );
            (with_fields(req, fields, req.body.0.clone()), Status(400))
        }
        Break::ContentLength(v) => {
            let mut fields = req.without_framing();
            fields.push(field("Content-Length", v));
            (with_fields(req, fields, req.body.0.clone()), Status(400))
        }
        Break::ContentLengthAndChunked(i, cl_first) => {
            let mut fields = req.without_framing();
            let (a, b) = (
                field("Content-Length", &req.body.0.len().to_string()),
                field("Transfer-Encoding", "chunked"),
            );
            let (a, b) = if cl_first { (a, b) } else { (b, a) };
            let at = i.index(fields.len() + 1);
            fields.insert(at, b);
            fields.insert(at, a);
            (with_fields(req, fields, req.body.0.clone()), Status(400))
        }
        Break::TransferEncoding(values, status) => {
            let mut fields = req.without_framing();
            fields.extend(values.iter().map(|v| field("Transfer-Encoding", v)));
            (
                with_fields(req, fields, b"0\r\n\r\n".to_vec()),
                Status(status),
            )
        }
        Break::LowercaseMethod(i) => {
            let letters: Vec<usize> = (0..req.method.len())
                .filter(|&j| req.method.as_bytes()[j].is_ascii_uppercase())
                .collect();
            let method = match letters.is_empty() {
                true => "get".to_string(),
                false => {
                    let at = *i.get(&letters);
                    let mut m = req.method.clone().into_bytes();
                    m[at] = m[at].to_ascii_lowercase();
                    String::from_utf8(m).unwrap()
                }
            };
            let r = Req {
                method,
                ..req.clone()
            };
            (r.wire(), Status(400))
        }
        Break::Method(method, status) => (
            Req {
                method,
                ..req.clone()
            }
            .wire(),
            Status(status),
        ),
        Break::Version(v, status) => (
            Req {
                version: v,
                ..req.clone()
            }
            .wire(),
            Status(status),
        ),
        Break::Target(t) => {
            // "*" is fine for OPTIONS, which the base request may use.
            let r = Req {
                method: "GET".into(),
                target: t.into(),
                ..req.clone()
            };
            (r.wire(), Status(400))
        }
        Break::HighByteInTarget(i, b) => {
            let at = req.method.len() + 1 + i.index(req.target.len() + 1);
            (with_head(insert_at(head.clone(), at, &[b])), Status(400))
        }
        Break::DupHost(i) => {
            let mut fields = req.fields.clone();
            fields.insert(i.index(fields.len() + 1), field("host", "y"));
            (with_fields(req, fields, body.clone()), Status(400))
        }
        Break::DupContentType(i) => {
            let mut fields = req.fields.clone();
            fields.push(field("Content-Type", "text/plain"));
            fields.insert(i.index(fields.len() + 1), field("content-type", "a/b"));
            (with_fields(req, fields, body.clone()), Status(400))
        }
        Break::Expectation(v) => {
            let mut fields = req.fields.clone();
            fields.push(field("Expect", v));
            (with_fields(req, fields, body.clone()), Status(417))
        }
        Break::TooManyFields(extra) => {
            let mut fields = req.fields.clone();
            let n = 101 - fields.len().min(101) + extra;
            fields.extend((0..n).map(|j| field(&format!("X-Many-{j}"), "v")));
            (with_fields(req, fields, body.clone()), Status(431))
        }
        Break::Chunks(bad) => {
            let mut fields = req.without_framing();
            fields.push(field("Transfer-Encoding", "chunked"));
            let mut framed = Vec::new();
            if !req.body.0.is_empty() {
                framed.extend_from_slice(format!("{:x}\r\n", req.body.0.len()).as_bytes());
                framed.extend_from_slice(&req.body.0);
                framed.extend_from_slice(b"\r\n");
            }
            framed.extend_from_slice(&bad.0);
            (with_fields(req, fields, framed), Status(400))
        }
        Break::Truncate(i) => {
            let wire = req.wire();
            let cut = i.index(wire.len());
            let expect = match cut < head.len() {
                true => Expect::Silent,
                // A body cut short: the app's read fails and the server answers for it.
                false => Status(400),
            };
            (wire[..cut].to_vec(), expect)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hidden requests

#[derive(Clone, Debug)]
struct Smuggle {
    what: &'static str,
    wire: Wire,
    /// What a strict parser makes of the stream.
    statuses: Vec<u16>,
    paths: Vec<String>,
    /// The front request's body, when the hidden request must be inside it.
    front_body: Option<Vec<u8>>,
}

fn smuggling() -> impl Strategy<Value = Smuggle> {
    let hidden = (
        prop::sample::select(vec!["GET", "POST", "DELETE"]),
        "[a-z0-9]{1,8}",
    )
        .prop_map(|(m, tag)| {
            let path = format!("/smuggled/{tag}");
            (
                format!("{m} {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
                path,
            )
        });
    let tricks = vec![
        "cl+te",
        "te+cl",
        "two content-lengths",
        "bad te",
        "tab before chunked",
        "underscore te, cl covers all",
        "underscore te, cl covers the last chunk",
        "bad chunk",
        "bare lf ends the head",
        "http/1.0 with te",
        "forbidden trailer",
        "pipelined after content-length",
        "pipelined after chunked",
        "inside a content-length body",
        "inside a chunk",
    ];
    let te = vec![
        "chunked",
        " chunked",
        "Chunked",
        "gzip, chunked",
        "chunked ",
    ];
    let bad_te: Vec<(&[u8], u16)> = vec![
        (b"Transfer-Encoding : chunked", 400),
        (b"Transfer-Encoding\t: chunked", 400),
        (b" Transfer-Encoding: chunked", 400),
        (b"\tTransfer-Encoding: chunked", 400),
        (b"Transfer-Encoding:\x0bchunked", 400),
        (b"Transfer-Encoding: chunked\x00", 400),
        (b"Transfer\x00Encoding: chunked", 400),
        (b"Transfer-Encoding: chunked, identity", 400),
        (b"Transfer-Encoding: xchunked", 501),
        (b"Transfer-Encoding: \"chunked\"", 501),
        (
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            400,
        ),
    ];
    let bad_chunks: Vec<&[u8]> = vec![
        b"0 \r\n\r\n",
        b"0\n\r\n",
        b"0\r\n\n",
        b"00000000000000000\r\n\r\n",
        b"3\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"0;x\n\r\n",
        b"5;\rx\r\nhello\r\n0\r\n\r\n",
    ];
    let trailers = vec![
        "Content-Length: 0",
        "Transfer-Encoding: chunked",
        "Host: y",
        "Trailer: x",
    ];
    (
        prop::sample::select(tricks),
        hidden,
        prop::sample::select(vec!["POST", "PUT", "GET"]),
        prop::sample::select(te),
        prop::sample::select(bad_te),
        prop::sample::select(bad_chunks),
        prop::sample::select(trailers),
        (0..64usize, any::<bool>()),
    )
        .prop_map(
            |(what, (hidden, path), method, te, (bad_te, te_status), bad_chunk, trailer, (n, b))| {
                let front = format!("{method} /front HTTP/1.1\r\nHost: x\r\n");
                let zero_then = [&b"0\r\n\r\n"[..], &hidden].concat();
                let chunk_of = |data: &[u8]| {
                    [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n0\r\n\r\n"].concat()
                };
                let refused = |wire: Vec<u8>, status: u16| (wire, vec![status], vec![], None);
                let front_only = vec!["/front".to_string()];
                let (wire, statuses, paths, front_body) = match what {
                    "cl+te" | "te+cl" => {
                        let cl = format!("Content-Length: {}\r\n", [0, 5, zero_then.len(), n][n % 4]);
                        let te = format!("Transfer-Encoding: {te}\r\n");
                        let fields = match what {
                            "cl+te" => cl + &te,
                            _ => te + &cl,
                        };
                        refused([format!("{front}{fields}\r\n").as_bytes(), &zero_then].concat(), 400)
                    }
                    "two content-lengths" => {
                        let len = hidden.len();
                        let (a, c) = if b { (0, len) } else { (len, n % (len + 1)) };
                        let fields = format!("Content-Length: {a}\r\nContent-Length: {c}\r\n");
                        refused([format!("{front}{fields}\r\n").as_bytes(), &hidden].concat(), 400)
                    }
                    "bad te" => {
                        let head = [front.as_bytes(), bad_te, b"\r\nContent-Length: 5\r\n\r\n"].concat();
                        refused([&head[..], &zero_then].concat(), te_status)
                    }
                    "tab before chunked" => {
                        let head = format!("{front}Transfer-Encoding:\tchunked\r\n\r\n");
                        let paths = vec!["/front".to_string(), path];
                        ([head.as_bytes(), &zero_then].concat(), vec![200, 200], paths, Some(vec![]))
                    }
                    "underscore te, cl covers all" => {
                        let head = format!(
                            "{front}Transfer_Encoding: chunked\r\nContent-Length: {}\r\n\r\n",
                            zero_then.len()
                        );
                        ([head.as_bytes(), &zero_then].concat(), vec![200], front_only, Some(zero_then.clone()))
                    }
                    "underscore te, cl covers the last chunk" => {
                        let head = format!(
                            "{front}Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                        );
                        let paths = vec!["/front".to_string(), path];
                        ([head.as_bytes(), &zero_then].concat(), vec![200, 200], paths, Some(b"0\r\n\r\n".to_vec()))
                    }
                    "bad chunk" => {
                        let head = format!("{front}Transfer-Encoding: chunked\r\n\r\n");
                        refused([head.as_bytes(), bad_chunk, &hidden].concat(), 400)
                    }
                    "bare lf ends the head" => {
                        let ends: [&[u8]; 3] = [b"\n\n", b"\r\n\n", b"\n\r\n"];
                        let head = [front.as_bytes(), b"Content-Length: 0", ends[n % 3]].concat();
                        refused([&head[..], &hidden].concat(), 400)
                    }
                    "http/1.0 with te" => {
                        let head = format!("{method} /front HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
                        refused([head.as_bytes(), &zero_then].concat(), 400)
                    }
                    "forbidden trailer" => {
                        let head = format!("{front}Transfer-Encoding: chunked\r\n\r\n0\r\n{trailer}\r\n\r\n");
                        refused([head.as_bytes(), &hidden].concat(), 400)
                    }
                    "pipelined after content-length" => {
                        let body = vec![b'x'; n];
                        let head = format!("{front}Content-Length: {n}\r\n\r\n");
                        let paths = vec!["/front".to_string(), path];
                        ([head.as_bytes(), &body, &hidden].concat(), vec![200, 200], paths, Some(body))
                    }
                    "pipelined after chunked" => {
                        let head = format!("{front}Transfer-Encoding: chunked\r\n\r\n");
                        let trailer: &[u8] = if b { b"X-T: 1\r\n" } else { b"" };
                        let body = vec![b'x'; n + 1];
                        let mut chunked = chunk_of(&body);
                        chunked.truncate(chunked.len() - 2);
                        let wire = [head.as_bytes(), &chunked, trailer, b"\r\n", &hidden].concat();
                        let paths = vec!["/front".to_string(), path];
                        (wire, vec![200, 200], paths, Some(body))
                    }
                    "inside a content-length body" => {
                        let head = format!("{front}Content-Length: {}\r\n\r\n", hidden.len());
                        ([head.as_bytes(), &hidden].concat(), vec![200], front_only, Some(hidden.clone()))
                    }
                    _ => {
                        let head = format!("{front}Transfer-Encoding: chunked\r\n\r\n");
                        ([head.as_bytes(), &chunk_of(&hidden)].concat(), vec![200], front_only, Some(hidden.clone()))
                    }
                };
                Smuggle {
                    what,
                    wire: Wire(wire),
                    statuses,
                    paths,
                    front_body,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Mangled requests

#[derive(Clone, Debug)]
enum Edit {
    Insert(Index, u8),
    Delete(Index),
    Replace(Index, u8),
    Splice(Index, &'static str),
    Truncate(Index),
    Repeat(Index, usize),
}

fn mangled() -> impl Strategy<Value = Wire> {
    let byte = prop_oneof![
        2 => any::<u8>(),
        1 => prop::sample::select(b"\r\n\t \x00:;,%#?/0aF\x7f\xff".to_vec()),
    ];
    let pieces = vec![
        "\r\n",
        "\n",
        "\r",
        "\r\n\r\n",
        "\n\n",
        " ",
        "\t",
        "\r\n ",
        "Content-Length: 3\r\n",
        "Content-Length: 0\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip\r\n",
        "0\r\n\r\n",
        "5\r\nhello\r\n",
        "GET /x HTTP/1.1\r\n",
        "HTTP/1.0",
        "HTTP/1.1",
        "Expect: 100-continue\r\n",
        "Host: y\r\n",
        "Connection: close\r\n",
        "HEAD / HTTP/1.1\r\n\r\n",
        "%00",
        "%zz",
        "?",
        "#",
        "chunked",
        ",",
    ];
    let edit = prop_oneof![
        (any::<Index>(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<Index>(), prop::sample::select(pieces)).prop_map(|(i, p)| Edit::Splice(i, p)),
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), 1..40usize).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ];
    (pipeline(true), prop::collection::vec(edit, 1..5)).prop_map(|(reqs, edits)| {
        let mut wire: Vec<u8> = reqs.iter().flat_map(Req::wire).collect();
        for e in edits {
            let len = wire.len();
            match e {
                Edit::Insert(i, b) => wire.insert(i.index(len + 1), b),
                Edit::Delete(i) if len > 0 => {
                    wire.remove(i.index(len));
                }
                Edit::Replace(i, b) if len > 0 => wire[i.index(len)] = b,
                Edit::Splice(i, p) => wire = insert_at(wire, i.index(len + 1), p.as_bytes()),
                Edit::Truncate(i) => wire.truncate(i.index(len + 1)),
                Edit::Repeat(i, n) if len > 0 => {
                    let at = i.index(len);
                    let piece = wire[at..(at + n).min(len)].to_vec();
                    wire = insert_at(wire, at, &piece);
                }
                _ => {}
            }
        }
        Wire(wire)
    })
}

#[derive(Clone, Copy, Debug)]
enum Limit {
    RequestLine(usize),
    FieldLine(usize),
    Fields(usize),
}
