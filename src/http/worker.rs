//! The pool handler: runs the WSGI driver for each request (attached) and writes the access-log
//! line afterwards (detached).

use pyo3::prelude::*;

use crate::logging::access::{AccessLog, AccessRecord};
use crate::pool::Handler;
use crate::wsgi::{self, Served, Statics};

pub struct WsgiWorker {
    app: Py<PyAny>,
    statics: Statics,
    access: Option<AccessLog>,
}

impl WsgiWorker {
    pub fn new(app: Py<PyAny>, statics: Statics, access: Option<AccessLog>) -> WsgiWorker {
        WsgiWorker {
            app,
            statics,
            access,
        }
    }
}

impl Handler for WsgiWorker {
    type Job = wsgi::Request;
    type Done = Option<Served>;

    fn handle(&self, py: Python<'_>, job: wsgi::Request) -> Option<Served> {
        let served = wsgi::serve(py, self.app.bind(py), &self.statics, job);
        self.access.as_ref().and(served)
    }

    fn needs_finish(&self) -> bool {
        self.access.is_some()
    }

    fn finish(&self, served: Option<Served>) {
        let (Some(log), Some(s)) = (&self.access, served) else {
            return;
        };
        log.log(&AccessRecord {
            remote: &s.conn.remote_addr,
            method: &s.parts.method,
            uri: &s.parts.uri,
            version: s.parts.version,
            request_headers: &s.parts.headers,
            response_headers: None,
            status: s.status,
            bytes: s.bytes,
            elapsed: s.received.elapsed(),
        });
    }
}
