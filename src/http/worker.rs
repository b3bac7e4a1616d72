//! The pool handler: runs the WSGI driver for each request (attached), takes from the environ
//! what the access-log format names while still attached, and writes the line afterwards
//! (detached).

use pyo3::prelude::*;
use pyo3::types::PyDict;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::logging::access::{AccessLog, AccessRecord};
use crate::pool::Handler;
use crate::wsgi::{self, Keep, Served, Statics};

/// One request on its way to a pool thread, with the mark it leaves when a thread takes it up.
pub struct Job {
    pub request: wsgi::Request,
    pub started: Arc<StartMark>,
}

/// When a pool thread took a request up; `--timeout` counts from there, not from the queue.
#[derive(Debug, Default)]
pub struct StartMark(AtomicU64);

/// The instant marks count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl StartMark {
    fn mark(&self) {
        let nanos = epoch().elapsed().as_nanos().max(1);
        self.0
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// When the request started running, if it has.
    pub fn started(&self) -> Option<Instant> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(epoch() + Duration::from_nanos(nanos)),
        }
    }
}

pub struct WsgiWorker {
    app: Py<PyAny>,
    statics: Statics,
    access: Option<AccessLog>,
}

/// A served request with the environ values its access-log line needs.
pub struct Logged {
    served: Served,
    path_info: Option<String>,
    environ: Vec<Option<String>>,
}

impl WsgiWorker {
    pub fn new(app: Py<PyAny>, statics: Statics, access: Option<AccessLog>) -> WsgiWorker {
        WsgiWorker {
            app,
            statics,
            access,
        }
    }

    /// What `Statics` must keep past the response for `access`.
    pub fn keep_for(access: Option<&AccessLog>) -> Keep {
        let Some(needs) = access.map(AccessLog::needs) else {
            return Keep::default();
        };
        Keep {
            response_headers: needs.response_headers,
            environ: needs.path_info || !needs.environ.is_empty(),
        }
    }
}

impl Handler for WsgiWorker {
    type Job = Job;
    type Done = Option<Logged>;

    fn handle(&self, py: Python<'_>, job: Job) -> Option<Logged> {
        job.started.mark();
        let served = wsgi::serve(py, self.app.bind(py), &self.statics, job.request);
        let (log, mut served) = (self.access.as_ref()?, served?);
        let needs = log.needs();
        let (mut path_info, mut environ) = (None, vec![None; needs.environ.len()]);
        if let Some(env) = served.environ.take() {
            let env = env.bind(py);
            if needs.path_info {
                path_info = text(env, "PATH_INFO");
            }
            if !needs.environ.is_empty() {
                // gunicorn matches `{key}e` atoms against lower-cased environ keys.
                for (k, v) in env.iter() {
                    let Ok(k) = k.extract::<String>() else {
                        continue;
                    };
                    let k = k.to_ascii_lowercase();
                    if let Some(i) = needs.environ.iter().position(|n| *n == k) {
                        environ[i] = v.str().ok().map(|s| s.to_string());
                    }
                }
            }
        }
        Some(Logged {
            served,
            path_info,
            environ,
        })
    }

    fn describe(&self, job: &Job) -> String {
        let req = &job.request;
        match &req.raw_target {
            Some(raw) => format!("{} {raw}", req.parts.method),
            None => format!("{} {}", req.parts.method, req.parts.uri),
        }
    }

    fn needs_finish(&self) -> bool {
        self.access.is_some()
    }

    fn finish(&self, logged: Option<Logged>) {
        let (Some(log), Some(l)) = (&self.access, logged) else {
            return;
        };
        let s = &l.served;
        log.log(&AccessRecord {
            remote: &s.conn.remote_addr,
            method: &s.parts.method,
            uri: &s.parts.uri,
            raw_target: s.raw_target.as_deref(),
            path_info: l.path_info.as_deref(),
            version: s.parts.version,
            request_headers: &s.parts.headers,
            response_headers: s.response_headers.as_ref(),
            environ: &l.environ,
            status: s.status,
            bytes: s.bytes,
            elapsed: s.received.elapsed(),
        });
    }
}

fn text(env: &Bound<'_, PyDict>, key: &str) -> Option<String> {
    env.get_item(key).ok().flatten()?.extract().ok()
}
