//! Settings: the raw table (`cli`), bind-address syntax (`bind`), and the resolved settings each
//! part of the server receives. `load` holds the whole precedence order in one function:
//! built-in defaults, then environment-derived defaults (`PORT`, `WEB_CONCURRENCY`), then the
//! command line. Nothing here opens sockets or touches Python.

pub mod bind;
pub mod cli;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use bind::BindAddr;
pub use cli::Cli;

/// The error log threshold, spelled as gunicorn spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    pub(crate) fn parse(s: &str) -> Result<LogLevel, String> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warning" | "warn" => Ok(LogLevel::Warning),
            "error" => Ok(LogLevel::Error),
            "critical" => Ok(LogLevel::Critical),
            _ => Err("expected debug, info, warning, error or critical".into()),
        }
    }
}

/// Everything the server needs, resolved and split by concern.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app: AppSettings,
    pub server: ServerSettings,
    pub pool: PoolSettings,
    pub log: LogSettings,
}

/// What to import and where to find it.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// `module:callable` as given.
    pub spec: String,
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    /// The mount point from the `SCRIPT_NAME` environment variable; empty at the root.
    pub script_name: String,
}

/// Sockets and connection handling.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub binds: Vec<BindAddr>,
    pub backlog: u32,
    /// How long an idle keep-alive connection is kept; `None` disables keep-alive.
    pub keepalive: Option<Duration>,
    pub graceful_timeout: Duration,
}

/// The Python thread pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// `workers × threads`.
    pub size: usize,
    pub workers: u32,
    pub threads: u32,
}

/// Where logs go.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: LogLevel,
    /// `None` = no access log; `Some("-")` = stdout.
    pub accesslog: Option<String>,
    /// `-` = stderr.
    pub errorlog: String,
}

/// Why no settings came out of `load`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flags, or `--help` / `--version` (clap renders those as "errors" to print).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("No application module specified.")]
    NoApp,
}

/// The environment variables that shape defaults, read once so tests can pass their own.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub port: Option<String>,
    pub web_concurrency: Option<String>,
    pub script_name: Option<String>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            port: std::env::var("PORT").ok(),
            web_concurrency: std::env::var("WEB_CONCURRENCY").ok(),
            script_name: std::env::var("SCRIPT_NAME").ok(),
        }
    }
}

/// Parses `argv` and resolves every setting. The precedence order lives here and only here.
pub fn load<I, T>(argv: I, env: &Env) -> Result<Settings, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(argv)?;
    let app = cli.app.ok_or(ConfigError::NoApp)?;

    let binds = if !cli.bind.is_empty() {
        cli.bind
    } else if let Some(port) = env
        .port
        .as_deref()
        .and_then(|p| p.trim().parse::<u16>().ok())
    {
        vec![BindAddr::Tcp {
            host: "0.0.0.0".into(),
            port,
        }]
    } else {
        vec![BindAddr::Tcp {
            host: "127.0.0.1".into(),
            port: bind::DEFAULT_PORT,
        }]
    };
    let workers = cli
        .workers
        .or_else(|| {
            env.web_concurrency
                .as_deref()?
                .trim()
                .parse()
                .ok()
                .filter(|w| *w > 0)
        })
        .unwrap_or(1);

    Ok(Settings {
        app: AppSettings {
            spec: app,
            chdir: cli.chdir,
            pythonpath: cli
                .pythonpath
                .iter()
                .flat_map(|p| p.split(','))
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            script_name: env
                .script_name
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .into(),
        },
        server: ServerSettings {
            binds,
            backlog: cli.backlog,
            keepalive: (cli.keepalive > 0).then(|| Duration::from_secs(cli.keepalive)),
            graceful_timeout: Duration::from_secs(cli.graceful_timeout),
        },
        pool: PoolSettings {
            size: (workers as usize).saturating_mul(cli.threads as usize),
            workers,
            threads: cli.threads,
        },
        log: LogSettings {
            level: cli.loglevel,
            accesslog: cli.accesslog,
            errorlog: cli.errorlog,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_env_then_cli() {
        let s = load(["f", "app:x"], &Env::default()).unwrap();
        assert_eq!(
            s.server.binds,
            vec![BindAddr::parse("127.0.0.1:8000").unwrap()]
        );
        assert_eq!(s.pool.size, 1);

        let env = Env {
            port: Some("5000".into()),
            web_concurrency: Some("3".into()),
            ..Env::default()
        };
        let s = load(["f", "--threads", "2", "app:x"], &env).unwrap();
        assert_eq!(
            s.server.binds,
            vec![BindAddr::parse("0.0.0.0:5000").unwrap()]
        );
        assert_eq!(s.pool.size, 6);

        let s = load(["f", "-w", "4", "-b", ":1", "app:x"], &env).unwrap();
        assert_eq!(s.server.binds, vec![BindAddr::parse("0.0.0.0:1").unwrap()]);
        assert_eq!(s.pool.size, 4);
    }

    #[test]
    fn script_name_and_pythonpath() {
        let env = Env {
            script_name: Some("/mount/".into()),
            ..Env::default()
        };
        let s = load(["f", "--pythonpath", "a, b,", "m"], &env).unwrap();
        assert_eq!(s.app.script_name, "/mount");
        assert_eq!(
            s.app.pythonpath,
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
    }

    #[test]
    fn keepalive_zero_disables() {
        let s = load(["f", "--keep-alive", "0", "m"], &Env::default()).unwrap();
        assert!(s.server.keepalive.is_none());
    }

    #[test]
    fn missing_app_is_an_error() {
        assert!(matches!(
            load(["f"], &Env::default()),
            Err(ConfigError::NoApp)
        ));
    }
}
