//! The pool handler: runs the WSGI driver for each request (attached), takes from the environ
//! what the access-log format names while still attached, and writes the line afterwards
//! (detached).

use pyo3::prelude::*;
use pyo3::types::PyDict;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::logging::access::{AccessLog, AccessRecord};
use crate::pool::{Describe, Handler};
use crate::wsgi::{self, Keep, Served, Statics};

/// One request on its way to a pool thread, with its ticket.
pub struct Job {
    pub request: wsgi::Request,
    pub ticket: Arc<Ticket>,
}

/// What a request is and when a pool thread took it up, shared by the connection (`--timeout`
/// counts from there, not from the queue) and the pool's watchdog (which names the request
/// only if it overruns, so nothing is formatted per request).
#[derive(Debug)]
pub struct Ticket {
    started: AtomicU64,
    method: http::Method,
    /// The target as sent when the guard kept it, else the parsed URI.
    target: Result<String, http::Uri>,
}

/// The instant marks count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Ticket {
    pub fn new(parts: &http::request::Parts, raw_target: Option<&str>) -> Ticket {
        Ticket {
            started: AtomicU64::new(0),
            method: parts.method.clone(),
            target: raw_target
                .map(str::to_string)
                .ok_or_else(|| parts.uri.clone()),
        }
    }

    fn mark(&self) {
        let nanos = epoch().elapsed().as_nanos().max(1);
        self.started
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// When the request started running, if it has.
    pub fn started(&self) -> Option<Instant> {
        match self.started.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(epoch() + Duration::from_nanos(nanos)),
        }
    }
}

impl Describe for Ticket {
    fn describe(&self) -> String {
        match &self.target {
            Ok(raw) => format!("{} {raw}", self.method),
            Err(uri) => format!("{} {uri}", self.method),
        }
    }
}

pub struct WsgiWorker {
    app: Py<PyAny>,
    statics: Statics,
    access: Option<AccessLog>,
    /// Told when a request is interrupted for running past `--timeout` (`worker_abort`).
    on_timeout: Option<Box<OnTimeout>>,
}

type OnTimeout = dyn Fn(Python<'_>) + Send + Sync;

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
            on_timeout: None,
        }
    }

    /// Runs `f` whenever a request is interrupted for running past `--timeout`.
    pub fn on_timeout(mut self, f: impl Fn(Python<'_>) + Send + Sync + 'static) -> WsgiWorker {
        self.on_timeout = Some(Box::new(f));
        self
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
        job.ticket.mark();
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

    fn describe(&self, job: &Job) -> Arc<dyn Describe> {
        job.ticket.clone()
    }

    fn timed_out(&self, py: Python<'_>) {
        if let Some(f) = &self.on_timeout {
            f(py);
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
