//! THE settings table: one clap field per setting, named as gunicorn names the setting, with its
//! flag spelling, default, validator, section (`help_heading`) and help text. The command line,
//! `--help`, the config file and `*_CMD_ARGS` (`config::sources`), `--print-config` and the
//! generated `docs/settings.md` (`config::docs`) are all read from this struct; nothing else
//! declares a setting. Settings gunicorn only takes from a config file are hidden flags here.
//! [`support`] says which settings the server does not act on yet. Values here are raw (checked
//! for syntax only); `config::resolve` turns them into what each part of the server receives.

use std::path::PathBuf;

use clap::Parser;

use super::bind::BindAddr;
use super::static_mount::StaticMount;
use super::LogLevel;

const CONFIG_FILE: &str = "Config File";
const SOCKET: &str = "Server Socket";
const WORKERS: &str = "Worker Processes";
const SECURITY: &str = "Security";
const DEBUGGING: &str = "Debugging";
const MECHANICS: &str = "Server Mechanics";
const LOGGING: &str = "Logging";
const NAMING: &str = "Process Naming";
const SSL: &str = "SSL";
const HTTP2: &str = "HTTP/2";

/// gunicorn's default `access_log_format`.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// ferrocorn: a WSGI HTTP server with gunicorn's interface. Serves APP (`module:callable`).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferrocorn",
    version,
    about,
    max_term_width = 100,
    args_override_self = true
)]
pub struct Cli {
    // ---- Config File ----
    /// The WSGI application: `module:callable`, `module` (callable `application`), or
    /// `module:factory(args)` with literal arguments. A config file may give it as `wsgi_app`.
    #[arg(value_name = "APP", help_heading = CONFIG_FILE)]
    pub wsgi_app: Option<String>,

    /// The config file: `PATH`, `file:PATH` or `python:MODULE`. Default is
    /// `./ferrocorn.conf.py`, else `./gunicorn.conf.py`, when present.
    #[arg(short = 'c', long, value_name = "CONFIG", help_heading = CONFIG_FILE)]
    pub config: Option<String>,

    // ---- Server Socket ----
    /// The socket to bind: `HOST`, `HOST:PORT`, `[::1]:PORT`, `unix:PATH` or `fd://N`. Repeat to
    /// bind several. Default is `127.0.0.1:8000`, or `0.0.0.0:$PORT` when PORT is set.
    #[arg(short = 'b', long, value_name = "ADDRESS", value_parser = BindAddr::parse,
          default_value = "127.0.0.1:8000", help_heading = SOCKET)]
    pub bind: Vec<BindAddr>,

    /// The maximum number of pending connections the kernel queues. Default is 2048.
    #[arg(long, value_name = "INT", value_parser = uint::<u32>, default_value = "2048",
          help_heading = SOCKET)]
    pub backlog: u32,

    // ---- Worker Processes ----
    /// The number of workers. In ferrocorn the pool holds `workers × threads` OS threads that run
    /// Python, in one process. Default is 1, or $WEB_CONCURRENCY.
    #[arg(short = 'w', long, value_name = "INT", value_parser = positive::<u32>,
          default_value = "1", help_heading = WORKERS)]
    pub workers: u32,

    /// Worker processes, each with its own pool of `workers × threads` threads, under one
    /// supervisor that binds the sockets, restarts a process that dies and reloads them one by
    /// one on SIGHUP: several cores for apps bound by the GIL. Default is 1 (one process, no
    /// supervisor until the first SIGHUP).
    #[arg(long, value_name = "INT", value_parser = positive::<u32>, default_value = "1",
          help_heading = WORKERS)]
    pub processes: u32,

    /// The worker type. `sync` and `gthread` both mean ferrocorn's thread pool; other classes
    /// (gevent, eventlet, tornado, custom) are refused. Default is `sync`.
    #[arg(short = 'k', long, value_name = "STRING", default_value = "sync",
          help_heading = WORKERS)]
    pub worker_class: String,

    /// The number of threads per worker for handling requests. Default is 1.
    #[arg(long, value_name = "INT", value_parser = positive::<u32>, default_value = "1",
          help_heading = WORKERS)]
    pub threads: u32,

    /// The most client connections open at once; beyond it new connections wait in the listen
    /// backlog until one closes. Default is 1000.
    #[arg(long, value_name = "INT", value_parser = positive::<u32>, default_value = "1000",
          help_heading = WORKERS)]
    pub worker_connections: u32,

    /// The most requests waiting for a free thread; beyond it the server answers 503 with
    /// `Retry-After`. 0 means no bound but `--worker-connections`. Default is 0.
    #[arg(long, value_name = "INT", value_parser = uint::<usize>, default_value = "0",
          help_heading = WORKERS)]
    pub queue_size: usize,

    /// Requests a worker serves before it is recycled; 0 disables recycling. Default is 0.
    #[arg(long, value_name = "INT", value_parser = uint::<u64>, default_value = "0",
          help_heading = WORKERS)]
    pub max_requests: u64,

    /// The most random jitter added to `max_requests`. Default is 0.
    #[arg(long, value_name = "INT", value_parser = uint::<u64>, default_value = "0",
          help_heading = WORKERS)]
    pub max_requests_jitter: u64,

    /// Seconds a request may run: past it the client gets 504 (if no response started), the
    /// error log gets `WORKER TIMEOUT` with the thread's Python stack, and `RequestTimeout` is
    /// raised in the app's thread; a thread still stuck `--graceful-timeout` later is replaced.
    /// A client that leaves a response unread this long is disconnected. 0 disables. Default
    /// is 30.
    #[arg(short = 't', long, value_name = "INT", value_parser = uint::<u64>,
          default_value = "30", help_heading = WORKERS)]
    pub timeout: u64,

    /// Seconds to let in-flight requests finish after SIGTERM before stopping anyway. Default
    /// is 30.
    #[arg(long, value_name = "INT", value_parser = uint::<u64>, default_value = "30",
          help_heading = WORKERS)]
    pub graceful_timeout: u64,

    /// Seconds to wait for the next request on a keep-alive connection; 0 disables keep-alive.
    /// It also bounds how long a client may take to send a request head (30 s when keep-alive
    /// is off). Default is 2.
    #[arg(long = "keep-alive", value_name = "INT", value_parser = uint::<u64>,
          default_value = "2", help_heading = WORKERS)]
    pub keepalive: u64,

    // ---- Security ----
    /// The longest request line in bytes (answered 400 beyond it); 0 means 8190, the most
    /// allowed. Default is 4094.
    #[arg(long, value_name = "INT", value_parser = uint::<usize>, default_value = "4094",
          help_heading = SECURITY)]
    pub limit_request_line: usize,

    /// The most header fields in a request (answered 431 beyond it), at most 32768. Default
    /// is 100.
    #[arg(long, value_name = "INT", value_parser = uint::<usize>, default_value = "100",
          help_heading = SECURITY)]
    pub limit_request_fields: usize,

    /// The longest header field in bytes (answered 431 beyond it); 0 means unlimited (up to the
    /// 1 MiB head buffer). Default is 8190.
    #[arg(long = "limit-request-field_size", value_name = "INT", value_parser = uint::<usize>,
          default_value = "8190", help_heading = SECURITY)]
    pub limit_request_field_size: usize,

    /// The largest request body in bytes: a larger `Content-Length` is answered 413 before the
    /// app runs, and a chunked body that grows past it fails the app's read (413 if no response
    /// started). 0 means no limit. Default is 0.
    #[arg(long, value_name = "INT", value_parser = uint::<u64>, default_value = "0",
          help_heading = SECURITY)]
    pub limit_request_body: u64,

    // ---- Debugging ----
    /// Local development in one flag: `--reload`, `--log-level debug`, a compact access log on
    /// stderr (colored on a terminal unless `NO_COLOR` is set), a startup banner with the URL,
    /// and Django's static files served as `runserver` serves them. Settings given explicitly
    /// win over the preset. Default is off.
    #[arg(long, help_heading = DEBUGGING)]
    pub dev: bool,

    /// Restart the app in a fresh process when a file of an imported module under the project
    /// (the working directory and `--pythonpath`) changes; the listening sockets stay open. An
    /// app that fails to import answers every request with its traceback (500) until the next
    /// change fixes it. Default is off.
    #[arg(long, help_heading = DEBUGGING)]
    pub reload: bool,

    /// How `--reload` watches files: `auto`, `poll` or `inotify`. Default is `auto`.
    #[arg(long, value_name = "STRING", default_value = "auto",
          value_parser = ["auto", "poll", "inotify"], help_heading = DEBUGGING)]
    pub reload_engine: String,

    /// An extra file or glob (`templates/**/*.html`) to watch with `--reload`. Repeatable.
    #[arg(long = "reload-extra-file", value_name = "FILES", value_parser = glob_pattern,
          help_heading = DEBUGGING)]
    pub reload_extra_files: Vec<String>,

    /// Trace every line of Python the server executes. Default is off.
    #[arg(long, help_heading = DEBUGGING)]
    pub spew: bool,

    /// Check the configuration and that the app imports, then exit 0 (or 1 on failure).
    #[arg(long, help_heading = DEBUGGING)]
    pub check_config: bool,

    /// Print every resolved setting, check that the app imports, then exit.
    #[arg(long, help_heading = DEBUGGING)]
    pub print_config: bool,

    // ---- Server Mechanics ----
    /// Import the app before starting worker processes. Default is off.
    #[arg(long = "preload", help_heading = MECHANICS)]
    pub preload_app: bool,

    /// Do not use sendfile() for `wsgi.file_wrapper` responses.
    #[arg(long = "no-sendfile", action = clap::ArgAction::SetFalse, help_heading = MECHANICS)]
    pub sendfile: bool,

    /// Set SO_REUSEPORT on listening sockets. Default is off.
    #[arg(long, help_heading = MECHANICS)]
    pub reuse_port: bool,

    /// Run the server's threads under Linux's `SCHED_BATCH` policy: a thread woken on a busy
    /// core (a response for the connection thread, a job for a pool thread, the GIL for another
    /// Python thread) waits for the running one's turn to end instead of preempting it, so a
    /// saturated core serves requests in batches. For CPU-bound apps on one core (a Django page
    /// on SQLite: +13 % req/s in the benchmark); it lengthens their tail latency at saturation,
    /// hence off by default. Ignored outside Linux and when started under a real-time policy.
    /// Default is off.
    #[arg(long, help_heading = MECHANICS)]
    pub sched_batch: bool,

    /// Change to this directory before loading the app.
    #[arg(long, value_name = "DIR", help_heading = MECHANICS)]
    pub chdir: Option<PathBuf>,

    /// Serve the files under DIR at URL_PREFIX from Rust, without calling the app:
    /// `URL_PREFIX=DIR` (e.g. `/static/=public`; a relative DIR is taken from `--chdir`).
    /// Repeatable. GET and HEAD with ETag, Last-Modified, conditional requests, single ranges
    /// and precompressed `.br`/`.gz` siblings; directories and paths leaving DIR are 404 (see
    /// docs/static.md). A ferrocorn setting, not gunicorn's. Default is none.
    #[arg(long = "static", value_name = "URL_PREFIX=DIR", value_parser = StaticMount::parse,
          help_heading = MECHANICS)]
    pub static_files: Vec<StaticMount>,

    /// Detach from the terminal and run in the background. Default is off.
    #[arg(short = 'D', long, help_heading = MECHANICS)]
    pub daemon: bool,

    /// Set an environment variable for the app: `KEY=VALUE`. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "ENV", value_parser = env_pair,
          help_heading = MECHANICS)]
    pub raw_env: Vec<String>,

    /// Write the server's process id to this file.
    #[arg(short = 'p', long = "pid", value_name = "FILE", help_heading = MECHANICS)]
    pub pidfile: Option<PathBuf>,

    /// Where gunicorn keeps worker heartbeat files; ferrocorn has none.
    #[arg(long, value_name = "DIR", help_heading = MECHANICS)]
    pub worker_tmp_dir: Option<String>,

    /// Switch to this user (name or uid) after binding.
    #[arg(short = 'u', long, value_name = "USER", help_heading = MECHANICS)]
    pub user: Option<String>,

    /// Switch to this group (name or gid) after binding.
    #[arg(short = 'g', long, value_name = "GROUP", help_heading = MECHANICS)]
    pub group: Option<String>,

    /// The umask Unix socket files are created under (0 makes them `rwxrwxrwx`, as in
    /// gunicorn). Default is 0.
    #[arg(short = 'm', long, value_name = "INT", value_parser = uint::<u32>,
          default_value = "0", help_heading = MECHANICS)]
    pub umask: u32,

    /// Initialize the supplementary groups of `--user`. Default is off.
    #[arg(long, help_heading = MECHANICS)]
    pub initgroups: bool,

    /// A directory for temporary request data (config file only); unused, as in gunicorn.
    #[arg(long, hide = true, value_name = "DIR", help_heading = MECHANICS)]
    pub tmp_upload_dir: Option<String>,

    /// Headers a trusted proxy sets to say the request came over HTTPS, with the value that
    /// means it: `HEADER=VALUE,...` (a dict in a config file). Default is gunicorn's three.
    #[arg(long, hide = true, value_name = "PAIRS", value_parser = header_pairs,
          default_value = "X-FORWARDED-PROTOCOL=ssl,X-FORWARDED-PROTO=https,X-FORWARDED-SSL=on",
          help_heading = MECHANICS)]
    pub secure_scheme_headers: HeaderPairs,

    /// Peers trusted to set `secure_scheme_headers` and forwarder headers: IPs, CIDR networks or
    /// `*`, comma-separated. Default is `127.0.0.1,::1`, or $FORWARDED_ALLOW_IPS.
    #[arg(long, value_name = "STRING", value_parser = addr_list, default_value = "127.0.0.1,::1",
          help_heading = MECHANICS)]
    pub forwarded_allow_ips: String,

    /// Environ keys a trusted proxy may set through headers, comma-separated. Default is
    /// `SCRIPT_NAME,PATH_INFO`.
    #[arg(long, value_name = "STRING", default_value = "SCRIPT_NAME,PATH_INFO",
          help_heading = MECHANICS)]
    pub forwarder_headers: String,

    /// What to do with headers whose names contain `_`: `drop`, `refuse` (400) or `dangerous`
    /// (pass them on). Default is `drop`.
    #[arg(long, value_name = "STRING", default_value = "drop",
          value_parser = ["drop", "refuse", "dangerous"], help_heading = MECHANICS)]
    pub header_map: String,

    /// Comma-separated directories to add to the Python path, e.g. `/home/app,/home/lib`.
    #[arg(long, value_name = "STRING", help_heading = MECHANICS)]
    pub pythonpath: Option<String>,

    /// Read a PROXY protocol header (HAProxy's v1 text or v2 binary; `auto` takes either, and is
    /// what the bare flag means) from `--proxy-allow-from` peers and Unix sockets: the client
    /// address it names becomes `REMOTE_ADDR`. A connection without one is served as sent.
    /// Default is `off`.
    #[arg(long, value_name = "STRING", default_value = "off", num_args = 0..=1,
          default_missing_value = "auto", value_parser = ["off", "v1", "v2", "auto"],
          help_heading = MECHANICS)]
    pub proxy_protocol: String,

    /// Peers allowed to send the PROXY protocol: IPs, CIDR networks or `*`. Default is
    /// `127.0.0.1,::1`.
    #[arg(long = "proxy-allow-from", value_name = "STRING", value_parser = addr_list,
          default_value = "127.0.0.1,::1", help_heading = MECHANICS)]
    pub proxy_allow_ips: String,

    /// Strip spaces before the colon of header names (unsafe). Default is off.
    #[arg(long, help_heading = MECHANICS)]
    pub strip_header_spaces: bool,

    /// Allow methods gunicorn calls unconventional (unsafe). Default is off.
    #[arg(long, help_heading = MECHANICS)]
    pub permit_unconventional_http_method: bool,

    /// Allow HTTP versions other than 1.0 and 1.1 (unsafe). Default is off.
    #[arg(long, help_heading = MECHANICS)]
    pub permit_unconventional_http_version: bool,

    /// Upper-case request methods (unsafe). Default is off.
    #[arg(long, help_heading = MECHANICS)]
    pub casefold_http_method: bool,

    /// Accept obsolete line folding in headers (unsafe). Default is off.
    #[arg(long, help_heading = MECHANICS)]
    pub permit_obsolete_folding: bool,

    // ---- Logging ----
    /// The access log file; `-` is stdout. Default is no access log.
    #[arg(long = "access-logfile", value_name = "FILE", help_heading = LOGGING)]
    pub accesslog: Option<String>,

    /// Do not send access lines to syslog with `--log-syslog`. Default is off.
    #[arg(long, help_heading = LOGGING)]
    pub disable_redirect_access_to_syslog: bool,

    /// The access log format, with gunicorn's atoms (`%(h)s`, `%(r)s`, `%({header}i)s`, ...);
    /// `json` writes one JSON object per line (as `--access-log-json`). A format shaped like a
    /// JSON object (`{...}`) has its atoms escaped as JSON strings.
    #[arg(long = "access-logformat", alias = "access-log-format", value_name = "STRING",
          default_value = DEFAULT_ACCESS_LOG_FORMAT, help_heading = LOGGING)]
    pub access_log_format: String,

    /// Write the access log as one JSON object per line, with a field for each of gunicorn's
    /// atoms (see docs/metrics.md). Default is off.
    #[arg(long, help_heading = LOGGING)]
    pub access_log_json: bool,

    /// The error log file; `-` is stderr. Default is `-`.
    #[arg(long = "error-logfile", alias = "log-file", value_name = "FILE", default_value = "-",
          help_heading = LOGGING)]
    pub errorlog: String,

    /// The error log level: debug, info, warning, error or critical. Default is info.
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info",
          value_parser = LogLevel::parse, help_heading = LOGGING)]
    pub loglevel: LogLevel,

    /// Send the app's stdout and stderr to the error log. Default is off.
    #[arg(long, help_heading = LOGGING)]
    pub capture_output: bool,

    /// A Python logger class; only gunicorn's default is understood.
    #[arg(long, value_name = "STRING", default_value = "gunicorn.glogging.Logger",
          help_heading = LOGGING)]
    pub logger_class: String,

    /// A `logging.config.fileConfig` file: logs then go through Python's `logging`, to the
    /// `gunicorn.error` and `gunicorn.access` loggers.
    #[arg(long = "log-config", value_name = "FILE", help_heading = LOGGING)]
    pub logconfig: Option<PathBuf>,

    /// A `logging.config.dictConfig` dict (config file only; JSON text on `*_CMD_ARGS`).
    #[arg(long, hide = true, value_name = "JSON", help_heading = LOGGING)]
    pub logconfig_dict: Option<String>,

    /// A JSON file for `logging.config.dictConfig`.
    #[arg(long = "log-config-json", value_name = "FILE", help_heading = LOGGING)]
    pub logconfig_json: Option<PathBuf>,

    /// Where syslog lines go: `unix://PATH`, `udp://HOST:PORT` or `tcp://HOST:PORT`.
    #[arg(long = "log-syslog-to", value_name = "SYSLOG_ADDR",
          default_value = "udp://localhost:514", help_heading = LOGGING)]
    pub syslog_addr: String,

    /// Send the error log to syslog. Default is off.
    #[arg(long = "log-syslog", help_heading = LOGGING)]
    pub syslog: bool,

    /// The program name in syslog lines.
    #[arg(long = "log-syslog-prefix", value_name = "SYSLOG_PREFIX", help_heading = LOGGING)]
    pub syslog_prefix: Option<String>,

    /// The syslog facility. Default is `user`.
    #[arg(long = "log-syslog-facility", value_name = "SYSLOG_FACILITY", default_value = "user",
          help_heading = LOGGING)]
    pub syslog_facility: String,

    /// Keep stdio open when daemonized. Default is off.
    #[arg(short = 'R', long, help_heading = LOGGING)]
    pub enable_stdio_inheritance: bool,

    /// A StatsD server to send gunicorn's metrics to: `HOST:PORT`, `HOST` (port 8125) or
    /// `unix:PATH` (a datagram socket).
    #[arg(long, value_name = "STATSD_ADDR", value_parser = statsd_addr, help_heading = LOGGING)]
    pub statsd_host: Option<String>,

    /// Comma-separated DogStatsD tags for every metric, e.g. `env:prod,app:shop`.
    #[arg(long, value_name = "DOGSTATSD_TAGS", default_value = "", help_heading = LOGGING)]
    pub dogstatsd_tags: String,

    /// The prefix of StatsD metric names.
    #[arg(long, value_name = "STATSD_PREFIX", default_value = "", help_heading = LOGGING)]
    pub statsd_prefix: String,

    /// Send the number of requests waiting for a pool thread as the StatsD `gunicorn.backlog`
    /// histogram, once a second. Default is off.
    #[arg(long, help_heading = LOGGING)]
    pub enable_backlog_metric: bool,

    /// Serve Prometheus metrics (`/metrics`), liveness (`/health`) and readiness (`/ready`) on
    /// this address of their own: `HOST:PORT` or `unix:PATH`. Default is off.
    #[arg(long, value_name = "ADDRESS", value_parser = metrics_addr, help_heading = LOGGING)]
    pub metrics_bind: Option<BindAddr>,

    // ---- Process Naming ----
    /// The process title (seen in `ps` and `top`).
    #[arg(short = 'n', long = "name", value_name = "STRING", help_heading = NAMING)]
    pub proc_name: Option<String>,

    // ---- SSL ----
    /// The TLS private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC). Default is the key in
    /// `--certfile`.
    #[arg(long, value_name = "FILE", help_heading = SSL)]
    pub keyfile: Option<PathBuf>,

    /// The TLS certificate chain (PEM), the server's certificate first: every listener then
    /// speaks TLS. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", help_heading = SSL)]
    pub certfile: Option<PathBuf>,

    /// Python's `ssl` protocol constant, deprecated and ignored by gunicorn; see
    /// `--tls-min-version`.
    #[arg(long, value_name = "STRING", help_heading = SSL)]
    pub ssl_version: Option<String>,

    /// The lowest TLS version accepted: `1.2` or `1.3`. Default is 1.2.
    #[arg(long, value_name = "VERSION", default_value = "1.2", value_parser = ["1.2", "1.3"],
          help_heading = SSL)]
    pub tls_min_version: String,

    /// Whether client certificates are asked for: 0 no, 1 optional (one that is sent must
    /// verify), 2 required; they are checked against `--ca-certs`. Default is 0.
    #[arg(long, value_name = "INT", value_parser = cert_reqs, default_value = "0",
          help_heading = SSL)]
    pub cert_reqs: u8,

    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, value_name = "FILE", help_heading = SSL)]
    pub ca_certs: Option<PathBuf>,

    /// Python `ssl` option; rustls always reports a truncated TLS stream as an error.
    #[arg(long, help_heading = SSL)]
    pub suppress_ragged_eofs: bool,

    /// Python `ssl` option; rustls always completes the handshake before reading.
    #[arg(long, help_heading = SSL)]
    pub do_handshake_on_connect: bool,

    /// The TLS cipher suites allowed, as an OpenSSL cipher list (`ECDHE+AESGCM:!aNULL`,
    /// `ECDHE-RSA-AES256-GCM-SHA384:...`); names rustls does not implement are refused. As with
    /// OpenSSL, TLS 1.3 suites stay allowed unless the list names one. Default is every suite
    /// rustls offers.
    #[arg(long, value_name = "STRING", value_parser = ciphers, help_heading = SSL)]
    pub ciphers: Option<String>,

    // ---- HTTP/2 ----
    /// The HTTP versions offered, comma-separated, in preference order: `h1`, `h2`. HTTP/2 is
    /// negotiated by ALPN over TLS, or, with `--http2-cleartext`, spoken in cleartext by
    /// trusted peers. Default is `h1`.
    #[arg(long, value_name = "STRING", value_parser = http_protocols, default_value = "h1",
          help_heading = HTTP2)]
    pub http_protocols: String,

    /// Cleartext HTTP/2 (h2c): `prior-knowledge` (what the bare flag means) serves plain
    /// connections that open with the HTTP/2 preface, from `--forwarded-allow-ips` peers only;
    /// HTTP/1 is still served on the same port. `off` disables it. Needs `h2` in
    /// `--http-protocols`; ignored with TLS. Default is `off`.
    #[arg(long, value_name = "STRING", default_value = "off", num_args = 0..=1,
          default_missing_value = "prior-knowledge", value_parser = http2_cleartext,
          help_heading = HTTP2)]
    pub http2_cleartext: String,

    /// The most concurrent streams per HTTP/2 connection. Default is 100.
    #[arg(long, value_name = "INT", value_parser = positive::<u32>, default_value = "100",
          help_heading = HTTP2)]
    pub http2_max_concurrent_streams: u32,

    /// The initial HTTP/2 flow-control window in bytes, per stream and per connection (at most
    /// 2147483647). Default is 65535.
    #[arg(long, value_name = "INT", value_parser = window_size, default_value = "65535",
          help_heading = HTTP2)]
    pub http2_initial_window_size: u32,

    /// The largest HTTP/2 frame payload in bytes (16384 to 16777215). Default is 16384.
    #[arg(long, value_name = "INT", value_parser = frame_size, default_value = "16384",
          help_heading = HTTP2)]
    pub http2_max_frame_size: u32,

    /// The largest HTTP/2 header list in bytes, after HPACK decoding; 0 means no limit. Larger
    /// requests are answered 431. Default is 65536.
    #[arg(long, value_name = "INT", value_parser = uint::<u32>, default_value = "65536",
          help_heading = HTTP2)]
    pub http2_max_header_list_size: u32,
}

/// How far the server acts on a setting. Every setting is parsed and validated; those that are
/// not `Supported` are named in a startup line when set, never silently ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Supported,
    /// Planned; accepted so configurations keep working meanwhile.
    NotYet,
    /// Means nothing for an in-process threaded server with rustls; the text says why.
    NoEffect(&'static str),
}

/// Settings the server does not act on (yet); every other setting is `Supported`. Later work
/// removes names here.
const NOT_SUPPORTED: &[(&str, Support)] = {
    const TLS: Support =
        Support::NoEffect("it is an option of Python's ssl module; ferrocorn uses rustls");
    const NOT_YET: Support = Support::NotYet;
    &[
        (
            "worker_tmp_dir",
            Support::NoEffect("ferrocorn has no worker heartbeat files"),
        ),
        (
            "tmp_upload_dir",
            Support::NoEffect("gunicorn does not use it either"),
        ),
        (
            "ssl_version",
            Support::NoEffect("gunicorn ignores it too; use --tls-min-version"),
        ),
        ("suppress_ragged_eofs", TLS),
        ("do_handshake_on_connect", TLS),
        ("spew", NOT_YET),
        ("strip_header_spaces", NOT_YET),
        ("permit_unconventional_http_method", NOT_YET),
        ("permit_unconventional_http_version", NOT_YET),
        ("casefold_http_method", NOT_YET),
        ("permit_obsolete_folding", NOT_YET),
        ("disable_redirect_access_to_syslog", NOT_YET),
        ("logger_class", NOT_YET),
        ("syslog_addr", NOT_YET),
        ("syslog", NOT_YET),
        ("syslog_prefix", NOT_YET),
        ("syslog_facility", NOT_YET),
        ("enable_stdio_inheritance", NOT_YET),
    ]
};

/// How far the server acts on the setting `id`.
pub fn support(id: &str) -> Support {
    NOT_SUPPORTED
        .iter()
        .find(|(name, _)| *name == id)
        .map_or(Support::Supported, |(_, s)| *s)
}

/// `secure_scheme_headers`: header name → the value that means HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderPairs(pub Vec<(String, String)>);

/// A path or a glob (`templates/**/*.html`).
fn glob_pattern(s: &str) -> Result<String, String> {
    glob::Pattern::new(s)
        .map(|_| s.to_string())
        .map_err(|err| format!("not a valid glob: {err}"))
}

/// An unsigned integer as Python's `int(s, 0)` reads it (`10`, `0o22`, `0x1f`), as gunicorn
/// validates its integer settings.
pub fn uint<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let t = s.trim().replace('_', "");
    let (digits, radix) = match t.get(..2).map(str::to_ascii_lowercase).as_deref() {
        Some("0x") => (&t[2..], 16),
        Some("0o") => (&t[2..], 8),
        Some("0b") => (&t[2..], 2),
        _ => (t.as_str(), 10),
    };
    if radix == 10 && digits.len() > 1 && digits.starts_with('0') {
        return Err("leading zeros are not allowed (write 0o22 for octal)".into());
    }
    if digits.starts_with('-') {
        return Err("must be a positive integer".into());
    }
    let n = u64::from_str_radix(digits, radix).map_err(|_| "not an integer".to_string())?;
    T::try_from(n).map_err(|_| "too large".to_string())
}

/// An integer of at least 1.
pub fn positive<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    match uint::<u64>(s)? {
        0 => Err("must be at least 1".into()),
        n => T::try_from(n).map_err(|_| "too large".to_string()),
    }
}

fn cert_reqs(s: &str) -> Result<u8, String> {
    match uint::<u8>(s)? {
        n @ 0..=2 => Ok(n),
        _ => Err("expected 0 (none), 1 (optional) or 2 (required)".into()),
    }
}

fn ciphers(s: &str) -> Result<String, String> {
    super::tls::parse_ciphers(s).map(|_| s.to_string())
}

fn window_size(s: &str) -> Result<u32, String> {
    match uint::<u32>(s)? {
        n @ 1..=0x7fff_ffff => Ok(n),
        _ => Err("must be between 1 and 2147483647".into()),
    }
}

fn frame_size(s: &str) -> Result<u32, String> {
    match uint::<u32>(s)? {
        n @ 16_384..=16_777_215 => Ok(n),
        _ => Err("must be between 16384 and 16777215".into()),
    }
}

fn http2_cleartext(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        v @ ("off" | "prior-knowledge") => Ok(v.to_string()),
        "upgrade" | "both" => Err(
            "the HTTP/1.1 `Upgrade: h2c` mechanism is not supported; use prior-knowledge".into(),
        ),
        _ => Err("expected off or prior-knowledge".into()),
    }
}

fn env_pair(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => Ok(s.to_string()),
        _ => Err("expected KEY=VALUE".into()),
    }
}

fn header_pairs(s: &str) -> Result<HeaderPairs, String> {
    let mut pairs = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("expected HEADER=VALUE, got '{item}'"))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(format!("'{name}' is not a header name"));
        }
        pairs.push((name.to_ascii_uppercase(), value.trim().to_string()));
    }
    Ok(HeaderPairs(pairs))
}

/// IPs, CIDR networks or `*`, comma-separated (checked here, matched by the proxy-trust code).
fn addr_list(s: &str) -> Result<String, String> {
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if item == "*" {
            continue;
        }
        let (ip, prefix) = match item.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (item, None),
        };
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("'{item}' is not an IP address or network"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if let Some(p) = prefix {
            match p.parse::<u8>() {
                Ok(n) if n <= max => {}
                _ => return Err(format!("'{item}' has a bad prefix length")),
            }
        }
    }
    Ok(s.to_string())
}

/// gunicorn's StatsD address: `unix:PATH` or `unix://PATH`, `HOST:PORT`, `[IPv6]:PORT`, or
/// `HOST` (port 8125). Checked here; `config::StatsdAddr::parse` reads it.
fn statsd_addr(s: &str) -> Result<String, String> {
    super::StatsdAddr::parse(s).map(|_| s.to_string())
}

/// `--metrics-bind`: a TCP address or a Unix socket (an inherited descriptor makes no sense).
fn metrics_addr(s: &str) -> Result<BindAddr, String> {
    match BindAddr::parse(s)? {
        BindAddr::Fd(_) => Err("expected HOST:PORT or unix:PATH".into()),
        addr => Ok(addr),
    }
}

fn http_protocols(s: &str) -> Result<String, String> {
    let mut any = false;
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !matches!(p, "h1" | "h2") {
            return Err(format!("unknown protocol '{p}' (expected h1, h2)"));
        }
        any = true;
    }
    match any {
        true => Ok(s.into()),
        false => Err("name at least one protocol".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferrocorn").chain(args.iter().copied()))
    }

    #[test]
    fn table_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_setting_is_named_as_in_gunicorn() {
        // The id is the config-file name; config-file names are lower snake case.
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
            assert!(id.bytes().all(ok), "{id}");
        }
    }

    #[test]
    fn support_names_only_real_settings() {
        // A typo here would silently mark the misspelt setting as supported.
        let cmd = Cli::command();
        for (name, _) in NOT_SUPPORTED {
            assert!(cmd.get_arguments().any(|a| a.get_id() == *name), "{name}");
        }
    }

    #[test]
    fn wsgi_app_is_the_positional() {
        assert_eq!(
            parse(&["m:app"]).unwrap().wsgi_app.as_deref(),
            Some("m:app")
        );
        assert_eq!(parse(&[]).unwrap().wsgi_app, None);
    }

    #[test]
    fn config_flag() {
        assert_eq!(
            parse(&["-c", "x.py"]).unwrap().config.as_deref(),
            Some("x.py")
        );
    }

    #[test]
    fn bind_repeats_and_defaults() {
        let cli = parse(&["-b", "127.0.0.1:1", "--bind", "unix:/tmp/x"]).unwrap();
        assert_eq!(cli.bind.len(), 2);
        assert_eq!(
            parse(&[]).unwrap().bind,
            vec![BindAddr::parse("127.0.0.1:8000").unwrap()]
        );
        assert!(parse(&["-b", "fd://x"]).is_err());
    }

    #[test]
    fn backlog() {
        assert_eq!(parse(&[]).unwrap().backlog, 2048);
        assert_eq!(parse(&["--backlog", "64"]).unwrap().backlog, 64);
        assert!(parse(&["--backlog", "-1"]).is_err());
    }

    #[test]
    fn workers_must_be_a_positive_int() {
        let err = parse(&["--workers", "two"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(parse(&["--workers", "0"]).is_err());
        assert_eq!(parse(&["-w", "4"]).unwrap().workers, 4);
        assert_eq!(parse(&["-w", "0x10"]).unwrap().workers, 16);
        // The last of a repeated flag wins, as with gunicorn's argparse.
        assert_eq!(parse(&["-w", "2", "-w", "3"]).unwrap().workers, 3);
    }

    #[test]
    fn worker_class_is_free_text_here() {
        // Refusing gevent & co. is resolution's job, so every source gets the same message.
        assert_eq!(parse(&["-k", "gevent"]).unwrap().worker_class, "gevent");
        assert_eq!(parse(&[]).unwrap().worker_class, "sync");
    }

    #[test]
    fn threads() {
        assert_eq!(parse(&["--threads", "8"]).unwrap().threads, 8);
        assert!(parse(&["--threads", "0"]).is_err());
    }

    #[test]
    fn worker_connections_and_max_requests() {
        let cli = parse(&["--worker-connections", "5", "--max-requests", "9"]).unwrap();
        assert_eq!((cli.worker_connections, cli.max_requests), (5, 9));
        assert_eq!(
            parse(&["--max-requests-jitter", "3"])
                .unwrap()
                .max_requests_jitter,
            3
        );
    }

    #[test]
    fn timeouts() {
        let cli = parse(&["-t", "0", "--graceful-timeout", "5", "--keep-alive", "7"]).unwrap();
        assert_eq!(
            (cli.timeout, cli.graceful_timeout, cli.keepalive),
            (0, 5, 7)
        );
        assert!(parse(&["--timeout", "1.5"]).is_err());
    }

    #[test]
    fn limits_keep_gunicorn_spelling() {
        let cli = parse(&[
            "--limit-request-line",
            "100",
            "--limit-request-fields",
            "10",
            "--limit-request-field_size",
            "200",
        ])
        .unwrap();
        assert_eq!(
            (
                cli.limit_request_line,
                cli.limit_request_fields,
                cli.limit_request_field_size
            ),
            (100, 10, 200)
        );
    }

    #[test]
    fn reload_settings() {
        let cli = parse(&[
            "--reload",
            "--reload-engine",
            "poll",
            "--reload-extra-file",
            "a.txt",
        ])
        .unwrap();
        assert!(cli.reload);
        assert_eq!(cli.reload_engine, "poll");
        assert_eq!(cli.reload_extra_files, ["a.txt"]);
        assert!(parse(&["--reload-engine", "kqueue"]).is_err());
        assert!(parse(&["--reload-extra-file", "templates/[a-"]).is_err());
        assert!(parse(&["--dev"]).unwrap().dev);
        assert!(!parse(&[]).unwrap().dev);
    }

    #[test]
    fn debugging_flags() {
        let cli = parse(&["--spew", "--check-config", "--print-config"]).unwrap();
        assert!(cli.spew && cli.check_config && cli.print_config);
    }

    #[test]
    fn sendfile_is_on_unless_refused() {
        assert!(parse(&[]).unwrap().sendfile);
        assert!(!parse(&["--no-sendfile"]).unwrap().sendfile);
    }

    #[test]
    fn raw_env_needs_key_and_value() {
        assert_eq!(
            parse(&["-e", "A=1", "--env", "B="]).unwrap().raw_env,
            ["A=1", "B="]
        );
        assert!(parse(&["-e", "A"]).is_err());
        assert!(parse(&["-e", "=1"]).is_err());
    }

    #[test]
    fn process_settings() {
        let cli = parse(&["-p", "/tmp/p", "-u", "www", "-g", "10", "-m", "0o22", "-D"]).unwrap();
        assert_eq!(cli.umask, 0o22);
        assert_eq!(cli.user.as_deref(), Some("www"));
        assert!(cli.daemon && cli.pidfile.is_some());
        assert!(parse(&["-m", "022"]).is_err());
    }

    #[test]
    fn secure_scheme_headers() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.secure_scheme_headers.0.len(), 3);
        let cli = parse(&["--secure-scheme-headers", "x-scheme=https"]).unwrap();
        assert_eq!(
            cli.secure_scheme_headers.0,
            [("X-SCHEME".into(), "https".into())]
        );
        assert!(parse(&["--secure-scheme-headers", "x-scheme"]).is_err());
        assert!(parse(&["--secure-scheme-headers", ""])
            .unwrap()
            .secure_scheme_headers
            .0
            .is_empty());
    }

    #[test]
    fn address_lists() {
        assert!(parse(&["--forwarded-allow-ips", "*"]).is_ok());
        assert!(parse(&["--forwarded-allow-ips", "10.0.0.0/8, ::1,192.168.1.1"]).is_ok());
        assert!(parse(&["--forwarded-allow-ips", "10.0.0.0/33"]).is_err());
        assert!(parse(&["--proxy-allow-from", "proxy.local"]).is_err());
    }

    #[test]
    fn header_map_and_proxy_protocol() {
        assert!(parse(&["--header-map", "refuse"]).is_ok());
        assert!(parse(&["--header-map", "keep"]).is_err());
        assert_eq!(parse(&["--proxy-protocol"]).unwrap().proxy_protocol, "auto");
        assert_eq!(
            parse(&["--proxy-protocol", "v2"]).unwrap().proxy_protocol,
            "v2"
        );
        assert_eq!(parse(&[]).unwrap().proxy_protocol, "off");
    }

    #[test]
    fn logging_settings() {
        let cli = parse(&[
            "--log-file",
            "/tmp/e",
            "--log-level",
            "DEBUG",
            "--capture-output",
        ])
        .unwrap();
        assert_eq!(cli.errorlog, "/tmp/e");
        assert_eq!(cli.loglevel, LogLevel::Debug);
        assert!(cli.capture_output);
        assert!(parse(&["--log-level", "loud"]).is_err());
        assert_eq!(
            parse(&[]).unwrap().access_log_format,
            DEFAULT_ACCESS_LOG_FORMAT
        );
    }

    #[test]
    fn statsd() {
        assert!(parse(&["--statsd-host", "localhost:8125"]).is_ok());
        assert!(parse(&["--statsd-host", "unix:/run/statsd"]).is_ok());
        assert!(parse(&["--statsd-host", "localhost"]).is_ok());
        assert!(parse(&["--statsd-host", "localhost:x"]).is_err());
        assert!(parse(&["--statsd-host", "unix:"]).is_err());
        assert!(parse(&["--metrics-bind", "127.0.0.1:9100"]).is_ok());
        assert!(parse(&["--metrics-bind", "fd://3"]).is_err());
    }

    #[test]
    fn tls_settings() {
        assert_eq!(parse(&["--cert-reqs", "2"]).unwrap().cert_reqs, 2);
        assert!(parse(&["--cert-reqs", "3"]).is_err());
        assert!(parse(&["--certfile", "c.pem", "--keyfile", "k.pem"]).is_ok());
    }

    #[test]
    fn http_protocol_list() {
        assert!(parse(&["--http-protocols", "h1,h2"]).is_ok());
        assert!(parse(&["--http-protocols", "h3"]).is_err());
        assert!(parse(&["--http-protocols", ""]).is_err());
        assert!(parse(&["--http2-max-concurrent-streams", "0"]).is_err());
    }

    #[test]
    fn mechanics_flags() {
        let cli = parse(&[
            "--chdir",
            "/srv",
            "--pythonpath",
            "a,b",
            "--preload",
            "--reuse-port",
            "--initgroups",
            "--worker-tmp-dir",
            "/dev/shm",
            "--forwarder-headers",
            "SCRIPT_NAME",
            "--strip-header-spaces",
            "--permit-unconventional-http-method",
            "--permit-unconventional-http-version",
            "--casefold-http-method",
            "--permit-obsolete-folding",
        ])
        .unwrap();
        assert_eq!(cli.chdir, Some(PathBuf::from("/srv")));
        assert_eq!(cli.pythonpath.as_deref(), Some("a,b"));
        assert!(cli.preload_app && cli.reuse_port && cli.initgroups);
        assert_eq!(cli.worker_tmp_dir.as_deref(), Some("/dev/shm"));
        assert_eq!(cli.forwarder_headers, "SCRIPT_NAME");
        assert!(cli.strip_header_spaces && cli.permit_obsolete_folding && cli.casefold_http_method);
        assert!(cli.permit_unconventional_http_method && cli.permit_unconventional_http_version);
        assert_eq!(
            parse(&["--tmp-upload-dir", "/t"])
                .unwrap()
                .tmp_upload_dir
                .as_deref(),
            Some("/t")
        );
    }

    #[test]
    fn static_mounts_repeat_and_are_checked() {
        let cli = parse(&["--static", "/static/=public", "--static=/m=/srv/media"]).unwrap();
        let mounts: Vec<_> = cli
            .static_files
            .iter()
            .map(|m| (m.prefix.as_str(), m.dir.to_str().unwrap()))
            .collect();
        assert_eq!(mounts, [("/static", "public"), ("/m", "/srv/media")]);
        assert!(parse(&[]).unwrap().static_files.is_empty());
        assert!(parse(&["--static", "static=public"]).is_err());
        assert!(parse(&["--static", "/static"]).is_err());
        assert!(parse(&["--static", "/static="]).is_err());
    }

    #[test]
    fn more_logging_flags() {
        let cli = parse(&[
            "--access-logfile",
            "-",
            "--disable-redirect-access-to-syslog",
            "--logger-class",
            "my.Logger",
            "--log-config",
            "l.ini",
            "--log-config-json",
            "l.json",
            "--logconfig-dict",
            "{}",
            "--log-syslog",
            "--log-syslog-to",
            "unix:///dev/log",
            "--log-syslog-prefix",
            "app",
            "--log-syslog-facility",
            "local0",
            "-R",
            "--dogstatsd-tags",
            "env:prod",
            "--statsd-prefix",
            "shop",
            "--enable-backlog-metric",
            "-n",
            "shop-web",
        ])
        .unwrap();
        assert_eq!(cli.accesslog.as_deref(), Some("-"));
        assert!(
            cli.disable_redirect_access_to_syslog && cli.syslog && cli.enable_stdio_inheritance
        );
        assert_eq!(cli.logger_class, "my.Logger");
        assert_eq!(cli.logconfig, Some(PathBuf::from("l.ini")));
        assert_eq!(cli.logconfig_json, Some(PathBuf::from("l.json")));
        assert_eq!(cli.logconfig_dict.as_deref(), Some("{}"));
        assert_eq!(cli.syslog_addr, "unix:///dev/log");
        assert_eq!(cli.syslog_prefix.as_deref(), Some("app"));
        assert_eq!(cli.syslog_facility, "local0");
        assert_eq!(
            (cli.dogstatsd_tags.as_str(), cli.statsd_prefix.as_str()),
            ("env:prod", "shop")
        );
        assert!(cli.enable_backlog_metric);
        assert_eq!(cli.proc_name.as_deref(), Some("shop-web"));
    }

    #[test]
    fn more_tls_and_h2_flags() {
        let cli = parse(&[
            "--ssl-version",
            "TLSv1_2",
            "--ca-certs",
            "ca.pem",
            "--suppress-ragged-eofs",
            "--do-handshake-on-connect",
            "--ciphers",
            "ECDHE+AESGCM",
            "--http2-initial-window-size",
            "1048576",
            "--http2-max-frame-size",
            "32768",
            "--http2-max-header-list-size",
            "1",
        ])
        .unwrap();
        assert_eq!(cli.ssl_version.as_deref(), Some("TLSv1_2"));
        assert_eq!(cli.ca_certs, Some(PathBuf::from("ca.pem")));
        assert!(cli.suppress_ragged_eofs && cli.do_handshake_on_connect);
        assert_eq!(cli.ciphers.as_deref(), Some("ECDHE+AESGCM"));
        assert_eq!(
            (
                cli.http2_initial_window_size,
                cli.http2_max_frame_size,
                cli.http2_max_header_list_size
            ),
            (1_048_576, 32_768, 1)
        );
    }

    #[test]
    fn every_setting_has_a_section_and_help() {
        for arg in Cli::command().get_arguments() {
            if matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            assert!(arg.get_help_heading().is_some(), "{}", arg.get_id());
            assert!(arg.get_help().is_some(), "{}", arg.get_id());
        }
    }

    #[test]
    fn python_style_integers() {
        assert_eq!(uint::<u32>("0o777"), Ok(0o777));
        assert_eq!(uint::<u32>(" 42 "), Ok(42));
        assert_eq!(uint::<u32>("1_000"), Ok(1000));
        assert!(uint::<u8>("256").is_err());
        assert!(uint::<u32>("-1").is_err());
        assert!(uint::<u32>("").is_err());
    }
}
