//! Why the server could not start or run, and the one place failures become exit statuses
//! (gunicorn's: 1 for errors, 2 for usage, 4 when the app fails to load).

use crate::config::ConfigError;
use crate::server::BindError;
use crate::wsgi::app::AppError;

/// Exit statuses, named.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const APP_LOAD_ERROR: i32 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    PidFile(#[from] crate::lifecycle::PidFileError),
    #[error("Cannot open log file {path}: {err}")]
    LogFile { path: String, err: std::io::Error },
    #[error("{context}: {err}")]
    Io {
        context: &'static str,
        err: std::io::Error,
    },
    #[error("Python error during startup: {0}")]
    Python(String),
    /// `--check-config` / `--print-config`: the app did not load.
    #[error("Error while loading the application:\n{0}")]
    Check(AppError),
}

impl StartupError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartupError::Config(ConfigError::Cli(e)) if !e.use_stderr() => exit::OK,
            StartupError::Config(
                ConfigError::Cli(_)
                | ConfigError::CmdArgs { .. }
                | ConfigError::NoApp
                | ConfigError::WorkerClass(_),
            ) => exit::USAGE,
            // gunicorn exits 1 for a config file it cannot read or a value it refuses there.
            StartupError::Config(
                ConfigError::FileMissing(_)
                | ConfigError::FileFailed { .. }
                | ConfigError::Invalid { .. },
            ) => exit::ERROR,
            StartupError::App(_) => exit::APP_LOAD_ERROR,
            StartupError::Bind(_)
            | StartupError::Tls(_)
            | StartupError::PidFile(_)
            | StartupError::LogFile { .. }
            | StartupError::Io { .. }
            | StartupError::Python(_)
            | StartupError::Check(_) => exit::ERROR,
        }
    }
}
