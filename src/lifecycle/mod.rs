//! The server's life: Starting (log, import the app, bind) → Serving → Draining → Stopped, with
//! the lines gunicorn users know at each step. It owns the order of startup and shutdown and
//! nothing of what each step does.

mod pidfile;
mod signals;

pub use pidfile::PidFileError;

use signals::Signals;

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use crate::config::{LogSettings, Mode, Settings};
use crate::error::StartupError;
use crate::http::guard::Limits;
use crate::http::{Shared, WsgiWorker};
use crate::logging::python::PyLogger;
use crate::logging::{self, AccessLog, Sink};
use crate::pool::{Pool, PoolOptions};
use crate::server::{self, BindOptions, ConnOptions};
use crate::wsgi::{self, HeaderPolicy, Statics};

/// How long a quick stop waits for pool threads to let go of Python.
const QUICK_STOP_WAIT: Duration = Duration::from_millis(200);

/// Runs the server to completion. `Ok(true)` when everything stopped cleanly; `Ok(false)` when
/// pool threads were still busy in the app at exit (the caller must then not finalize Python).
pub fn run(py: Python<'_>, settings: Settings) -> Result<bool, StartupError> {
    if settings.mode != Mode::Serve {
        return check(py, &settings).map(|()| true);
    }
    let access = start_logs(py, &settings.log)?;
    tracing::info!("Starting ferrocorn {}", env!("CARGO_PKG_VERSION"));
    for note in &settings.notes {
        tracing::warn!("{note}");
    }

    wsgi::app::prepare(py, &settings.app)?;
    let app = wsgi::app::load(py, &settings.app.spec)?;
    let statics = Statics::new(
        py,
        &settings.app.script_name,
        settings.pool.size > 1,
        WsgiWorker::keep_for(access.as_ref()),
        HeaderPolicy::new(&settings.server.proxy),
    )
    .map_err(|e| StartupError::Python(e.to_string()))?;
    restore_default_sigint(py);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrocorn-io")
        .build()
        .map_err(|err| StartupError::Io {
            context: "Cannot start the I/O runtime",
            err,
        })?;
    let signals = runtime
        .block_on(async { Signals::install() })
        .map_err(|err| StartupError::Io {
            context: "Cannot install signal handlers",
            err,
        })?;

    let bind = BindOptions {
        backlog: settings.server.backlog,
        reuse_port: settings.server.reuse_port,
        umask: settings.server.umask,
    };
    let bound = py.detach(|| server::bind_all(&settings.server.binds, bind))?;
    let pid = std::process::id();
    for b in &bound {
        tracing::info!("Listening at: {} ({pid})", b.url());
    }
    tracing::info!("Using worker: threads");
    let pidfile = match &settings.server.pidfile {
        Some(path) => Some(pidfile::PidFile::create(path)?),
        None => None,
    };

    let pool = Pool::start(
        PoolOptions {
            size: settings.pool.size,
            queue_limit: settings.pool.queue_limit,
            timeout: settings.pool.timeout,
            grace: settings.server.graceful_timeout,
            max_waiting: settings.server.worker_connections,
        },
        Arc::new(WsgiWorker::new(app, statics, access)),
    )
    .map_err(|err| StartupError::Io {
        context: "Cannot start the worker threads",
        err,
    })?;
    tracing::info!(
        "Booting worker pool with {} threads ({} workers x {} threads) in pid: {pid}",
        settings.pool.size,
        settings.pool.workers,
        settings.pool.threads
    );

    let opts = ConnOptions {
        keepalive: settings.server.keepalive,
        graceful_timeout: settings.server.graceful_timeout,
        limits: Limits {
            request_line: settings.server.limits.request_line,
            fields: settings.server.limits.fields,
            field_size: settings.server.limits.field_size,
        },
        max_connections: settings.server.worker_connections,
        proxy_protocol: settings.server.proxy_protocol.clone(),
        send_timeout: settings.pool.timeout,
    };
    let graceful_timeout = settings.server.graceful_timeout;
    let clean = py.detach(move || -> Result<bool, StartupError> {
        let shared = Arc::new(Shared {
            pool: pool.submitter(),
            runtime: runtime.handle().clone(),
            timeout: settings.pool.timeout,
            limit_request_body: settings.server.limit_request_body,
        });
        let drained = runtime
            .block_on(server::serve(bound, shared, opts, signals.stop_requested()))
            .map_err(|err| StartupError::Io {
                context: "Cannot serve",
                err,
            })?;
        runtime.shutdown_timeout(Duration::from_millis(100));
        let wait = if drained {
            graceful_timeout
        } else {
            QUICK_STOP_WAIT
        };
        Ok(pool.shutdown(wait))
    })?;
    tracing::info!("Shutting down: Master");
    if let Some(p) = pidfile {
        p.remove();
    }
    Ok(clean)
}

/// Sets up the error log and returns the access log, if any. With a Python logging
/// configuration both go through Python's `logging`, and the access log is always on (as in
/// gunicorn).
fn start_logs(py: Python<'_>, log: &LogSettings) -> Result<Option<AccessLog>, StartupError> {
    let offset = py.import("time").and_then(|t| {
        t.call_method0("localtime")?
            .getattr("tm_gmtoff")?
            .extract::<i32>()
    });
    logging::set_local_offset(offset.unwrap_or(0));
    let python = |err: PyErr| StartupError::Python(format!("cannot configure logging: {err}"));
    let (error_logger, access_sink) = match &log.python {
        Some(how) => {
            logging::python::configure(py, how).map_err(python)?;
            let error = PyLogger::get(py, "gunicorn.error").map_err(python)?;
            let access = PyLogger::get(py, "gunicorn.access").map_err(python)?;
            (Some(error), Some(Sink::Python(access)))
        }
        None => {
            let access =
                match &log.accesslog {
                    Some(spec) => Some(Sink::open(spec, Sink::Stdout).map_err(|err| {
                        StartupError::LogFile {
                            path: spec.clone(),
                            err,
                        }
                    })?),
                    None => None,
                };
            (None, access)
        }
    };
    logging::init(log, error_logger).map_err(|err| StartupError::LogFile {
        path: log.errorlog.clone(),
        err,
    })?;
    Ok(access_sink.map(|sink| AccessLog::new(&log.access_log_format, sink)))
}

/// `--check-config` and `--print-config`: print what was asked, then import the app as serving
/// would, and stop.
fn check(py: Python<'_>, settings: &Settings) -> Result<(), StartupError> {
    if let Mode::Print(text) = &settings.mode {
        print!("{text}");
    }
    wsgi::app::prepare(py, &settings.app)
        .and_then(|()| wsgi::app::load(py, &settings.app.spec))
        .map(drop)
        .map_err(StartupError::Check)
}

/// Python's SIGINT handler would raise `KeyboardInterrupt` on the main thread once `run`
/// returns; the server handles SIGINT itself.
fn restore_default_sigint(py: Python<'_>) {
    let reset = py.import("signal").and_then(|signal| {
        let dfl = signal.getattr("SIG_DFL")?;
        signal.call_method1("signal", (signal.getattr("SIGINT")?, dfl))
    });
    if let Err(err) = reset {
        tracing::debug!("could not reset the SIGINT handler: {err}");
    }
}
