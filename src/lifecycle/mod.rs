//! The server's life: Starting (log, import the app, bind) → Serving → Draining → Stopped, with
//! the lines gunicorn users know at each step. It owns the order of startup and shutdown and
//! nothing of what each step does.

mod signals;

use signals::Signals;

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use crate::config::Settings;
use crate::error::StartupError;
use crate::http::{Shared, WsgiWorker};
use crate::logging::{self, access, AccessLog, Sink};
use crate::pool::Pool;
use crate::server::{self, ConnOptions};
use crate::wsgi::{self, Statics};

/// How long a quick stop waits for pool threads to let go of Python.
const QUICK_STOP_WAIT: Duration = Duration::from_millis(200);

/// Runs the server to completion. `Ok(true)` when everything stopped cleanly; `Ok(false)` when
/// pool threads were still busy in the app at exit (the caller must then not finalize Python).
pub fn run(py: Python<'_>, settings: Settings) -> Result<bool, StartupError> {
    logging::init(&settings.log).map_err(|err| StartupError::LogFile {
        path: settings.log.errorlog.clone(),
        err,
    })?;
    tracing::info!("Starting ferrocorn {}", env!("CARGO_PKG_VERSION"));

    let access = match &settings.log.accesslog {
        Some(spec) => Some(AccessLog::new(
            access::DEFAULT_FORMAT,
            Sink::open(spec, Sink::Stdout).map_err(|err| StartupError::LogFile {
                path: spec.clone(),
                err,
            })?,
        )),
        None => None,
    };

    wsgi::app::prepare_path(py, settings.app.chdir.as_deref(), &settings.app.pythonpath)?;
    let app = wsgi::app::load(py, &settings.app.spec)?;
    let statics = Statics::new(py, &settings.app.script_name, settings.pool.size > 1)
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

    let bound = py.detach(|| server::bind_all(&settings.server.binds, settings.server.backlog))?;
    let pid = std::process::id();
    for b in &bound {
        tracing::info!("Listening at: {} ({pid})", b.url());
    }
    tracing::info!("Using worker: threads");

    let pool = Pool::start(
        settings.pool.size,
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
    };
    let graceful_timeout = settings.server.graceful_timeout;
    let clean = py.detach(move || -> Result<bool, StartupError> {
        let shared = Arc::new(Shared {
            pool: pool.submitter(),
            runtime: runtime.handle().clone(),
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
    Ok(clean)
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
