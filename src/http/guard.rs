//! The request-stream guard: a strict HTTP/1.1 framing check that runs on the raw bytes before
//! hyper sees them. hyper parses leniently where gunicorn (and a safe proxy chain) does not:
//! whitespace after a chunk size, stacked `Transfer-Encoding`, `Content-Length` beside
//! `Transfer-Encoding`, lowercase methods, over-long header lines. The guard follows each
//! message's framing (heads, `Content-Length` bodies, chunked bodies and trailers) so it knows
//! where every head starts, checks each head whole, and forwards the bytes unchanged, except
//! for target characters hyper's URI parser refuses but gunicorn serves (`"`, `{`, `|`, …),
//! which are percent-encoded on the way in while the raw target is kept for `RAW_URI`.
//!
//! A bad head is not forwarded: hyper gets a stand-in head instead, and the per-connection
//! `Notes` tell the service to answer it with the error and close, so responses to earlier
//! pipelined requests still go out first. A bad chunked body turns into a read error hyper
//! reports to the body reader, with the reason left in `Notes`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::BytesMut;

/// Why the guard refused a request. Statuses live in `super::error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request line too long")]
    LineTooLong,
    #[error("request header fields too large: {0}")]
    FieldsTooLarge(&'static str),
    #[error("unsupported HTTP version")]
    Version,
    #[error("unsupported transfer coding")]
    TransferCoding,
    #[error("unsupported expectation")]
    Expectation,
    #[error("method not allowed: {0}")]
    Method(&'static str),
}

/// The most bytes of one request head buffered, whatever the limits say.
const MAX_HEAD: usize = 4 << 20;

/// gunicorn's request limits. Defaults are gunicorn's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line, without its CRLF. Default is 4094.
    pub request_line: usize,
    /// Most header fields in one request. Default is 100.
    pub fields: usize,
    /// Longest header line, CRLF included. Default is 8190.
    pub field_size: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
        }
    }
}

/// What the guard tells the service about one forwarded head, in request order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HeadNote {
    /// The target as sent, when it had to be re-encoded for hyper.
    pub raw_target: Option<String>,
    /// The stand-in for a refused head.
    pub reject: Option<Reject>,
}

/// Shared by a connection's guard and its service.
#[derive(Debug, Default)]
pub struct Notes {
    heads: Mutex<VecDeque<HeadNote>>,
    body: Mutex<Option<Reject>>,
    /// Requests hyper has handed the service on this connection.
    requests: AtomicU64,
    /// The server is stopping: every response from now on says `Connection: close`.
    closing: AtomicBool,
}

impl Notes {
    /// From now on, responses close the connection.
    pub fn close_after_response(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Whether responses should close the connection.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Requests read on this connection so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// The note for the next request hyper hands the service.
    pub fn next_head(&self) -> HeadNote {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.heads
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front())
            .unwrap_or_default()
    }

    /// Why the current body was cut off, if the guard cut it.
    pub fn body_error(&self) -> Option<Reject> {
        self.body.lock().ok().and_then(|b| *b)
    }

    fn push_head(&self, note: HeadNote) {
        if let Ok(mut q) = self.heads.lock() {
            q.push_back(note);
        }
    }

    fn set_body_error(&self, r: Reject) {
        if let Ok(mut b) = self.body.lock() {
            *b = Some(r);
        }
    }
}

/// Where in the request stream the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a head into `pending`.
    Head,
    /// Passing this many body bytes through.
    Fixed(u64),
    /// Collecting a chunk-size line into `pending`.
    ChunkSize,
    ChunkData(u64),
    /// Expecting the CRLF after chunk data (`pending` holds what came of it).
    ChunkEnd,
    /// Collecting the trailer section into `pending`.
    Trailers,
    /// Refused: nothing more is forwarded.
    Closed,
}

/// What `push` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep going; read `out`.
    Ok,
    /// Forward `out`, then end the stream (a head was refused: `out` ends with the stand-in).
    EndAfter,
    /// The body is bad: forward `out`, then fail the read.
    FailAfter,
}

/// A head hyper will parse and the service will answer with the refusal from `Notes`.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused\r\n\r\n";

/// Longest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;

pub struct Guard {
    state: State,
    limits: Limits,
    pending: Vec<u8>,
}

impl Guard {
    pub fn new(limits: Limits) -> Guard {
        Guard {
            state: State::Head,
            limits,
            pending: Vec::new(),
        }
    }

    /// Feeds bytes from the client; appends what hyper may read to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut BytesMut, notes: &Notes) -> Verdict {
        while !input.is_empty() {
            match self.state {
                State::Closed => return Verdict::EndAfter,
                State::Head => {
                    if self.pending.is_empty() {
                        // Empty lines before a request line are allowed (RFC 9112 2.2).
                        let skip = input
                            .iter()
                            .take_while(|b| matches!(b, b'\r' | b'\n'))
                            .count();
                        input = &input[skip..];
                        if input.is_empty() {
                            break;
                        }
                    }
                    let (end, used) = match find_head_end(&self.pending, input) {
                        Some(used) => (true, used),
                        None => (false, input.len()),
                    };
                    self.pending.extend_from_slice(&input[..used]);
                    input = &input[used..];
                    // Bounded even when the limits are raised, so no client makes us buffer
                    // without end.
                    let max_head = self
                        .limits
                        .fields
                        .saturating_add(1)
                        .saturating_mul(self.limits.field_size)
                        .saturating_add(self.limits.request_line + 2)
                        .min(MAX_HEAD);
                    if !end {
                        if self.pending.len() > max_head {
                            return self.refuse(
                                Reject::FieldsTooLarge("request head too large"),
                                out,
                                notes,
                            );
                        }
                        continue;
                    }
                    let head = std::mem::take(&mut self.pending);
                    match check_head(&head, &self.limits) {
                        Ok(checked) => {
                            match checked.forward {
                                Some(ref forward) => out.extend_from_slice(forward),
                                None => out.extend_from_slice(&head),
                            }
                            notes.push_head(HeadNote {
                                raw_target: checked.raw_target,
                                reject: None,
                            });
                            self.state = match checked.framing {
                                Framing::None => State::Head,
                                Framing::Length(0) => State::Head,
                                Framing::Length(n) => State::Fixed(n),
                                Framing::Chunked => State::ChunkSize,
                            };
                        }
                        Err(reject) => return self.refuse(reject, out, notes),
                    }
                }
                State::Fixed(n) | State::ChunkData(n) => {
                    let take = input.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.passed(take);
                }
                State::ChunkSize | State::Trailers => {
                    let trailers = self.state == State::Trailers;
                    let found = match trailers {
                        // The trailer section ends with an empty line; with no trailers that
                        // is the very first line.
                        true => find_trailers_end(&self.pending, input),
                        false => input.iter().position(|&b| b == b'\n').map(|i| i + 1),
                    };
                    let used = found.unwrap_or(input.len());
                    // Held back until checked: hyper must never act on a line the guard refuses.
                    self.pending.extend_from_slice(&input[..used]);
                    input = &input[used..];
                    if found.is_none() {
                        if self.pending.len() > MAX_CHUNK_LINE {
                            return self
                                .fail_body(Reject::BadRequest("chunk line too long"), notes);
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut self.pending);
                    let next = match trailers {
                        true => check_trailers(&line, &self.limits).map(|()| State::Head),
                        false => parse_chunk_size(&line).map(|n| match n {
                            0 => State::Trailers,
                            n => State::ChunkData(n),
                        }),
                    };
                    match next {
                        Ok(s) => {
                            out.extend_from_slice(&line);
                            self.state = s;
                        }
                        Err(r) => return self.fail_body(r, notes),
                    }
                }
                State::ChunkEnd => {
                    let need = 2 - self.pending.len();
                    let take = need.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == 2 {
                        if self.pending != b"\r\n" {
                            return self.fail_body(
                                Reject::BadRequest("chunk data not followed by CRLF"),
                                notes,
                            );
                        }
                        self.pending.clear();
                        self.state = State::ChunkSize;
                    }
                }
            }
        }
        Verdict::Ok
    }

    /// How many of the next bytes are body data the guard need not see: the rest of a
    /// `Content-Length` body or of a chunk's data. They may go to hyper without passing
    /// through `push`, as long as `passed` counts them.
    pub fn opaque(&self) -> u64 {
        match self.state {
            State::Fixed(n) | State::ChunkData(n) => n,
            _ => 0,
        }
    }

    /// Counts `n` (at most `opaque()`) body data bytes as forwarded.
    pub fn passed(&mut self, n: usize) {
        let n = n as u64;
        self.state = match self.state {
            State::Fixed(left) if left <= n => State::Head,
            State::Fixed(left) => State::Fixed(left - n),
            State::ChunkData(left) if left <= n => State::ChunkEnd,
            State::ChunkData(left) => State::ChunkData(left - n),
            other => other,
        };
    }

    fn refuse(&mut self, reject: Reject, out: &mut BytesMut, notes: &Notes) -> Verdict {
        self.state = State::Closed;
        self.pending = Vec::new();
        notes.push_head(HeadNote {
            raw_target: None,
            reject: Some(reject),
        });
        out.extend_from_slice(STAND_IN);
        Verdict::EndAfter
    }

    fn fail_body(&mut self, reject: Reject, notes: &Notes) -> Verdict {
        self.state = State::Closed;
        self.pending = Vec::new();
        notes.set_body_error(reject);
        Verdict::FailAfter
    }
}

/// Where the head ends in `input`, given what is already pending: the number of `input` bytes
/// up to and including the blank line.
fn find_head_end(pending: &[u8], input: &[u8]) -> Option<usize> {
    // Look for "\n\r\n" or "\n\n" across the boundary; a bare LF is refused later.
    let tail = &pending[pending.len().saturating_sub(2)..];
    let mut window: Vec<u8> = Vec::new();
    let joined: &[u8] = if tail.is_empty() {
        input
    } else {
        window.extend_from_slice(tail);
        window.extend_from_slice(input);
        &window
    };
    let offset = tail.len();
    let mut i = 0;
    while let Some(p) = joined[i..].iter().position(|&b| b == b'\n') {
        let at = i + p;
        let rest = &joined[at + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(at + 2 - offset);
        }
        if rest.starts_with(b"\r\n") {
            return Some(at + 3 - offset);
        }
        if rest.len() < 2 && (rest.is_empty() || rest[0] == b'\r') {
            return None;
        }
        i = at + 1;
    }
    None
}

/// Like `find_head_end`, but the section may be empty (its first line blank).
fn find_trailers_end(pending: &[u8], input: &[u8]) -> Option<usize> {
    if pending.is_empty() {
        if input.starts_with(b"\r\n") {
            return Some(2);
        }
        if input.first() == Some(&b'\n') {
            return Some(1);
        }
    }
    if pending == b"\r" && input.first() == Some(&b'\n') {
        return Some(1);
    }
    find_head_end(pending, input)
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug)]
struct CheckedHead {
    framing: Framing,
    /// The head to forward with its target re-encoded for hyper.
    forward: Option<Vec<u8>>,
    /// The target as sent, when hyper's parsed URI would not give it back as sent (re-encoded
    /// characters, a fragment, an absolute form without a path).
    raw_target: Option<String>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits a head into lines, refusing bare CR and bare LF.
fn lines(head: &[u8]) -> Result<Vec<&[u8]>, Reject> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        match head[i] {
            b'\n' => return Err(Reject::BadRequest("bare LF")),
            b'\r' => {
                if head.get(i + 1) != Some(&b'\n') {
                    return Err(Reject::BadRequest("bare CR"));
                }
                out.push(&head[start..i]);
                i += 2;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start != head.len() {
        out.push(&head[start..]);
    }
    Ok(out)
}

/// Target bytes hyper's URI parser refuses but that gunicorn serves: passed on percent-encoded.
fn needs_encoding(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
    )
}

fn check_head(head: &[u8], limits: &Limits) -> Result<CheckedHead, Reject> {
    let lines = lines(head)?;
    let (request_line, fields) = match lines.split_first() {
        Some((first, rest)) => (*first, rest.iter().take_while(|l| !l.is_empty()).copied()),
        None => return Err(Reject::BadRequest("empty request")),
    };
    if request_line.len() > limits.request_line {
        return Err(Reject::LineTooLong);
    }
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::BadRequest("malformed request line"));
    };
    // gunicorn's method rule: a token of 3 to 20 characters, no lowercase, no '#'.
    if !(3..=20).contains(&method.len())
        || !method
            .iter()
            .all(|&b| is_tchar(b) && !b.is_ascii_lowercase() && b != b'#')
    {
        return Err(Reject::BadRequest("invalid method"));
    }
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => {}
        v if v.len() == 8
            && v.starts_with(b"HTTP/")
            && v[5].is_ascii_digit()
            && v[6] == b'.'
            && v[7].is_ascii_digit() =>
        {
            return Err(Reject::Version)
        }
        _ => return Err(Reject::BadRequest("invalid HTTP version")),
    }
    if target.is_empty() || target.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return Err(Reject::BadRequest("invalid request target"));
    }
    match (method, target) {
        (b"CONNECT", _) => return Err(Reject::Method("CONNECT")),
        (b"OPTIONS", b"*") => {}
        (_, b"*") => return Err(Reject::BadRequest("'*' target outside OPTIONS")),
        (_, t) if t[0] == b'/' => {}
        (_, t) if t.starts_with(b"http://") || t.starts_with(b"https://") => {}
        _ => return Err(Reject::BadRequest("invalid request target")),
    }

    let mut count = 0;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut host = false;
    let mut content_type = false;
    for line in fields {
        count += 1;
        if count > limits.fields {
            return Err(Reject::FieldsTooLarge("too many header fields"));
        }
        let (name, value) = split_field(line, limits)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(Reject::BadRequest("more than one Content-Length"));
            }
            if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
                return Err(Reject::BadRequest("invalid Content-Length"));
            }
            content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let lower = coding.to_ascii_lowercase();
                match lower.as_slice() {
                    // Nothing may follow chunked, and chunking twice is never meant.
                    _ if chunked => {
                        return Err(Reject::BadRequest("transfer coding after chunked"))
                    }
                    b"chunked" => chunked = true,
                    b"identity" | b"gzip" | b"deflate" | b"compress" | b"x-gzip" => {}
                    b"" => return Err(Reject::BadRequest("empty transfer coding")),
                    _ => return Err(Reject::TransferCoding),
                }
            }
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            if host {
                return Err(Reject::BadRequest("more than one Host"));
            }
            host = true;
        } else if name.eq_ignore_ascii_case(b"content-type") {
            // Two media types for one body: whichever a component picks, another may pick the
            // other one.
            if content_type {
                return Err(Reject::BadRequest("more than one Content-Type"));
            }
            content_type = true;
        } else if name.eq_ignore_ascii_case(b"expect")
            && version == b"HTTP/1.1"
            && !value.eq_ignore_ascii_case(b"100-continue")
        {
            return Err(Reject::Expectation);
        }
    }
    if transfer_encoding && !chunked {
        // A request body must end with chunked, or its end cannot be found.
        return Err(Reject::BadRequest("transfer coding without chunked"));
    }
    if chunked && content_length.is_some() {
        return Err(Reject::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let framing = match (chunked, content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    };

    let forward = target.iter().any(|&b| needs_encoding(b)).then(|| {
        let mut forward = Vec::with_capacity(head.len() + 16);
        forward.extend_from_slice(method);
        forward.push(b' ');
        for &b in target {
            match needs_encoding(b) {
                true => forward.extend_from_slice(format!("%{b:02X}").as_bytes()),
                false => forward.push(b),
            }
        }
        forward.push(b' ');
        forward.extend_from_slice(&head[method.len() + 1 + target.len() + 1..]);
        forward
    });
    // `http://h` or `http://h?q`: the authority ends at something other than a `/`.
    let pathless_absolute = !target.starts_with(b"/")
        && target
            .windows(3)
            .position(|w| w == b"://")
            .is_some_and(|i| {
                let rest = &target[i + 3..];
                rest.iter().find(|&&b| matches!(b, b'/' | b'?' | b'#')) != Some(&b'/')
            });
    let raw_target = (forward.is_some() || target.contains(&b'#') || pathless_absolute)
        .then(|| String::from_utf8_lossy(target).into_owned());
    Ok(CheckedHead {
        framing,
        forward,
        raw_target,
    })
}

/// One header or trailer line: a token name, a colon right after it, and a value without
/// control characters other than tab; the value comes back with its surrounding OWS trimmed.
fn split_field<'a>(line: &'a [u8], limits: &Limits) -> Result<(&'a [u8], &'a [u8]), Reject> {
    if line.len() + 2 > limits.field_size {
        return Err(Reject::FieldsTooLarge("header field too long"));
    }
    if matches!(line[0], b' ' | b'\t') {
        return Err(Reject::BadRequest("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Reject::BadRequest("header without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Reject::BadRequest("invalid header name"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Reject::BadRequest("control character in a header value"));
    }
    Ok((name, value.trim_ascii()))
}

/// `1*HEXDIG [ chunk-ext ] CRLF`; whitespace is allowed only before a `;` extension.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Reject> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(Reject::BadRequest("chunk size line without CRLF"))?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Reject::BadRequest("invalid chunk size"));
    }
    let rest = &line[digits..];
    let ext = rest.trim_ascii_start();
    if !rest.is_empty() && !ext.starts_with(b";") {
        return Err(Reject::BadRequest("invalid chunk size"));
    }
    if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Reject::BadRequest("control character in a chunk extension"));
    }
    let hex = std::str::from_utf8(&line[..digits])
        .map_err(|_| Reject::BadRequest("invalid chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| Reject::BadRequest("invalid chunk size"))
}

/// Trailer fields follow header rules, and may not carry framing or routing.
fn check_trailers(section: &[u8], limits: &Limits) -> Result<(), Reject> {
    for line in lines(section)?.into_iter().filter(|l| !l.is_empty()) {
        let (name, _) = split_field(line, limits)?;
        const FORBIDDEN: [&[u8]; 6] = [
            b"content-length",
            b"transfer-encoding",
            b"host",
            b"trailer",
            b"te",
            b"expect",
        ];
        if FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            return Err(Reject::BadRequest("forbidden trailer field"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[&[u8]]) -> (Vec<u8>, Verdict, Vec<HeadNote>, Option<Reject>) {
        let notes = Notes::default();
        let mut g = Guard::new(Limits::default());
        let mut out = BytesMut::new();
        let mut verdict = Verdict::Ok;
        for piece in input {
            verdict = g.push(piece, &mut out, &notes);
            if verdict != Verdict::Ok {
                break;
            }
        }
        let heads = notes.heads.lock().unwrap().iter().cloned().collect();
        (out.to_vec(), verdict, heads, notes.body_error())
    }

    #[test]
    fn pipelined_requests_pass_through_unchanged_in_any_split() {
        let stream: &[u8] = b"\r\nPOST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /c HTTP/1.0\r\n\r\n";
        for split in 1..stream.len() {
            let (out, verdict, heads, _) = run(&[&stream[..split], &stream[split..]]);
            assert_eq!(verdict, Verdict::Ok, "split at {split}");
            assert_eq!(out, &stream[2..], "split at {split}");
            assert_eq!(heads.len(), 3);
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytewise).0, &stream[2..]);
    }

    #[test]
    fn refused_heads_become_a_stand_in() {
        let cases: &[(&[u8], Reject)] = &[
            (
                b"get / HTTP/1.1\r\n\r\n",
                Reject::BadRequest("invalid method"),
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n",
                Reject::BadRequest("bare LF"),
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
                Reject::BadRequest("obsolete line folding"),
            ),
            (
                b"GET / HTTP/1.1\r\nA : b\r\n\r\n",
                Reject::BadRequest("invalid header name"),
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
                Reject::BadRequest("control character in a header value"),
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                Reject::BadRequest("more than one Content-Length"),
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
                Reject::BadRequest("invalid Content-Length"),
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                Reject::BadRequest("transfer coding after chunked"),
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                Reject::BadRequest("both Content-Length and Transfer-Encoding"),
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: foo\r\n\r\n",
                Reject::TransferCoding,
            ),
            (b"GET / HTTP/1.2\r\n\r\n", Reject::Version),
            (
                b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
                Reject::BadRequest("invalid request target"),
            ),
            (
                b"GET * HTTP/1.1\r\n\r\n",
                Reject::BadRequest("'*' target outside OPTIONS"),
            ),
            (
                b"GET / HTTP/1.1\r\nExpect: nope\r\n\r\n",
                Reject::Expectation,
            ),
        ];
        for (head, want) in cases {
            let (out, verdict, heads, _) = run(&[head]);
            assert_eq!(
                verdict,
                Verdict::EndAfter,
                "{}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(out, STAND_IN);
            assert_eq!(
                heads[0].reject,
                Some(*want),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn limits_are_gunicorns() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(4094));
        assert_eq!(
            run(&[long_line.as_bytes()]).2[0].reject,
            Some(Reject::LineTooLong)
        );
        let ok_field = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(8190 - 5));
        assert_eq!(run(&[ok_field.as_bytes()]).2[0].reject, None);
        let big_field = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(8190 - 4));
        assert!(matches!(
            run(&[big_field.as_bytes()]).2[0].reject,
            Some(Reject::FieldsTooLarge(_))
        ));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(101));
        assert!(matches!(
            run(&[many.as_bytes()]).2[0].reject,
            Some(Reject::FieldsTooLarge(_))
        ));
    }

    #[test]
    fn transfer_codings_may_span_header_lines() {
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let (out, verdict, heads, _) = run(&[head]);
        assert_eq!((verdict, heads[0].reject), (Verdict::Ok, None));
        assert_eq!(out, &head[..]);
        let (_, _, heads, _) = run(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"]);
        assert_eq!(
            heads[0].reject,
            Some(Reject::BadRequest("transfer coding without chunked"))
        );
    }

    #[test]
    fn a_refused_trailer_is_never_forwarded() {
        let stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nContent-Length: 9\r\n\r\n";
        let (out, verdict, _, _) = run(&[stream]);
        assert_eq!(verdict, Verdict::FailAfter);
        assert!(
            out.ends_with(b"a\r\n0\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn bad_chunks_fail_the_body() {
        for body in [
            &b"5 \r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"zz\r\n",
            b"0\r\nContent-Length: 9\r\n\r\n",
        ] {
            let mut stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            stream.extend_from_slice(body);
            let (_, verdict, _, body_error) = run(&[&stream]);
            assert_eq!(
                verdict,
                Verdict::FailAfter,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(body_error.is_some());
        }
    }

    #[test]
    fn odd_target_characters_are_encoded_and_remembered() {
        let (out, _, heads, _) =
            run(&[b"GET /with_\"quotes\"?foo=\"bar\" HTTP/1.1\r\nHost: x\r\n\r\n"]);
        assert_eq!(
            out,
            b"GET /with_%22quotes%22?foo=%22bar%22 HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        assert_eq!(
            heads[0].raw_target.as_deref(),
            Some("/with_\"quotes\"?foo=\"bar\"")
        );
    }
}
