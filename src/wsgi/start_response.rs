//! `start_response` and the `write()` it returns, as one object per request. It validates what
//! the app declares, holds the head back until the first non-empty body bytes (PEP 3333), then
//! sends the head once and body chunks after it, never more than the app's `Content-Length`.
//! Sending tries the channel first and only detaches from Python when the client is behind.

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, SERVER};
use http::{HeaderMap, StatusCode};
use pyo3::exceptions::{PyAssertionError, PyOSError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::file_wrapper::OpenFile;
use super::input::BodyFailure;
use super::{Answer, BodyChunk, BodyError, Failure, HeadBody, ResponseHead};

/// Why a chunk could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the application returned without calling start_response")]
    NotStarted,
    #[error("client disconnected")]
    ClientGone,
}

#[pyclass(frozen, module = "ferrocorn._ferrocorn")]
pub struct StartResponse {
    state: Mutex<State>,
    body_failure: BodyFailure,
    /// A HEAD request: its response has headers only, whatever `Content-Length` says.
    head_request: bool,
    /// Keep a copy of the response headers for the access log.
    keep_headers: bool,
}

/// What follows the head, as the driver has it.
enum Pending {
    Bytes {
        first: Bytes,
        end: bool,
        depth: usize,
    },
    File(OpenFile),
}

/// The head as declared by the app, not yet sent.
struct Declared {
    status: StatusCode,
    reason: Option<Bytes>,
    headers: HeaderMap,
    content_length: Option<u64>,
}

struct State {
    declared: Option<Declared>,
    /// `Some` until the head (or a failure) is sent.
    head: Option<oneshot::Sender<Answer>>,
    /// `Some` while a streamed body is open; `None` before, after, and for whole bodies.
    body: Option<mpsc::Sender<BodyChunk>>,
    /// Bytes the app's `Content-Length` still allows.
    remaining: Option<u64>,
    /// For the access log.
    status: u16,
    sent: u64,
    /// The response headers as sent, when `keep_headers`.
    headers: Option<HeaderMap>,
}

/// What the access log needs once the response is done.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub status: u16,
    pub bytes: u64,
}

/// How many chunks may wait for a slow client before the app is made to wait.
const BODY_CHANNEL_DEPTH: usize = 16;

impl StartResponse {
    pub fn new(
        head: oneshot::Sender<Answer>,
        body_failure: BodyFailure,
        head_request: bool,
        keep_headers: bool,
    ) -> StartResponse {
        let state = State {
            declared: None,
            head: Some(head),
            body: None,
            remaining: None,
            status: 0,
            sent: 0,
            headers: None,
        };
        StartResponse {
            state: Mutex::new(state),
            body_failure,
            head_request,
            keep_headers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn head_sent(&self) -> bool {
        self.lock().head.is_none()
    }

    /// The response headers as sent, kept when asked for.
    pub fn take_headers(&self) -> Option<HeaderMap> {
        self.lock().headers.take()
    }

    pub fn sent(&self) -> Sent {
        let st = self.lock();
        Sent {
            status: st.status,
            bytes: st.sent,
        }
    }

    /// A body the app could not read is answered 400 whatever the app says: the client must
    /// not see a success for a request that was not received whole. A body cut short counts
    /// too: if the client is still there (it may only have shut its write side), it waits.
    fn body_failure(&self) -> Option<Failure> {
        let failure = self.body_failure.lock().ok()?;
        failure.as_ref().map(|e| match e {
            BodyError::TooLarge(_) => Failure::BodyTooLarge,
            BodyError::TimedOut(_) => Failure::BodyTimeout,
            e => Failure::BadBody(e.to_string()),
        })
    }

    /// Sends the head, deciding how the body follows. `first` is the first body bytes (`end`:
    /// and the last). The body goes whole with the head when it is all there: the iteration
    /// ended, or the bytes fill the app's `Content-Length`. Otherwise a channel is opened and
    /// `first` is its first chunk.
    fn answer(
        &self,
        st: &mut State,
        first: Bytes,
        end: bool,
        depth: usize,
    ) -> Result<(), SendError> {
        self.answer_with(st, Pending::Bytes { first, end, depth })
    }

    fn answer_with(&self, st: &mut State, pending: Pending) -> Result<(), SendError> {
        let Some(tx) = st.head.take() else {
            return Ok(());
        };
        if let Some(failure) = self.body_failure() {
            st.status = failure.status();
            let _ = tx.send(Answer::Failed(failure));
            return Err(SendError::ClientGone);
        }
        let Some(mut d) = st.declared.take() else {
            st.head = Some(tx);
            return Err(SendError::NotStarted);
        };
        st.status = d.status.as_u16();
        let bodiless = self.head_request || !status_has_body(d.status);
        // The head of a bodiless response keeps the app's Content-Length; no bytes follow.
        st.remaining = if bodiless { Some(0) } else { d.content_length };
        let (mut first, end, depth) = match pending {
            Pending::Bytes { first, end, depth } => (first, end, depth),
            Pending::File(_) if bodiless => (Bytes::new(), true, 0),
            Pending::File(f) => {
                // `start_file` made sure a Content-Length is declared.
                let len = d.content_length.unwrap_or(f.len);
                allow(st, usize::try_from(len).unwrap_or(usize::MAX));
                return self.send_head(st, tx, d, HeadBody::File { file: f.file, len });
            }
        };
        first.truncate(allow(st, first.len()));
        let body = match d.content_length {
            _ if bodiless => HeadBody::Full(Bytes::new()),
            Some(n) if n == first.len() as u64 => HeadBody::Full(first),
            None if end => {
                d.headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(first.len()));
                HeadBody::Full(first)
            }
            _ => {
                let (body_tx, body_rx) = mpsc::channel(depth);
                if !first.is_empty() {
                    // A fresh channel has room.
                    let _ = body_tx.try_send(BodyChunk::Data(first));
                }
                st.body = Some(body_tx);
                HeadBody::Stream(body_rx)
            }
        };
        self.send_head(st, tx, d, body)
    }

    fn send_head(
        &self,
        st: &mut State,
        tx: oneshot::Sender<Answer>,
        d: Declared,
        body: HeadBody,
    ) -> Result<(), SendError> {
        if self.keep_headers {
            st.headers = Some(d.headers.clone());
        }
        let head = ResponseHead {
            status: d.status,
            reason: d.reason,
            headers: d.headers,
            body,
        };
        tx.send(Answer::Head(head))
            .map_err(|_| SendError::ClientGone)
    }

    /// Sends body bytes, sending the head first if it is still held back.
    pub fn send_chunk(&self, py: Python<'_>, data: &[u8]) -> Result<(), SendError> {
        let mut st = self.lock();
        if st.head.is_some() {
            if data.is_empty() {
                return Ok(());
            }
            return self.answer(
                &mut st,
                Bytes::copy_from_slice(data),
                false,
                BODY_CHANNEL_DEPTH,
            );
        }
        let n = allow(&mut st, data.len());
        let Some(tx) = st.body.as_ref().filter(|_| n > 0) else {
            return Ok(());
        };
        let chunk = Bytes::copy_from_slice(&data[..n]);
        match tx.try_send(BodyChunk::Data(chunk)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(SendError::ClientGone),
            Err(TrySendError::Full(chunk)) => {
                let tx = tx.clone();
                drop(st);
                py.detach(|| crate::pool::waiting_for_client(|| tx.blocking_send(chunk)))
                    .map_err(|_| SendError::ClientGone)
            }
        }
    }

    /// Ends the response with `body` as everything still to send: a list response, or the end
    /// of an iteration (`body` empty).
    pub fn finish(&self, py: Python<'_>, body: Bytes) -> Result<(), SendError> {
        {
            let mut st = self.lock();
            if st.head.is_some() {
                self.answer(&mut st, body, true, BODY_CHANNEL_DEPTH)?;
                let stream_open = st.body.is_some();
                drop(st);
                if stream_open {
                    self.close_body(py);
                }
                return Ok(());
            }
        }
        self.send_chunk(py, &body)?;
        self.close_body(py);
        Ok(())
    }

    /// Sends the head of a file response and hands the file to the connection, which sends it
    /// (the app's `Content-Length`, if any, still wins over the file's length).
    pub fn send_file(&self, file: OpenFile) -> Result<(), SendError> {
        let mut st = self.lock();
        if let Some(d) = st.declared.as_mut() {
            if d.content_length.is_none() && status_has_body(d.status) {
                d.headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(file.len));
                d.content_length = Some(file.len);
            }
        }
        self.answer_with(&mut st, Pending::File(file))
    }

    /// Ends a streamed response. A body shorter than the app's `Content-Length` is aborted, so
    /// the client sees the connection fail rather than wait for bytes that never come.
    pub fn close_body(&self, py: Python<'_>) {
        let mut st = self.lock();
        let short = st.remaining.is_some_and(|r| r > 0);
        if let Some(tx) = st.body.take() {
            if short {
                drop(st);
                abort(py, tx);
            }
        }
    }

    /// The app failed: answer with `failure` if nothing was sent yet, else abort the connection.
    pub fn fail(&self, py: Python<'_>, failure: Failure) {
        let mut st = self.lock();
        if let Some(tx) = st.head.take() {
            let failure = self.body_failure().unwrap_or(failure);
            st.status = failure.status();
            let _ = tx.send(Answer::Failed(failure));
        } else if let Some(tx) = st.body.take() {
            drop(st);
            abort(py, tx);
        }
    }
}

fn abort(py: Python<'_>, tx: mpsc::Sender<BodyChunk>) {
    if let Err(TrySendError::Full(chunk)) = tx.try_send(BodyChunk::Abort) {
        let _ = py.detach(|| tx.blocking_send(chunk));
    }
}

/// How much of a `len`-byte chunk the app's `Content-Length` still allows; counts it as sent.
fn allow(st: &mut State, len: usize) -> usize {
    let n = match st.remaining {
        Some(r) => len.min(usize::try_from(r).unwrap_or(usize::MAX)),
        None => len,
    };
    if let Some(r) = st.remaining.as_mut() {
        *r -= n as u64;
    }
    st.sent += n as u64;
    n
}

fn status_has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let st = this.lock();
            match exc_info {
                Some(info) if st.head.is_none() => {
                    // Too late to change the response: re-raise the app's error (PEP 3333).
                    drop(st);
                    let info = info.cast::<PyTuple>()?;
                    return Err(PyErr::from_value(info.get_item(1)?));
                }
                None if st.declared.is_some() || st.head.is_none() => {
                    return Err(PyAssertionError::new_err(
                        "start_response called a second time without exc_info",
                    ));
                }
                _ => {}
            }
        }
        let declared = declare(status, headers)?;
        this.lock().declared = Some(declared);
        slf.getattr(intern!(py, "write"))
    }

    /// The imperative `write()` of PEP 3333.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.cast::<pyo3::types::PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be bytes, not {}",
                type_name(data)
            ))
        })?;
        match self.send_chunk(py, bytes.as_bytes()) {
            Ok(()) => Ok(()),
            Err(SendError::NotStarted) => {
                Err(PyAssertionError::new_err("write() before start_response"))
            }
            Err(SendError::ClientGone) => Err(PyOSError::new_err("client disconnected")),
        }
    }
}

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Validates `start_response`'s arguments into a head.
fn declare(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Declared> {
    let status = status.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!("status must be str, not {}", type_name(status)))
    })?;
    let (status, reason) = parse_status(&status.to_cow()?).map_err(PyValueError::new_err)?;
    let mut map = HeaderMap::new();
    let mut content_length = None;
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "headers must be (name, value) tuples, not {}",
                    type_name(&item)
                ))
            })?;
        let name = pair.get_item(0)?;
        let value = pair.get_item(1)?;
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err("header names and values must be str"));
        };
        let (name, value) =
            header(&name.to_cow()?, &value.to_cow()?).map_err(PyValueError::new_err)?;
        if name == CONTENT_LENGTH {
            let n = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    PyValueError::new_err(format!("invalid Content-Length header: {value:?}"))
                })?;
            if content_length.replace(n).is_some_and(|old| old != n) {
                return Err(PyValueError::new_err("conflicting Content-Length headers"));
            }
            if map.contains_key(CONTENT_LENGTH) {
                continue;
            }
        }
        if is_hop_by_hop(&name) {
            // Framing is the server's; only `Connection: close` carries a wish worth keeping.
            let close = name == CONNECTION && value.as_bytes().eq_ignore_ascii_case(b"close");
            if close {
                map.insert(CONNECTION, value);
            }
            continue;
        }
        map.append(name, value);
    }
    if !map.contains_key(SERVER) {
        map.insert(SERVER, HeaderValue::from_static("ferrocorn"));
    }
    Ok(Declared {
        status,
        reason,
        headers: map,
        content_length,
    })
}

/// `"404 Not Found"` → (404, `None`); a non-standard reason is kept for the status line.
fn parse_status(s: &str) -> Result<(StatusCode, Option<Bytes>), String> {
    let (code, reason) = match s.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (s, ""),
    };
    let status = (code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
        .then(|| StatusCode::from_bytes(code.as_bytes()).ok())
        .flatten()
        .ok_or_else(|| format!("invalid status {s:?}: expected a 3-digit code and a reason"))?;
    if reason.bytes().any(|b| b.is_ascii_control() && b != b'\t')
        || !reason.is_ascii() && reason.chars().any(|c| c as u32 > 255)
    {
        return Err(format!(
            "invalid status {s:?}: control characters in the reason"
        ));
    }
    let reason = match status.canonical_reason() {
        Some(canon) if canon == reason => None,
        _ if reason.is_empty() => None,
        _ => Some(Bytes::from(
            reason.chars().map(|c| c as u8).collect::<Vec<u8>>(),
        )),
    };
    Ok((status, reason))
}

/// One header, validated: a token name, and a latin-1 value without CR, LF or NUL.
fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let hname = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))?;
    // Nearly every value is ASCII, whose bytes are its latin-1; others are re-encoded first.
    let hvalue = if value.is_ascii() {
        HeaderValue::from_bytes(value.as_bytes()).ok()
    } else {
        let bytes: Option<Vec<u8>> = value.chars().map(|c| u8::try_from(c as u32).ok()).collect();
        bytes.and_then(|b| HeaderValue::from_bytes(&b).ok())
    };
    let hvalue = hvalue.ok_or_else(|| format!("invalid value for header {name:?}: {value:?}"))?;
    Ok((hname, hvalue))
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(parse_status("200 OK").unwrap(), (StatusCode::OK, None));
        assert_eq!(parse_status("200").unwrap(), (StatusCode::OK, None));
        assert_eq!(
            parse_status("200 Fine").unwrap(),
            (StatusCode::OK, Some(Bytes::from_static(b"Fine")))
        );
        assert_eq!(parse_status("599 Custom Thing").unwrap().0.as_u16(), 599);
        assert!(parse_status("20 OK").is_err());
        assert!(parse_status("abc OK").is_err());
        assert!(parse_status("200 OK\r\nX: y").is_err());
        assert!(parse_status("").is_err());
    }

    #[test]
    fn headers_reject_injection() {
        assert!(header("X-Ok", "fine value").is_ok());
        assert!(header("X-Bad", "a\r\nSet-Cookie: x").is_err());
        assert!(header("X-Bad", "a\nb").is_err());
        assert!(header("X Bad", "v").is_err());
        assert!(header("X-Bad:", "v").is_err());
        assert!(header("X-Bad", "a\0b").is_err());
        assert_eq!(
            header("X-Latin", "caf\u{e9}").unwrap().1.as_bytes(),
            b"caf\xe9"
        );
        assert!(header("X-Bad", "caf\u{e9}\r\nX: y").is_err());
        assert!(header("X-Euro", "\u{20ac}").is_err());
    }
}
