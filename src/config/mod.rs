//! Settings: the raw table (`cli`), the server hooks (`hooks`), bind-address syntax (`bind`), the
//! sources settings come from (`sources`, and `python` for the config file), renderings of the
//! table (`render`: `--print-config`, `docs/settings.md`), and the resolved settings each part of
//! the server receives. [`load`] holds the whole precedence order in one function. Nothing here
//! opens sockets; only `python` runs Python.

pub mod bind;
pub mod cli;
pub mod hooks;
pub mod python;
pub mod render;
pub mod sources;
pub mod static_mount;
pub mod tls;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use pyo3::Python;

pub use bind::BindAddr;
pub use cli::{Cli, Support};
pub use python::{traceback, HookFn};
use sources::Layer;
pub use static_mount::StaticMount;

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
        match s.trim().to_ascii_lowercase().as_str() {
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
    /// Server hooks from the config file.
    pub hooks: Vec<HookFn>,
    /// Every setting's value as `--print-config` shows it (`server.cfg` for hooks).
    pub values: Vec<(String, String)>,
    /// Processes, recycling, and how the process presents itself to the system.
    pub process: ProcessSettings,
    /// Serve, or only check the configuration and the app.
    pub mode: Mode,
    /// `--dev` and `--reload`.
    pub dev: DevSettings,
    /// Lines to log once at startup: settings that are set but not acted on.
    pub notes: Vec<String>,
    /// `--metrics-bind` and StatsD.
    pub metrics: MetricsSettings,
}

/// What the server tells about itself, and where (see `crate::metrics`).
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    /// `--metrics-bind`: Prometheus, liveness and readiness on their own listener.
    pub bind: Option<BindAddr>,
    /// `--statsd-host` and what goes with it; `None` without a host.
    pub statsd: Option<StatsdSettings>,
}

impl MetricsSettings {
    /// Whether the server keeps a metrics registry at all.
    pub fn enabled(&self) -> bool {
        self.bind.is_some() || self.statsd.is_some()
    }
}

/// gunicorn's StatsD settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdSettings {
    pub addr: StatsdAddr,
    /// `--statsd-prefix` as given (gunicorn's rule adds the dot when sending).
    pub prefix: String,
    /// `--dogstatsd-tags`, appended as `|#TAGS`; empty for plain StatsD.
    pub tags: String,
    /// `--enable-backlog-metric`.
    pub backlog: bool,
}

/// Where StatsD datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsdAddr {
    Udp {
        host: String,
        port: u16,
    },
    /// A Unix datagram socket.
    Unix(PathBuf),
}

impl StatsdAddr {
    /// The port when only a host is given, as in gunicorn.
    pub const DEFAULT_PORT: u16 = 8125;

    /// Reads an address as gunicorn's `validate_statsd_address` does.
    pub fn parse(s: &str) -> Result<StatsdAddr, String> {
        // gunicorn keeps reading `unix:PORT` as the host "unix" (a compatibility rule).
        if let Some(port) = s.strip_prefix("unix:").and_then(|p| p.parse::<u16>().ok()) {
            return Ok(StatsdAddr::Udp {
                host: "unix".into(),
                port,
            });
        }
        if let Some(path) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            return match path {
                "" => Err("empty unix socket path".into()),
                _ => Ok(StatsdAddr::Unix(PathBuf::from(path))),
            };
        }
        let rest = s.strip_prefix("tcp://").unwrap_or(s);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| "missing ']' after an IPv6 address".to_string())?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p.split(':').next().unwrap_or(p))),
                None => (rest, None),
            }
        };
        let port = match port {
            None | Some("") => Self::DEFAULT_PORT,
            Some(p) => p
                .parse()
                .map_err(|_| format!("'{p}' is not a valid port number"))?,
        };
        let host = match host {
            "" => "0.0.0.0".to_string(),
            h => h.to_ascii_lowercase(),
        };
        Ok(StatsdAddr::Udp { host, port })
    }
}

/// What the command asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Serve,
    /// `--check-config`: load the app, exit 0 or 1.
    Check,
    /// `--print-config`: print this, load the app, exit 0 or 1.
    Print(String),
}

/// What to import and where to find it.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// `module:callable` as given.
    pub spec: String,
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    /// `-e KEY=VALUE` pairs put in `os.environ` before the app is imported.
    pub raw_env: Vec<(String, String)>,
    /// The mount point from `SCRIPT_NAME` (the environment, or `-e`); empty at the root.
    pub script_name: String,
    /// No APP was given and the directory has Django's `manage.py`: the settings module it
    /// names. The app is then the project's `WSGI_APPLICATION`, read once settings load.
    pub django_settings: Option<String>,
}

/// Local development: the `--dev` preset and `--reload`.
#[derive(Debug, Clone, Default)]
pub struct DevSettings {
    /// `--dev`: the startup banner and Django's static files (the other parts of the preset
    /// are resolved into the settings they change).
    pub preset: bool,
    /// `None` without `--reload` (or `--dev`).
    pub reload: Option<ReloadSettings>,
}

/// How `--reload` watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    pub engine: ReloadEngine,
    /// `--reload-extra-file`: paths and globs, as given (relative to the working directory).
    pub extra_files: Vec<String>,
}

/// `--reload-engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadEngine {
    /// The OS's file-watch API, falling back to polling when it cannot watch.
    Auto,
    Poll,
    Inotify,
}

/// Sockets and connection handling.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub binds: Vec<BindAddr>,
    pub backlog: u32,
    /// `SO_REUSEPORT` on TCP listeners.
    pub reuse_port: bool,
    /// The umask Unix socket files are created under.
    pub umask: u32,
    /// Where the server's pid is written while it runs.
    pub pidfile: Option<PathBuf>,
    /// How long an idle keep-alive connection is kept; `None` disables keep-alive.
    pub keepalive: Option<Duration>,
    pub graceful_timeout: Duration,
    pub limits: RequestLimits,
    pub proxy: ProxySettings,
    /// The most client connections open at once; more wait in the listen backlog.
    pub worker_connections: usize,
    /// `--limit-request-body`; `None` when 0.
    pub limit_request_body: Option<u64>,
    /// `None` when `--proxy-protocol off`.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `--static` mounts, their directories canonical; empty when none.
    pub static_mounts: Vec<StaticMount>,
    /// `--certfile`: every listener speaks TLS.
    pub tls: Option<tls::TlsSettings>,
    /// `h2` in `--http-protocols`.
    pub http2: Option<tls::Http2Settings>,
}

/// gunicorn's request limits, resolved (0 and out-of-range values mapped as gunicorn maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub request_line: usize,
    pub fields: usize,
    pub field_size: usize,
}

/// What a request may say about itself through headers, and who may say it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Peers trusted with `secure_scheme_headers` and `forwarder_headers`; Unix-socket peers are
    /// always trusted, as in gunicorn.
    pub forwarded_allow: AllowList,
    /// Header (upper case, as sent) → the value that means HTTPS.
    pub secure_scheme_headers: Vec<(String, String)>,
    /// Underscore header names a trusted peer may send (upper case; `*` for any).
    pub forwarder_headers: Vec<String>,
    pub header_map: HeaderMapMode,
}

/// `--proxy-protocol` and who may use it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyProtocol {
    pub mode: ProxyProtocolMode,
    /// `--proxy-allow-from`; Unix-socket peers are always allowed, as in gunicorn.
    pub allow: AllowList,
}

/// Which PROXY protocol versions are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolMode {
    V1,
    V2,
    /// Either version.
    Auto,
}

/// `--header-map`: what to do with a header whose name contains `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMapMode {
    /// Leave it out of the environ (the default).
    Drop,
    /// Answer 400.
    Refuse,
    /// Map it like any header, so `X_A` and `X-A` both become `HTTP_X_A`.
    Dangerous,
}

/// Peers trusted by address: IPs, CIDR networks, or everyone (`*`).
#[derive(Debug, Clone, PartialEq)]
pub enum AllowList {
    Any,
    Nets(Vec<(IpAddr, u8)>),
}

impl AllowList {
    /// Parses a list already checked by the table's validator; unparsable items are skipped.
    pub fn parse(list: &str) -> AllowList {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                return AllowList::Any;
            }
            let (ip, prefix) = item.split_once('/').unwrap_or((item, ""));
            let Ok(ip) = ip.parse::<IpAddr>() else {
                continue;
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = prefix.parse().unwrap_or(max).min(max);
            nets.push((ip, prefix));
        }
        AllowList::Nets(nets)
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        // An IPv4 client of a dual-stack listener shows up as `::ffff:a.b.c.d`.
        let ip = ip.to_canonical();
        match self {
            AllowList::Any => true,
            AllowList::Nets(nets) => nets.iter().any(|&(net, prefix)| match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(i)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    u32::from(n) & mask == u32::from(i) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(i)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    u128::from(n) & mask == u128::from(i) & mask
                }
                _ => false,
            }),
        }
    }
}

/// The Python thread pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// `workers × threads`.
    pub size: usize,
    pub workers: u32,
    pub threads: u32,
    /// `--queue-size`: `None` when only `--worker-connections` bounds the queue.
    pub queue_limit: Option<usize>,
    /// `--timeout`: `None` when 0.
    pub timeout: Option<Duration>,
}

/// Processes and their integration with the system.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// `--processes`: worker processes under a supervisor (1: serve in this process).
    pub processes: u32,
    /// `--max-requests` (`None` when 0) and `--max-requests-jitter`.
    pub max_requests: Option<u64>,
    pub max_requests_jitter: u64,
    /// `--preload`: import the app in the supervisor first, to fail fast.
    pub preload: bool,
    /// `-D`: detach into the background.
    pub daemon: bool,
    /// `-u`, `-g`, `--initgroups`: whom to run as once the sockets are bound.
    pub user: Option<String>,
    pub group: Option<String>,
    pub initgroups: bool,
    /// `-n`: the process title.
    pub proc_name: Option<String>,
    /// `--sched-batch`: threads run as `SCHED_BATCH`.
    pub sched_batch: bool,
}

/// Where logs go.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: LogLevel,
    /// `None` = no access log; `Some("-")` = stdout.
    pub accesslog: Option<String>,
    pub access_log_format: String,
    /// `-` = stderr.
    pub errorlog: String,
    /// Point the process's stdout and stderr at the error log.
    pub capture_output: bool,
    /// Route both logs through Python's `logging`, configured this way.
    pub python: Option<PythonLogging>,
    /// `--dev` without an access log of the user's own: compact access lines on stderr.
    pub compact_access: bool,
    /// `--access-log-json` (or `--access-logformat json`): one JSON object per line.
    pub access_log_json: bool,
}

/// A Python `logging` configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum PythonLogging {
    /// `--log-config`: `logging.config.fileConfig`.
    File(PathBuf),
    /// `--log-config-json`: a JSON file for `dictConfig`.
    JsonFile(PathBuf),
    /// `logconfig_dict`, as JSON text.
    Dict(String),
}

/// Why no settings came out of `load`. Exit statuses are assigned in `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flags, or `--help` / `--version` (clap renders those as "errors" to print).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// Bad flags in `GUNICORN_CMD_ARGS` or `FERROCORN_CMD_ARGS`.
    #[error("in {var}: {message}")]
    CmdArgs { var: &'static str, message: String },
    #[error("No application module specified.")]
    NoApp,
    #[error("config file '{0}' doesn't exist")]
    FileMissing(String),
    #[error("Failed to read config file: {path}\n{traceback}")]
    FileFailed { path: String, traceback: String },
    #[error("Invalid value for {name}: {value} ({reason})")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error(
        "worker class '{0}' is not supported: ferrocorn runs WSGI apps on its own pool of \
         threads (use -k sync or -k gthread, and --threads N for concurrency)"
    )]
    WorkerClass(String),
}

/// The environment variables that shape settings, read once so tests can pass their own.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub port: Option<String>,
    pub web_concurrency: Option<String>,
    pub forwarded_allow_ips: Option<String>,
    pub gunicorn_cmd_args: Option<String>,
    pub ferrocorn_cmd_args: Option<String>,
    pub script_name: Option<String>,
    /// The directory the default config files are looked for in.
    pub cwd: PathBuf,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k| std::env::var(k).ok();
        Env {
            port: var("PORT"),
            web_concurrency: var("WEB_CONCURRENCY"),
            forwarded_allow_ips: var("FORWARDED_ALLOW_IPS"),
            gunicorn_cmd_args: var("GUNICORN_CMD_ARGS"),
            ferrocorn_cmd_args: var("FERROCORN_CMD_ARGS"),
            script_name: var("SCRIPT_NAME"),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }
}

/// Reads every source and resolves every setting. The precedence order, lowest first, lives
/// here and only here: built-in defaults (the table) → environment-derived defaults → the
/// config file → `GUNICORN_CMD_ARGS` → `FERROCORN_CMD_ARGS` → the command line.
pub fn load(py: Python<'_>, argv: Vec<String>, env: &Env) -> Result<Settings, ConfigError> {
    let cmd = Cli::command();
    let command_line = Layer::from_args(&cmd, &argv)?;
    let gunicorn_args = cmd_args(&cmd, "GUNICORN_CMD_ARGS", env.gunicorn_cmd_args.as_deref())?;
    let ferrocorn_args = cmd_args(
        &cmd,
        "FERROCORN_CMD_ARGS",
        env.ferrocorn_cmd_args.as_deref(),
    )?;
    let env_defaults = env_defaults(&cmd, env);

    let location = Layer::stack([&gunicorn_args, &ferrocorn_args, &command_line])
        .get("config")
        .and_then(|v| v.last().cloned())
        .or_else(|| default_config_file(&env.cwd));
    let mut file = match &location {
        Some(location) => python::read(py, location, &cmd)?,
        None => python::ConfigFile::default(),
    };
    if let Some(location) = location {
        // So `--print-config` names the file that was read, found by default or not.
        file.layer.set("config", vec![location]);
    }

    let merged = Layer::stack([
        &env_defaults,
        &file.layer,
        &gunicorn_args,
        &ferrocorn_args,
        &command_line,
    ]);
    let matches = cmd.clone().try_get_matches_from(merged.to_args(&cmd))?;
    let cli = Cli::from_arg_matches(&matches)?;
    let print = cli
        .print_config
        .then(|| render::print_config(&cmd, &merged, &file.hooks));
    let values = render::values(&cmd, &merged);
    let explicit: BTreeSet<&str> = merged.0.keys().map(String::as_str).collect();
    let mut settings = resolve(cli, &explicit, file.hooks, env, print)?;
    settings.values = values;
    Ok(settings)
}

/// One `*_CMD_ARGS` variable as a layer.
fn cmd_args(
    cmd: &clap::Command,
    var: &'static str,
    value: Option<&str>,
) -> Result<Layer, ConfigError> {
    let Some(value) = value else {
        return Ok(Layer::default());
    };
    let words = sources::shell_split(var, value)
        .map_err(|message| ConfigError::CmdArgs { var, message })?;
    Layer::from_args(
        cmd,
        std::iter::once(cmd.get_name().to_string()).chain(words),
    )
    .map_err(|err| ConfigError::CmdArgs {
        var,
        message: render::clap_line(&err),
    })
}

/// `PORT` → bind `0.0.0.0:$PORT`, `WEB_CONCURRENCY` → workers, `FORWARDED_ALLOW_IPS`, as
/// gunicorn derives them; a value the setting's validator refuses is ignored, as a default.
fn env_defaults(cmd: &clap::Command, env: &Env) -> Layer {
    let mut layer = Layer::default();
    let mut put = |id: &str, value: Option<String>| {
        let Some(value) = value else { return };
        if let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id) {
            if sources::check_value(cmd, arg, &value).is_ok() {
                layer.set(id, vec![value]);
            }
        }
    };
    put(
        "bind",
        env.port
            .as_deref()
            .and_then(|p| p.trim().parse::<u16>().ok())
            .map(|p| format!("0.0.0.0:{p}")),
    );
    put("workers", env.web_concurrency.clone());
    put("forwarded_allow_ips", env.forwarded_allow_ips.clone());
    layer
}

fn default_config_file(cwd: &Path) -> Option<String> {
    ["ferrocorn.conf.py", "gunicorn.conf.py"]
        .iter()
        .map(|name| cwd.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Raw settings → what each part of the server receives. Every field of the table is consumed
/// here (the destructuring has no `..`), so a new setting cannot be forgotten.
fn resolve(
    cli: Cli,
    explicit: &BTreeSet<&str>,
    hooks: Vec<HookFn>,
    env: &Env,
    print: Option<String>,
) -> Result<Settings, ConfigError> {
    let Cli {
        wsgi_app,
        config: _,
        bind,
        backlog,
        workers,
        processes,
        worker_class,
        threads,
        worker_connections,
        max_requests,
        max_requests_jitter,
        timeout,
        queue_size,
        graceful_timeout,
        keepalive,
        limit_request_line,
        limit_request_fields,
        limit_request_field_size,
        limit_request_body,
        dev,
        reload,
        reload_engine,
        reload_extra_files,
        spew: _,
        check_config,
        print_config: _,
        preload_app,
        sendfile: _,
        sched_batch,
        reuse_port,
        chdir,
        static_files,
        daemon,
        raw_env,
        pidfile,
        worker_tmp_dir: _,
        user,
        group,
        umask,
        initgroups,
        tmp_upload_dir: _,
        secure_scheme_headers,
        forwarded_allow_ips,
        forwarder_headers,
        header_map,
        pythonpath,
        proxy_protocol,
        proxy_allow_ips,
        strip_header_spaces: _,
        permit_unconventional_http_method: _,
        permit_unconventional_http_version: _,
        casefold_http_method: _,
        permit_obsolete_folding: _,
        accesslog,
        disable_redirect_access_to_syslog: _,
        access_log_format,
        errorlog,
        loglevel,
        capture_output,
        logger_class: _,
        logconfig,
        logconfig_dict,
        logconfig_json,
        syslog_addr: _,
        syslog: _,
        syslog_prefix: _,
        syslog_facility: _,
        enable_stdio_inheritance: _,
        statsd_host,
        dogstatsd_tags,
        statsd_prefix,
        enable_backlog_metric,
        metrics_bind,
        access_log_json,
        proc_name,
        keyfile,
        certfile,
        ssl_version: _,
        tls_min_version,
        cert_reqs,
        ca_certs,
        suppress_ragged_eofs: _,
        do_handshake_on_connect: _,
        ciphers,
        http_protocols,
        http2_cleartext,
        http2_max_concurrent_streams,
        http2_initial_window_size,
        http2_max_frame_size,
        http2_max_header_list_size,
    } = cli;

    check_worker_class(&worker_class)?;
    let protocols: Vec<tls::Protocol> = http_protocols
        .split(',')
        .map(str::trim)
        .filter_map(|p| match p {
            "h1" => Some(tls::Protocol::H1),
            "h2" => Some(tls::Protocol::H2),
            _ => None,
        })
        .collect();
    let client_certs_asked = ca_certs.is_some() || cert_reqs != 0;
    let tls = resolve_tls(
        certfile,
        keyfile,
        ca_certs,
        cert_reqs,
        ciphers.as_deref(),
        &tls_min_version,
        &protocols,
    )?;
    let http2 = protocols
        .contains(&tls::Protocol::H2)
        .then_some(tls::Http2Settings {
            cleartext: http2_cleartext == "prior-knowledge" && tls.is_none(),
            max_concurrent_streams: http2_max_concurrent_streams,
            initial_window_size: http2_initial_window_size,
            max_frame_size: http2_max_frame_size,
            max_header_list_size: match http2_max_header_list_size {
                0 => u32::MAX,
                n => n,
            },
        });
    let mut protocol_notes = Vec::new();
    if let Some(list) = tls.as_ref().and_then(|t| t.ciphers.as_ref()) {
        if !list.1.is_empty() {
            protocol_notes.push(format!(
                "ciphers: rustls does not implement {}; left out, as OpenSSL leaves out what it \
                 cannot use",
                list.1.join(", ")
            ));
        }
    }
    if tls.is_none() && client_certs_asked {
        protocol_notes.push("ca_certs and cert_reqs have no effect without --certfile".to_string());
    }
    let cleartext = http2_cleartext == "prior-knowledge";
    match (&http2, tls.is_some(), cleartext) {
        (None, _, true) => protocol_notes
            .push("http2_cleartext needs h2 in --http-protocols; it has no effect".to_string()),
        (Some(_), false, false) => protocol_notes.push(
            "HTTP/2 needs TLS (--certfile) or --http2-cleartext; serving HTTP/1.x only".to_string(),
        ),
        (Some(_), true, true) => protocol_notes.push(
            "http2_cleartext has no effect with TLS: HTTP/2 is negotiated by ALPN".to_string(),
        ),
        _ => {}
    }
    let mode = match (print, check_config) {
        (Some(text), _) => Mode::Print(text),
        (None, true) => Mode::Check,
        (None, false) => Mode::Serve,
    };
    let (spec, django_settings) = match wsgi_app {
        Some(spec) => (spec, None),
        None => {
            let dir = chdir
                .as_deref()
                .map_or(env.cwd.clone(), |d| env.cwd.join(d));
            let settings = django_settings_module(&dir).ok_or(ConfigError::NoApp)?;
            (format!("WSGI_APPLICATION of {settings}"), Some(settings))
        }
    };
    let given = |id: &str| explicit.contains(id);
    let reload = (reload || dev).then_some(ReloadSettings {
        engine: match reload_engine.as_str() {
            "poll" => ReloadEngine::Poll,
            "inotify" => ReloadEngine::Inotify,
            _ => ReloadEngine::Auto,
        },
        extra_files: reload_extra_files,
    });
    let loglevel = if dev && !given("loglevel") {
        LogLevel::Debug
    } else {
        loglevel
    };
    let compact_access =
        dev && !given("accesslog") && !given("access_log_format") && !given("access_log_json");
    // A browser fetches a page's assets in parallel, and runserver is threaded.
    let threads = if dev && !given("threads") { 4 } else { threads };

    let raw_env: Vec<(String, String)> = raw_env
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect();
    // gunicorn reads SCRIPT_NAME from the process environment, which `-e` may have set.
    let script_name = raw_env
        .iter()
        .rev()
        .find(|(k, _)| k == "SCRIPT_NAME")
        .map(|(_, v)| v.clone())
        .or_else(|| env.script_name.clone())
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();

    let static_mounts = static_files
        .iter()
        .map(|m| m.resolve(&env.cwd, chdir.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;

    let python = match (logconfig, logconfig_json, logconfig_dict) {
        (Some(file), _, _) => Some(PythonLogging::File(file)),
        (None, Some(json), _) => Some(PythonLogging::JsonFile(json)),
        (None, None, Some(dict)) => Some(PythonLogging::Dict(dict)),
        (None, None, None) => None,
    };

    Ok(Settings {
        app: AppSettings {
            spec,
            chdir,
            pythonpath: pythonpath
                .iter()
                .flat_map(|p| p.split(','))
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            raw_env,
            script_name,
            django_settings,
        },
        server: ServerSettings {
            binds: bind,
            backlog,
            reuse_port,
            umask,
            pidfile,
            keepalive: (keepalive > 0).then(|| Duration::from_secs(keepalive)),
            graceful_timeout: Duration::from_secs(graceful_timeout),
            limits: RequestLimits::gunicorn(
                limit_request_line,
                limit_request_fields,
                limit_request_field_size,
            ),
            worker_connections: worker_connections as usize,
            limit_request_body: (limit_request_body > 0).then_some(limit_request_body),
            proxy_protocol: match proxy_protocol.as_str() {
                "v1" => Some(ProxyProtocolMode::V1),
                "v2" => Some(ProxyProtocolMode::V2),
                "auto" => Some(ProxyProtocolMode::Auto),
                _ => None,
            }
            .map(|mode| ProxyProtocol {
                mode,
                allow: AllowList::parse(&proxy_allow_ips),
            }),
            static_mounts,
            tls,
            http2,
            proxy: ProxySettings {
                forwarded_allow: AllowList::parse(&forwarded_allow_ips),
                secure_scheme_headers: secure_scheme_headers.0,
                forwarder_headers: forwarder_headers
                    .split(',')
                    .map(|h| h.trim().to_ascii_uppercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
                header_map: match header_map.as_str() {
                    "refuse" => HeaderMapMode::Refuse,
                    "dangerous" => HeaderMapMode::Dangerous,
                    _ => HeaderMapMode::Drop,
                },
            },
        },
        pool: PoolSettings {
            size: (workers as usize).saturating_mul(threads as usize),
            workers,
            threads,
            queue_limit: (queue_size > 0).then_some(queue_size),
            timeout: (timeout > 0).then(|| Duration::from_secs(timeout)),
        },
        process: ProcessSettings {
            processes,
            max_requests: (max_requests > 0).then_some(max_requests),
            max_requests_jitter,
            preload: preload_app,
            daemon,
            user,
            group,
            initgroups,
            proc_name,
            sched_batch,
        },
        log: LogSettings {
            level: loglevel,
            accesslog,
            access_log_json: access_log_json || access_log_format == "json",
            access_log_format,
            errorlog,
            capture_output,
            python,
            compact_access,
        },
        notes: notes(explicit).into_iter().chain(protocol_notes).collect(),
        hooks,
        values: Vec::new(),
        mode,
        dev: DevSettings {
            preset: dev,
            reload,
        },
        metrics: MetricsSettings {
            bind: metrics_bind,
            // The table's validator already read the address.
            statsd: statsd_host
                .and_then(|host| StatsdAddr::parse(&host).ok())
                .map(|addr| StatsdSettings {
                    addr,
                    prefix: statsd_prefix,
                    tags: dogstatsd_tags,
                    backlog: enable_backlog_metric,
                }),
        },
    })
}

/// The SSL section, resolved: `None` without `--certfile`.
fn resolve_tls(
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    ca_certs: Option<PathBuf>,
    cert_reqs: u8,
    ciphers: Option<&str>,
    min_version: &str,
    protocols: &[tls::Protocol],
) -> Result<Option<tls::TlsSettings>, ConfigError> {
    let invalid = |name: &str, value: &str, reason: &str| ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    };
    let Some(certfile) = certfile else {
        return match keyfile {
            Some(key) => Err(invalid(
                "keyfile",
                &key.display().to_string(),
                "it needs --certfile",
            )),
            None => Ok(None),
        };
    };
    let client_auth = tls::ClientAuth::from_cert_reqs(cert_reqs);
    if client_auth != tls::ClientAuth::None && ca_certs.is_none() {
        return Err(invalid(
            "cert_reqs",
            &cert_reqs.to_string(),
            "client certificates need --ca-certs to be verified against",
        ));
    }
    let ciphers = ciphers
        .map(|c| tls::parse_ciphers(c).map_err(|reason| invalid("ciphers", c, &reason)))
        .transpose()?;
    Ok(Some(tls::TlsSettings {
        keyfile: keyfile.unwrap_or_else(|| certfile.clone()),
        certfile,
        ca_certs,
        client_auth,
        ciphers,
        min_version: match min_version {
            "1.3" => tls::TlsVersion::V1_3,
            _ => tls::TlsVersion::V1_2,
        },
        alpn: protocols.to_vec(),
    }))
}

/// The settings module a Django project's `manage.py` names
/// (`os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")`), when `dir` has one.
/// A `DJANGO_SETTINGS_MODULE` already in the environment wins later, as it does for manage.py.
fn django_settings_module(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("manage.py")).ok()?;
    // Code only: a commented-out line often names an older project.
    let text: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    text.match_indices("DJANGO_SETTINGS_MODULE")
        .find_map(|(at, key)| {
            // Past the key's closing quote, the separator (`, ` or `] = `), then a quoted value.
            let rest = text[at + key.len()..]
                .strip_prefix(['\'', '"'])?
                .trim_start_matches(|c: char| {
                    c == ']' || c == ',' || c == '=' || c.is_whitespace()
                });
            let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
            let value = rest[1..].split(quote).next()?;
            let valid = !value.is_empty()
                && value.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_')
                });
            valid.then(|| value.to_string())
        })
}

/// `sync` and `gthread` (under any of gunicorn's spellings) are what ferrocorn does.
fn check_worker_class(class: &str) -> Result<(), ConfigError> {
    let short = class
        .trim()
        .trim_start_matches("egg:gunicorn#")
        .to_ascii_lowercase();
    match short.as_str() {
        "sync"
        | "gthread"
        | "gunicorn.workers.sync.syncworker"
        | "gunicorn.workers.gthread.threadworker" => Ok(()),
        _ => Err(ConfigError::WorkerClass(class.to_string())),
    }
}

/// One startup line per setting that is set but not acted on.
fn notes(explicit: &BTreeSet<&str>) -> Vec<String> {
    let mut notes = Vec::new();
    for id in explicit {
        match cli::support(id) {
            Support::Supported => {}
            Support::NotYet => {
                notes.push(format!("setting {id} is accepted but not yet supported"))
            }
            Support::NoEffect(why) => {
                notes.push(format!("setting {id} has no effect in ferrocorn: {why}"))
            }
        }
    }
    notes
}

impl RequestLimits {
    /// gunicorn's mapping: a request line of 0 or past 8190 means 8190; 0 fields or past 32768
    /// means 32768; a field size of 0 means no limit (here: the 1 MiB head buffer).
    pub fn gunicorn(line: usize, fields: usize, field_size: usize) -> RequestLimits {
        const MAX_LINE: usize = 8190;
        const MAX_FIELDS: usize = 32768;
        const UNLIMITED_FIELD: usize = 1 << 20;
        RequestLimits {
            request_line: if line == 0 || line > MAX_LINE {
                MAX_LINE
            } else {
                line
            },
            fields: if fields == 0 || fields > MAX_FIELDS {
                MAX_FIELDS
            } else {
                fields
            },
            field_size: if field_size == 0 {
                UNLIMITED_FIELD
            } else {
                field_size
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(argv: &[&str], env: &Env) -> Result<Settings, ConfigError> {
        let argv = std::iter::once("ferrocorn")
            .chain(argv.iter().copied())
            .map(String::from)
            .collect();
        Python::attach(|py| load(py, argv, env))
    }

    fn env() -> Env {
        Env {
            cwd: PathBuf::from("/nonexistent"),
            ..Env::default()
        }
    }

    #[test]
    fn manage_py_names_the_settings_module() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-manage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let check = |text: &str| {
            std::fs::write(dir.join("manage.py"), text).unwrap();
            django_settings_module(&dir)
        };
        assert_eq!(
            check("os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"mysite.settings\")"),
            Some("mysite.settings".into())
        );
        assert_eq!(
            check("# os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'old.settings')\nos.environ['DJANGO_SETTINGS_MODULE'] = 'a.b_c.dev'"),
            Some("a.b_c.dev".into())
        );
        assert_eq!(
            check("os.environ.setdefault('DJANGO_SETTINGS_MODULE', x)"),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(django_settings_module(&dir), None);
    }

    #[test]
    fn defaults_then_env_then_cmd_args_then_cli() {
        let s = load_with(&["app:x"], &env()).unwrap();
        assert_eq!(
            s.server.binds,
            vec![BindAddr::parse("127.0.0.1:8000").unwrap()]
        );
        assert_eq!(s.pool.size, 1);
        assert_eq!(s.mode, Mode::Serve);
        assert!(s.notes.is_empty(), "{:?}", s.notes);

        let env = Env {
            port: Some("5000".into()),
            web_concurrency: Some("3".into()),
            ..env()
        };
        let s = load_with(&["--threads", "2", "app:x"], &env).unwrap();
        assert_eq!(
            s.server.binds,
            vec![BindAddr::parse("0.0.0.0:5000").unwrap()]
        );
        assert_eq!(s.pool.size, 6);

        let env = Env {
            gunicorn_cmd_args: Some("-w 5 --threads 2 -b :7".into()),
            ferrocorn_cmd_args: Some("--threads 3".into()),
            ..env
        };
        let s = load_with(&["app:x"], &env).unwrap();
        assert_eq!((s.pool.workers, s.pool.threads), (5, 3));
        assert_eq!(s.server.binds, vec![BindAddr::parse(":7").unwrap()]);

        let s = load_with(&["-w", "4", "-b", ":1", "app:x"], &env).unwrap();
        assert_eq!(s.server.binds, vec![BindAddr::parse("0.0.0.0:1").unwrap()]);
        assert_eq!(s.pool.size, 12);
    }

    #[test]
    fn bad_web_concurrency_is_ignored() {
        let env = Env {
            web_concurrency: Some("lots".into()),
            ..env()
        };
        assert_eq!(load_with(&["m"], &env).unwrap().pool.workers, 1);
    }

    #[test]
    fn bad_cmd_args_name_the_variable() {
        let env = Env {
            gunicorn_cmd_args: Some("--workers=x".into()),
            ..env()
        };
        let err = load_with(&["m"], &env).unwrap_err();
        assert!(
            err.to_string().starts_with("in GUNICORN_CMD_ARGS: "),
            "{err}"
        );
        assert!(err.to_string().contains("--workers"), "{err}");
    }

    #[test]
    fn script_name_raw_env_and_pythonpath() {
        let env = Env {
            script_name: Some("/mount/".into()),
            ..env()
        };
        let s = load_with(&["--pythonpath", "a, b,", "-e", "K=v=w", "m"], &env).unwrap();
        assert_eq!(s.app.script_name, "/mount");
        assert_eq!(
            s.app.pythonpath,
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        assert_eq!(s.app.raw_env, [("K".to_string(), "v=w".to_string())]);
        let s = load_with(&["-e", "SCRIPT_NAME=/other", "m"], &env).unwrap();
        assert_eq!(s.app.script_name, "/other");
    }

    #[test]
    fn keepalive_zero_disables() {
        let s = load_with(&["--keep-alive", "0", "m"], &env()).unwrap();
        assert!(s.server.keepalive.is_none());
    }

    #[test]
    fn missing_app_is_an_error() {
        assert!(matches!(load_with(&[], &env()), Err(ConfigError::NoApp)));
    }

    #[test]
    fn worker_classes() {
        for ok in [
            "sync",
            "gthread",
            "egg:gunicorn#gthread",
            "gunicorn.workers.sync.SyncWorker",
        ] {
            assert!(load_with(&["-k", ok, "m"], &env()).is_ok(), "{ok}");
        }
        for bad in ["gevent", "eventlet", "tornado", "myapp.Worker"] {
            assert!(matches!(
                load_with(&["-k", bad, "m"], &env()),
                Err(ConfigError::WorkerClass(_))
            ));
        }
    }

    #[test]
    fn unsupported_settings_are_noted_when_set() {
        let s = load_with(&["--spew", "--worker-tmp-dir", "/dev/shm", "m"], &env()).unwrap();
        assert_eq!(
            s.notes,
            [
                "setting spew is accepted but not yet supported",
                "setting worker_tmp_dir has no effect in ferrocorn: ferrocorn has no worker \
                 heartbeat files",
            ]
        );
    }

    #[test]
    fn limits_map_like_gunicorn() {
        assert_eq!(
            RequestLimits::gunicorn(0, 0, 0),
            RequestLimits {
                request_line: 8190,
                fields: 32768,
                field_size: 1 << 20
            }
        );
        assert_eq!(
            RequestLimits::gunicorn(100, 10, 200),
            RequestLimits {
                request_line: 100,
                fields: 10,
                field_size: 200
            }
        );
        assert_eq!(RequestLimits::gunicorn(9000, 40000, 1).request_line, 8190);
    }

    #[test]
    fn allow_lists() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let list = AllowList::parse("127.0.0.1, 10.0.0.0/8,::1,2001:db8::/32");
        assert!(list.allows(ip("127.0.0.1")));
        assert!(list.allows(ip("::ffff:127.0.0.1")));
        assert!(list.allows(ip("10.200.3.4")));
        assert!(!list.allows(ip("11.0.0.1")));
        assert!(list.allows(ip("::1")));
        assert!(list.allows(ip("2001:db8:1::5")));
        assert!(!list.allows(ip("2001:db9::1")));
        assert!(AllowList::parse("*").allows(ip("8.8.8.8")));
        assert!(AllowList::parse("0.0.0.0/0").allows(ip("8.8.8.8")));
        assert!(!AllowList::parse("").allows(ip("127.0.0.1")));
    }

    #[test]
    fn proxy_settings() {
        let s = load_with(
            &[
                "--forwarder-headers",
                "script_name, X_REAL",
                "--header-map",
                "refuse",
                "m",
            ],
            &env(),
        )
        .unwrap();
        assert_eq!(s.server.proxy.forwarder_headers, ["SCRIPT_NAME", "X_REAL"]);
        assert_eq!(s.server.proxy.header_map, HeaderMapMode::Refuse);
        assert_eq!(s.server.proxy.secure_scheme_headers.len(), 3);
    }

    #[test]
    fn modes() {
        assert_eq!(
            load_with(&["--check-config", "m"], &env()).unwrap().mode,
            Mode::Check
        );
        assert!(matches!(
            load_with(&["--print-config", "m"], &env()).unwrap().mode,
            Mode::Print(_)
        ));
    }

    #[test]
    fn static_mounts_resolve_against_chdir_and_must_exist() {
        let tmp = std::env::temp_dir().join(format!("ferrocorn-static-cfg-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("site/public")).unwrap();
        let env = Env {
            cwd: tmp.clone(),
            ..env()
        };
        let s = load_with(&["--chdir", "site", "--static", "/s/=public", "m"], &env).unwrap();
        assert_eq!(s.server.static_mounts.len(), 1);
        assert_eq!(s.server.static_mounts[0].prefix, "/s");
        assert_eq!(
            s.server.static_mounts[0].dir,
            tmp.join("site/public").canonicalize().unwrap()
        );
        let err = load_with(&["--static", "/s=missing", "m"], &env).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
        assert!(load_with(&["m"], &env)
            .unwrap()
            .server
            .static_mounts
            .is_empty());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn python_logging_choice() {
        let s = load_with(&["--log-config", "l.ini", "m"], &env()).unwrap();
        assert_eq!(s.log.python, Some(PythonLogging::File("l.ini".into())));
    }

    #[test]
    fn statsd_addresses_read_as_gunicorn_reads_them() {
        let udp = |h: &str, p| StatsdAddr::Udp {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            StatsdAddr::parse("localhost:9125"),
            Ok(udp("localhost", 9125))
        );
        assert_eq!(StatsdAddr::parse("Stats"), Ok(udp("stats", 8125)));
        assert_eq!(StatsdAddr::parse("[::1]:9"), Ok(udp("::1", 9)));
        assert_eq!(StatsdAddr::parse("unix:8125"), Ok(udp("unix", 8125)));
        assert_eq!(
            StatsdAddr::parse("unix:///run/s.sock"),
            Ok(StatsdAddr::Unix("/run/s.sock".into()))
        );
        assert_eq!(
            StatsdAddr::parse("unix:/run/s.sock"),
            Ok(StatsdAddr::Unix("/run/s.sock".into()))
        );
        assert!(StatsdAddr::parse("h:port").is_err());
    }

    #[test]
    fn metrics_and_json_access_log() {
        let s = load_with(
            &[
                "--metrics-bind",
                "127.0.0.1:9100",
                "--statsd-host",
                "localhost",
                "--statsd-prefix",
                "app",
                "--access-logformat",
                "json",
                "m",
            ],
            &env(),
        )
        .unwrap();
        assert!(s.metrics.enabled());
        let statsd = s.metrics.statsd.unwrap();
        assert_eq!(statsd.prefix, "app");
        assert!(s.log.access_log_json);
        assert!(!load_with(&["m"], &env()).unwrap().metrics.enabled());
    }
}
