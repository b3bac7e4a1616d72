//! PEP 3333, all of it: the environ, `wsgi.input`, `start_response` and `write()`, driving the
//! app's iterable, `wsgi.file_wrapper`, `wsgi.errors`, and importing the app. A request comes in
//! as `Request` (`http` crate types, a blocking `BodyReader`, and a `Reply` of channels); the
//! response leaves as one `ResponseHead` and then body chunks on the reply channel. Nothing here
//! knows sockets or hyper's server: `crate::http` is the bridge.

pub mod app;
pub mod django;
mod environ;
mod errors;
mod file_wrapper;
mod input;
mod response;
mod start_response;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::{mpsc, oneshot};

pub use environ::{build_for_bench, HeaderPolicy, Keep, Statics};
pub use response::{serve, Served};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

/// Code run around each request, such as the config file's `pre_request` and `post_request`
/// hooks: `wsgi` calls it on the pool thread, whoever builds `Statics` supplies it.
pub trait Around: Send + Sync {
    /// Before the environ is built; what it returns is handed to `after`.
    fn before(&self, py: Python<'_>, req: &RequestView<'_>) -> Option<Py<PyAny>>;
    /// Once the response is done (or failed).
    fn after(
        &self,
        py: Python<'_>,
        state: Option<Py<PyAny>>,
        environ: Option<&Bound<'_, PyDict>>,
        status: u16,
        bytes: u64,
    );
}

/// A request as `Around` sees it.
pub struct RequestView<'a> {
    pub parts: &'a http::request::Parts,
    /// The target as sent, when it differs from `parts.uri`.
    pub raw_target: Option<&'a str>,
    pub conn: &'a ConnInfo,
}

/// What the connection says about itself, built once per connection.
pub struct ConnInfo {
    /// `REMOTE_ADDR` / `REMOTE_PORT`: the peer; empty for a Unix socket.
    pub remote_addr: String,
    pub remote_port: String,
    /// `SERVER_NAME` / `SERVER_PORT` when the request has no `Host` header: the listener.
    pub server_name: String,
    pub server_port: String,
    /// `wsgi.url_scheme`: `https` on a TLS connection.
    pub url_scheme: &'static str,
    /// The TLS client's certificate (PEM), when it sent one: `SSL_CLIENT_CERT`.
    pub client_cert: Option<String>,
    /// The strings above as Python strings, made by the connection's first request and shared
    /// by the rest (every environ holds them).
    py_strings: PyOnceLock<ConnStrings>,
}

/// `REMOTE_ADDR`, `REMOTE_PORT`, `SERVER_NAME`, `SERVER_PORT` and `SSL_CLIENT_CERT` of a
/// connection, as Python strings.
struct ConnStrings {
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    server_name: Py<PyString>,
    server_port: Py<PyString>,
    client_cert: Option<Py<PyString>>,
}

impl ConnInfo {
    pub fn new(
        remote_addr: String,
        remote_port: String,
        server_name: String,
        server_port: String,
        url_scheme: &'static str,
        client_cert: Option<String>,
    ) -> ConnInfo {
        ConnInfo {
            remote_addr,
            remote_port,
            server_name,
            server_port,
            url_scheme,
            client_cert,
            py_strings: PyOnceLock::new(),
        }
    }

    /// The connection's strings for the environ, made once. A `PyOnceLock`, not a `OnceLock`:
    /// two HTTP/2 streams of one connection may get here at once, and waiting on a plain lock
    /// while attached to Python could deadlock with the thread that is making them.
    fn py_strings(&self, py: Python<'_>) -> &ConnStrings {
        self.py_strings.get_or_init(py, || ConnStrings {
            remote_addr: PyString::new(py, &self.remote_addr).unbind(),
            remote_port: PyString::new(py, &self.remote_port).unbind(),
            server_name: PyString::new(py, &self.server_name).unbind(),
            server_port: PyString::new(py, &self.server_port).unbind(),
            client_cert: self
                .client_cert
                .as_deref()
                .map(|pem| PyString::new(py, pem).unbind()),
        })
    }

    /// Whether the peer came through a Unix socket (it has no address).
    pub fn is_unix(&self) -> bool {
        self.remote_addr.is_empty()
    }
}

/// Why the request body could not be read to its end.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    /// The client went away mid-body: nobody is left to answer.
    #[error("client disconnected while sending the request body")]
    Disconnected,
    /// The body is malformed (bad chunk framing, say): the client gets a 400.
    #[error("invalid request body: {0}")]
    Malformed(String),
    /// No body bytes came for `--timeout`: the client gets a 408.
    #[error("no request body bytes for {0} s (--timeout)")]
    TimedOut(u64),
    /// The body grew past `--limit-request-body`: the client gets a 413.
    #[error("request body larger than {0} bytes (--limit-request-body)")]
    TooLarge(u64),
}

/// The request body, pulled by `wsgi.input` on a pool thread with Python detached.
pub trait BodyReader: Send {
    /// Blocks until the next chunk arrives; `Ok(None)` at the end of the body.
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError>;
}

/// One request handed to a pool thread.
pub struct Request {
    pub parts: http::request::Parts,
    /// The request target as sent, when it differs from `parts.uri` (characters hyper's URI
    /// parser refuses arrive percent-encoded).
    pub raw_target: Option<String>,
    pub body: Box<dyn BodyReader>,
    pub conn: Arc<ConnInfo>,
    pub reply: Reply,
    /// When the server had the whole head: the access log's request time starts here.
    pub received: Instant,
}

/// The way back to the connection: one answer, whose body may stream after it.
pub struct Reply {
    pub head: oneshot::Sender<Answer>,
}

impl Reply {
    pub fn channel() -> (Reply, oneshot::Receiver<Answer>) {
        let (head, rx) = oneshot::channel();
        (Reply { head }, rx)
    }
}

/// A piece of a streamed response body.
#[derive(Debug)]
pub enum BodyChunk {
    Data(Bytes),
    /// The app failed mid-body: the connection must be aborted so the client sees an error
    /// rather than a body that looks complete.
    Abort,
}

/// Status line and headers, plus how the body follows.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The app's reason phrase when it differs from the standard one for `status`.
    pub reason: Option<Bytes>,
    pub headers: HeaderMap,
    pub body: HeadBody,
}

/// How the body of a response follows its head.
#[derive(Debug)]
pub enum HeadBody {
    /// The whole body, known now (a list response, an error page); its length is exact.
    Full(Bytes),
    /// Chunks follow on this channel until its sender is dropped.
    Stream(mpsc::Receiver<BodyChunk>),
    /// `len` bytes of this file, from its current offset (`wsgi.file_wrapper`). The connection
    /// reads it; no pool thread waits on a slow client.
    File { file: std::fs::File, len: u64 },
}

/// The first answer to a request: a head, or a failure the connection renders as an error page.
#[derive(Debug)]
pub enum Answer {
    Head(ResponseHead),
    Failed(Failure),
}

/// Why the app produced no response of its own. Each one's status sits in `status()`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The app raised, returned something that is not an iterable of bytes, or never called
    /// `start_response`. The details are in the error log, not in the response.
    #[error("the application failed")]
    App,
    /// The request body could not be read (bad chunk framing, say).
    #[error("invalid request body: {0}")]
    BadBody(String),
    /// The request body is larger than `--limit-request-body` allows.
    #[error("request body too large")]
    BodyTooLarge,
    /// The client stopped sending the request body.
    #[error("request body timed out")]
    BodyTimeout,
    /// The path is outside the mount point named by `SCRIPT_NAME`.
    #[error("path outside SCRIPT_NAME")]
    OutsideScriptName,
    /// Headers the server refuses to map (`--header-map refuse`, contradictory scheme headers).
    #[error("{0}")]
    BadHeaders(String),
}

impl Failure {
    pub fn status(&self) -> u16 {
        match self {
            Failure::App => 500,
            Failure::BadBody(_) | Failure::BadHeaders(_) => 400,
            Failure::BodyTooLarge => 413,
            Failure::BodyTimeout => 408,
            Failure::OutsideScriptName => 404,
        }
    }
}
