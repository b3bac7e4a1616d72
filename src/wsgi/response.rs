//! Driving one request through the app: build the environ, call the app, turn what it returns
//! into a head and body chunks, and call `close()` on it exactly once whatever happens. A list
//! goes out in one piece with a `Content-Length`; any other iterable streams chunk by chunk; a
//! `wsgi.file_wrapper` around a real file is read and sent with Python detached.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use super::environ::{self, Statics};
use super::file_wrapper::FileWrapper;
use super::input::Input;
use super::start_response::{type_name, SendError, StartResponse};
use super::{ConnInfo, Failure, Request};

/// A finished request, for the access log.
pub struct Served {
    pub parts: http::request::Parts,
    pub conn: Arc<ConnInfo>,
    pub received: Instant,
    pub status: u16,
    pub bytes: u64,
    /// The request target as sent, when it differs from `parts.uri`.
    pub raw_target: Option<String>,
    /// Kept when `Statics` asks (`Keep`).
    pub response_headers: Option<http::HeaderMap>,
    pub environ: Option<Py<PyDict>>,
}

/// Serves one request on the calling (attached) pool thread. `None` when the client left
/// before the app was called.
pub fn serve(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    statics: &Statics,
    req: Request,
) -> Option<Served> {
    let Request {
        parts,
        raw_target,
        body,
        conn,
        reply,
        received,
    } = req;
    if reply.head.is_closed() {
        return None;
    }
    let (input, body_failure) = Input::new(body);
    let is_head = parts.method == http::Method::HEAD;
    let responder = StartResponse::new(
        reply.head,
        body_failure,
        is_head,
        statics.keep.response_headers,
    );
    let mut kept_environ = None;
    let view = super::RequestView {
        parts: &parts,
        raw_target: raw_target.as_deref(),
        conn: &conn,
    };
    let hooked = statics.around.as_ref().map(|a| (a, a.before(py, &view)));
    let outcome = Bound::new(py, responder).and_then(|responder| {
        let input = Bound::new(py, input)?.into_any();
        let mut environ = None;
        match environ::build(py, statics, &parts, raw_target.as_deref(), &conn, input)? {
            Ok(env) => {
                if statics.keep.environ {
                    kept_environ = Some(env.clone().unbind());
                }
                if hooked.is_some() {
                    environ = Some(env.clone());
                }
                run_app(py, app, env.into_any(), &responder, &parts)
            }
            Err(err) => {
                tracing::debug!("{err}");
                responder.get().fail(py, err.failure());
            }
        }
        let sent = responder.get().sent();
        if let Some((around, state)) = hooked {
            around.after(py, state, environ.as_ref(), sent.status, sent.bytes);
        }
        Ok((sent, responder.get().take_headers()))
    });
    let (sent, response_headers) = match outcome {
        Ok(sent) => sent,
        Err(err) => {
            // Only reachable when Python cannot allocate the environ or the objects around it.
            tracing::error!(
                "Error preparing request {}: {}",
                parts.uri.path(),
                format_exception(py, &err)
            );
            return None;
        }
    };
    Some(Served {
        parts,
        conn,
        received,
        status: sent.status,
        bytes: sent.bytes,
        raw_target,
        response_headers,
        environ: kept_environ,
    })
}

/// Why driving the app's result stopped early.
enum Stop {
    Raised(PyErr),
    Send(SendError),
}

impl From<PyErr> for Stop {
    fn from(e: PyErr) -> Stop {
        Stop::Raised(e)
    }
}

impl From<SendError> for Stop {
    fn from(e: SendError) -> Stop {
        Stop::Send(e)
    }
}

fn run_app(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    environ: Bound<'_, PyAny>,
    responder: &Bound<'_, StartResponse>,
    parts: &http::request::Parts,
) {
    let sr = responder.get();
    let result = match app.call1((environ, responder)) {
        Ok(result) => result,
        Err(err) => {
            report(py, parts, Stop::Raised(err));
            sr.fail(py, Failure::App);
            return;
        }
    };
    if let Err(stop) = drive(py, &result, sr) {
        let failed = !matches!(stop, Stop::Send(SendError::ClientGone));
        report(py, parts, stop);
        if failed {
            sr.fail(py, Failure::App);
        }
    }
    // PEP 3333: close() is called once the response is done, however it ended. A plain list or
    // tuple (most responses) has none: asking would raise and discard an AttributeError on
    // every request.
    let plain = result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
    let close = if plain {
        None
    } else {
        result.getattr(intern!(py, "close")).ok()
    };
    if let Some(close) = close {
        if let Err(err) = close.call0() {
            tracing::error!(
                "Error closing the response of {}: {}",
                parts.uri.path(),
                format_exception(py, &err)
            );
        }
    }
    sr.close_body(py);
}

fn report(py: Python<'_>, parts: &http::request::Parts, stop: Stop) {
    match stop {
        Stop::Raised(err) => {
            tracing::error!(
                target: crate::metrics::statsd::EXCEPTION_TARGET,
                "Error handling request {}\n{}",
                parts.uri,
                format_exception(py, &err).trim_end()
            );
        }
        Stop::Send(SendError::NotStarted) => {
            tracing::error!("Error handling request {}: the application returned without calling start_response", parts.uri);
        }
        Stop::Send(SendError::ClientGone) => {
            tracing::debug!("Client went away before {} was answered", parts.uri);
        }
    }
}

/// Sends what the app returned.
fn drive(py: Python<'_>, result: &Bound<'_, PyAny>, sr: &StartResponse) -> Result<(), Stop> {
    if let Ok(list) = result.cast::<PyList>() {
        return Ok(sr.finish(py, join(list.iter())?)?);
    }
    if let Ok(tuple) = result.cast::<PyTuple>() {
        return Ok(sr.finish(py, join(tuple.iter())?)?);
    }
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if !sr.head_sent() {
            if let Some(file) = wrapper.get().open(py) {
                return send_file(file, sr);
            }
        }
    }
    if result.is_instance_of::<pyo3::types::PyString>() || result.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "the application returned {}, not an iterable of bytes",
            type_name(result)
        ))
        .into());
    }
    for item in result.try_iter()? {
        let item = item?;
        sr.send_chunk(py, as_bytes(&item)?.as_bytes())?;
    }
    Ok(sr.finish(py, Bytes::new())?)
}

fn as_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "the application yielded {}, not bytes",
            type_name(item)
        ))
    })
}

fn join<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> PyResult<Bytes> {
    let mut buf = BytesMut::new();
    for item in items {
        buf.extend_from_slice(as_bytes(&item)?.as_bytes());
    }
    Ok(buf.freeze())
}

/// Hands a regular file to the connection: no pool thread waits while a client downloads.
fn send_file(file: super::file_wrapper::OpenFile, sr: &StartResponse) -> Result<(), Stop> {
    Ok(sr.send_file(file)?)
}

/// The Python traceback of `err`, as `traceback.format_exception` prints it.
pub(super) fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py
        .import(intern!(py, "traceback"))
        .and_then(|tb| {
            let args = (err.get_type(py), err.value(py), err.traceback(py));
            tb.call_method1(intern!(py, "format_exception"), args)
        })
        .and_then(|lines| lines.extract::<Vec<String>>());
    match formatted {
        Ok(lines) => lines.concat(),
        Err(_) => err.to_string(),
    }
}
