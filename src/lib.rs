//! ferrocorn: a WSGI HTTP server. Python calls `_ferrocorn.run(sys.argv)`; everything else is
//! Rust: a Tokio runtime speaks HTTP with hyper, and a bounded pool of OS threads that stay
//! attached to Python runs the WSGI app.
//!
//! # Layout
//! - `config`: the settings table (`cli`) and hooks table, the sources stacked in precedence
//!   order (command line, `*_CMD_ARGS`, the Python config file, env-derived defaults),
//!   `--print-config` and the generated docs, bind syntax, and resolved settings.
//! - `lifecycle`: startup and shutdown order, signals.
//! - `dev`: `--dev` and `--reload` in a worker: the file watcher, the page served while the app
//!   cannot be imported, the banner.
//! - `server`: listeners, accept loops, connection tasks: TLS handshakes, HTTP/1 or HTTP/2
//!   per connection (no Python).
//! - `tls`: rustls server configuration from the SSL settings (certificates, keys, client
//!   certificates, ciphers, ALPN).
//! - `http`: the bridge between hyper and `wsgi` (and `static_files`): the request-stream
//!   guard, service, bodies, request errors.
//! - `wsgi`: PEP 3333 (environ, input, start_response, driving the iterable, file_wrapper).
//! - `static_files`: `--static` mounts, files served from Rust (paths, ranges, conditional
//!   requests, precompressed siblings); no Python, no hyper.
//! - `pool`: the Python thread pool, its GIL-aware queue, and the watchdog (`--timeout`,
//!   replacing stuck threads and threads waiting on slow clients).
//! - `logging`: gunicorn-style error and access logs, or Python's `logging` when configured.
//! - `metrics`: the counters the server keeps about itself (no Python): Prometheus text on
//!   `--metrics-bind` with liveness and readiness, a supervisor's sum of its workers, StatsD.
//! - `error`: startup failures and exit statuses.

pub mod config;
pub mod dev;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod server;
pub mod static_files;
pub mod tls;
pub mod wsgi;

use std::io::Write;

use pyo3::prelude::*;

use crate::config::ConfigError;
use crate::error::{exit, StartupError};

/// Runs the command line `argv` (as `sys.argv`) and returns the process exit status.
pub fn run_cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    let given = argv.clone();
    let argv = std::iter::once("ferrocorn".to_string())
        .chain(argv.into_iter().skip(1))
        .collect();
    let result = config::load(py, argv, &config::Env::from_process())
        .map_err(StartupError::from)
        .and_then(|settings| lifecycle::run(py, settings, &given));
    match result {
        Ok(lifecycle::Exit::Code(code)) => code,
        Ok(lifecycle::Exit::Busy) => {
            // Pool threads are still inside the app: finalizing Python under them is unsafe.
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            std::process::exit(exit::OK);
        }
        Err(err) => {
            report(&err);
            err.exit_code()
        }
    }
}

fn report(err: &StartupError) {
    match err {
        StartupError::Config(ConfigError::Cli(e)) if !e.use_stderr() => {
            // --help and --version; a reader that stops early (`| head`) is not an error.
            let _ = write!(std::io::stdout(), "{e}");
        }
        StartupError::Config(ConfigError::Cli(e)) => {
            // One line naming the flag and the value; clap's further lines are advice.
            eprintln!("ferrocorn: error: {}", config::render::clap_line(e));
        }
        StartupError::Config(ConfigError::NoApp) => {
            eprintln!("ferrocorn: error: {err} Usage: ferrocorn [OPTIONS] APP (try --help)");
        }
        StartupError::Config(ConfigError::FileFailed { .. }) | StartupError::Check(_) => {
            // Multi-line: the Python traceback follows, as gunicorn prints it.
            eprintln!("{err}");
        }
        StartupError::Config(_) => eprintln!("ferrocorn: error: {err}"),
        other => {
            if tracing::dispatcher::has_been_set() {
                tracing::error!("{other}");
                if matches!(other, StartupError::App(_)) {
                    tracing::error!("Reason: App failed to load.");
                }
            } else {
                eprintln!("ferrocorn: error: {other}");
            }
        }
    }
}

#[pymodule(gil_used = false)]
mod _ferrocorn {
    use super::*;

    #[allow(non_upper_case_globals)]
    #[pymodule_export]
    const __version__: &str = env!("CARGO_PKG_VERSION");

    /// Raised inside a request that runs past `--timeout`.
    #[pymodule_export]
    use crate::pool::RequestTimeout;

    /// Runs ferrocorn with `argv` (`sys.argv`) and returns the exit status.
    #[pyfunction]
    fn run(py: Python<'_>, argv: Vec<String>) -> i32 {
        run_cli(py, argv)
    }
}
