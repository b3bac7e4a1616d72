//! Requests under a `--static` mount, answered without the Python pool: the service asks
//! [`StaticSite::find`] on its own task (no allocation, no I/O), and on a hit
//! [`StaticSite::answer`] runs `static_files` on one of the runtime's blocking threads, turns
//! its reply into a hyper response whose body is the same file body `wsgi.file_wrapper` uses
//! (read block by block off the runtime, with the connection's backpressure), and writes the
//! access-log line there too, so neither a slow disk nor a Python logging handler holds up the
//! runtime. What is served, and how it is decided, is `static_files`'s business.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;

use super::error::RequestError;
use super::response_body::ResponseBody;
use crate::config::StaticMount;
use crate::logging::access::{AccessLog, AccessRecord};
use crate::static_files::{Body, Hit, Mounts};
use crate::wsgi::ConnInfo;

/// The mounts of one server and the access log their requests are written to.
#[derive(Debug)]
pub struct StaticSite {
    mounts: Mounts,
    access: Option<AccessLog>,
}

impl StaticSite {
    /// `None` without mounts, so a server without `--static` checks one `Option` per request.
    pub fn new(mounts: &[StaticMount], access: Option<AccessLog>) -> Option<Arc<StaticSite>> {
        (!mounts.is_empty()).then(|| {
            Arc::new(StaticSite {
                mounts: Mounts::new(mounts),
                access,
            })
        })
    }

    /// The mount `path` (the request path as sent) lies under, if any.
    pub(super) fn find(&self, path: &str) -> Option<Hit> {
        self.mounts.find(path)
    }

    /// Answers a request found under a mount. The request body, if a client sent one, is
    /// dropped unread: hyper then drains or closes the connection as it sees fit.
    pub(super) async fn answer(
        self: Arc<Self>,
        hit: Hit,
        conn: Arc<ConnInfo>,
        raw_target: Option<String>,
        req: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let received = Instant::now();
        let (parts, _body) = req.into_parts();
        let work = move || self.answer_blocking(hit, &parts, &conn, raw_target, received);
        match tokio::task::spawn_blocking(work).await {
            Ok(resp) => resp,
            Err(_) => RequestError::WorkerLost.into_response(),
        }
    }

    fn answer_blocking(
        &self,
        hit: Hit,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        raw_target: Option<String>,
        received: Instant,
    ) -> Response<ResponseBody> {
        let (resp, bytes) = match self.mounts.serve(hit, parts) {
            Ok(reply) => {
                let bytes = reply.body_len();
                let body = match reply.body {
                    Body::Empty => ResponseBody::Full(None),
                    Body::File { file, len } => ResponseBody::file(file, len),
                };
                let mut resp = Response::new(body);
                *resp.status_mut() = reply.status;
                *resp.headers_mut() = reply.headers;
                (resp, bytes)
            }
            Err(err) => {
                if let crate::static_files::StaticError::Io(cause) = &err {
                    tracing::error!("Error serving {}: {cause}", parts.uri.path());
                }
                let resp = RequestError::from(err).into_response();
                let bytes = match parts.method {
                    http::Method::HEAD => 0,
                    _ => hyper::body::Body::size_hint(resp.body())
                        .exact()
                        .unwrap_or(0),
                };
                (resp, bytes)
            }
        };
        if let Some(log) = &self.access {
            log.log(&AccessRecord {
                remote: &conn.remote_addr,
                method: &parts.method,
                uri: &parts.uri,
                raw_target: raw_target.as_deref(),
                // There is no environ: `%(U)s` falls back to the request path and `%({x}e)s`
                // atoms render as `-`.
                path_info: None,
                version: parts.version,
                request_headers: &parts.headers,
                response_headers: Some(resp.headers()),
                environ: &[],
                status: resp.status().as_u16(),
                bytes,
                elapsed: received.elapsed(),
            });
        }
        resp
    }
}
