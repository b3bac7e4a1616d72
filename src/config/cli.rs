//! THE settings table: one clap field per setting, with its flag spelling, default, validator,
//! section (`help_heading`) and help text. The CLI, `--help`, and (later) the config file, the
//! environment and the generated docs are all read from this one struct; nothing else declares a
//! setting. Values here are raw: syntax-checked only. `config::Settings` resolves them.

use std::path::PathBuf;

use clap::Parser;

use super::bind::BindAddr;
use super::LogLevel;

/// ferrocorn: a WSGI HTTP server. Serves `APP` (`module:callable`) like gunicorn does.
#[derive(Debug, Parser)]
#[command(name = "ferrocorn", version, about, max_term_width = 100)]
pub struct Cli {
    /// The WSGI application: `module:callable`, `module` (callable `application`), or
    /// `module:factory(args)` with literal arguments.
    #[arg(value_name = "APP")]
    pub app: Option<String>,

    /// The socket to bind: `HOST`, `HOST:PORT`, `[::1]:PORT`, `unix:PATH` or `fd://N`.
    /// Repeat to bind several. Default is `127.0.0.1:8000` (`0.0.0.0:$PORT` if PORT is set).
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS", value_parser = BindAddr::parse,
          help_heading = "Server socket")]
    pub bind: Vec<BindAddr>,

    /// The maximum number of pending connections the kernel queues.
    #[arg(
        long,
        value_name = "INT",
        default_value_t = 2048,
        help_heading = "Server socket"
    )]
    pub backlog: u32,

    /// The number of workers. In ferrocorn the pool holds `workers × threads` OS threads
    /// that run Python, in one process. Default is 1 (or $WEB_CONCURRENCY).
    #[arg(short = 'w', long, value_name = "INT", value_parser = clap::value_parser!(u32).range(1..),
          help_heading = "Worker processes")]
    pub workers: Option<u32>,

    /// The number of threads per worker for handling requests.
    #[arg(long, value_name = "INT", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Worker processes")]
    pub threads: u32,

    /// Seconds to let in-flight requests finish after SIGTERM before stopping anyway.
    #[arg(
        long = "graceful-timeout",
        value_name = "INT",
        default_value_t = 30,
        help_heading = "Worker processes"
    )]
    pub graceful_timeout: u64,

    /// Seconds to wait for the next request on a keep-alive connection; 0 disables
    /// keep-alive. It also bounds how long a client may take to send a request head (30 s
    /// when keep-alive is off).
    #[arg(
        long = "keep-alive",
        value_name = "INT",
        default_value_t = 2,
        help_heading = "Worker processes"
    )]
    pub keepalive: u64,

    /// Change to this directory before loading the app.
    #[arg(long, value_name = "DIR", help_heading = "Server mechanics")]
    pub chdir: Option<PathBuf>,

    /// Comma-separated directories to add to the Python path, e.g. `/home/app,/home/lib`.
    #[arg(long, value_name = "STRING", help_heading = "Server mechanics")]
    pub pythonpath: Option<String>,

    /// The error log level: debug, info, warning, error or critical.
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info",
          value_parser = LogLevel::parse, help_heading = "Logging")]
    pub loglevel: LogLevel,

    /// The access log file; `-` is stdout. Default is no access log.
    #[arg(long = "access-logfile", value_name = "FILE", help_heading = "Logging")]
    pub accesslog: Option<String>,

    /// The error log file; `-` is stderr.
    #[arg(
        long = "error-logfile",
        alias = "log-file",
        value_name = "FILE",
        default_value = "-",
        help_heading = "Logging"
    )]
    pub errorlog: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn table_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn workers_must_be_a_positive_int() {
        let err = Cli::try_parse_from(["ferrocorn", "--workers", "two", "a:b"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(Cli::try_parse_from(["ferrocorn", "--workers", "0", "a:b"]).is_err());
        let ok = Cli::try_parse_from(["ferrocorn", "-w", "4", "a:b"]).unwrap();
        assert_eq!(ok.workers, Some(4));
    }

    #[test]
    fn bind_repeats() {
        let cli =
            Cli::try_parse_from(["f", "-b", "127.0.0.1:1", "--bind", "unix:/tmp/x", "a"]).unwrap();
        assert_eq!(cli.bind.len(), 2);
    }
}
