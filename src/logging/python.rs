//! Routing both logs through Python's `logging` when the user gave a logging configuration
//! (`--log-config`, `--log-config-json`, `logconfig_dict`), as gunicorn does: error lines go to
//! the `gunicorn.error` logger and access lines to `gunicorn.access`, so an existing gunicorn
//! logging config keeps working. This is the only part of `logging` that touches Python.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::config::PythonLogging;

/// gunicorn's `CONFIG_DEFAULTS`, which a `dictConfig` is merged over.
const DEFAULTS: &str = r#"{
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": True,
                           "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": True,
                            "qualname": "gunicorn.access"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic",
                    "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic",
                          "stream": "ext://sys.stderr"},
    },
    "formatters": {
        "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
                    "datefmt": "[%Y-%m-%d %H:%M:%S %z]", "class": "logging.Formatter"},
    },
}"#;

/// A Python logger lines are handed to.
#[derive(Debug, Clone)]
pub struct PyLogger(Arc<Py<PyAny>>);

impl PyLogger {
    pub fn get(py: Python<'_>, name: &str) -> PyResult<PyLogger> {
        let logger = py.import("logging")?.call_method1("getLogger", (name,))?;
        Ok(PyLogger(Arc::new(logger.unbind())))
    }

    /// Logs `msg` at Python level `level` (10 debug … 50 critical); errors in the user's
    /// handlers are Python's to report (`logging.raiseExceptions`).
    pub fn log(&self, level: u8, msg: &str) {
        Python::attach(|py| {
            let _ = self.0.bind(py).call_method1("log", (level, msg));
        });
    }
}

/// Applies the user's logging configuration.
pub fn configure(py: Python<'_>, how: &PythonLogging) -> PyResult<()> {
    let config = py.import("logging.config")?;
    let dict_config = |d: Bound<'_, PyAny>| -> PyResult<()> {
        let builtins = py.import("builtins")?;
        let merged = builtins.getattr("eval")?.call1((DEFAULTS,))?;
        let merged = merged.cast_into::<PyDict>()?;
        merged.call_method1("update", (d,))?;
        config.call_method1("dictConfig", (merged,))?;
        Ok(())
    };
    let json = py.import("json")?;
    match how {
        PythonLogging::File(path) => {
            let kwargs = PyDict::new(py);
            kwargs.set_item("disable_existing_loggers", false)?;
            config.call_method("fileConfig", (path,), Some(&kwargs))?;
            Ok(())
        }
        PythonLogging::JsonFile(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                pyo3::exceptions::PyOSError::new_err(format!("{}: {e}", path.display()))
            })?;
            dict_config(json.call_method1("loads", (text,))?)
        }
        PythonLogging::Dict(text) => dict_config(json.call_method1("loads", (text.as_str(),))?),
    }
}

/// SIGUSR1 with a Python logging configuration: every `logging.FileHandler` of the
/// `gunicorn.*` loggers and the root logger reopens its file, as gunicorn's `reopen_files` does.
pub fn reopen_files(py: Python<'_>) -> PyResult<()> {
    const REOPEN: &std::ffi::CStr = c"
import logging
for name in (None, 'gunicorn.error', 'gunicorn.access'):
    for handler in logging.getLogger(name).handlers:
        if isinstance(handler, logging.FileHandler) and handler.stream is not None:
            handler.acquire()
            try:
                handler.stream.close()
                handler.stream = handler._open()
            finally:
                handler.release()
";
    py.run(REOPEN, None, None)
}

/// A `tracing` layer that hands each event's message to a Python logger.
pub struct ToPython {
    pub logger: PyLogger,
    pub max: Level,
}

impl<S: Subscriber> Layer<S> for ToPython {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max {
            return;
        }
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let py_level = match level {
            Level::ERROR => 40,
            Level::WARN => 30,
            Level::INFO => 20,
            Level::DEBUG | Level::TRACE => 10,
        };
        self.logger.log(py_level, &msg.0);
    }
}

/// Collects an event's fields as the fmt layer would print them: the message, then `k=v`.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = match field.name() {
            "message" => write!(self.0, "{value:?}"),
            name => write!(self.0, "{name}={value:?}"),
        };
    }
}
