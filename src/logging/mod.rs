//! Logging as gunicorn users read it. The error log is a `tracing` subscriber whose lines look
//! like `[2026-11-24 09:00:00 +0000] [1234] [INFO] Listening at: …`; the access log is
//! `access::AccessLog`, rendered from a format compiled once. This module owns where lines go
//! (stderr, stdout, a file); it does not decide what is worth logging.

pub mod access;
mod clock;
pub mod python;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogLevel, LogSettings};
pub use access::AccessLog;
pub use clock::set_local_offset;
pub(crate) use clock::Civil;

/// Where a log's lines go. Each line is written with one `write_all`, so lines from several
/// threads never interleave within a line (files are opened with `O_APPEND`).
#[derive(Debug, Clone)]
pub enum Sink {
    Stdout,
    Stderr,
    File(Arc<File>),
    /// A Python logger (`gunicorn.access`) when logging goes through Python.
    Python(python::PyLogger),
}

impl Sink {
    /// `-` means `dash`; anything else is a file opened for appending.
    pub fn open(spec: &str, dash: Sink) -> io::Result<Sink> {
        if spec == "-" {
            return Ok(dash);
        }
        let file = Arc::new(append(Path::new(spec))?);
        if let Ok(mut opened) = OPENED.lock() {
            opened.push((spec.into(), file.clone()));
        }
        Ok(Sink::File(file))
    }

    pub fn write_line(&self, line: &[u8]) {
        // A log line that cannot be written has nowhere better to go.
        let _ = match self {
            Sink::Stdout => io::stdout().lock().write_all(line),
            Sink::Stderr => io::stderr().lock().write_all(line),
            Sink::File(f) => (&**f).write_all(line),
            Sink::Python(logger) => {
                let text = String::from_utf8_lossy(line);
                logger.log(20, text.trim_end_matches('\n'));
                Ok(())
            }
        };
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Whether logging goes through Python's `logging` (its handlers then reopen their files).
static PYTHON_LOGGING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Every log file opened, so SIGUSR1 can reopen them.
static OPENED: std::sync::Mutex<Vec<(std::path::PathBuf, Arc<File>)>> =
    std::sync::Mutex::new(Vec::new());

/// The error log file stdout and stderr point at (`--capture-output`).
static CAPTURED: std::sync::Mutex<Option<Arc<File>>> = std::sync::Mutex::new(None);

/// The log files this process opened (to hand them to `--user`).
pub fn files() -> Vec<std::path::PathBuf> {
    OPENED
        .lock()
        .map(|o| o.iter().map(|(p, _)| p.clone()).collect())
        .unwrap_or_default()
}

/// SIGUSR1: reopens every log file at its path (after logrotate moved it away). The new file
/// takes the old one's descriptor, so every writer moves to it at once, without a lock.
pub fn reopen_files() {
    if PYTHON_LOGGING.load(std::sync::atomic::Ordering::Relaxed) {
        pyo3::Python::attach(|py| {
            if let Err(err) = python::reopen_files(py) {
                tracing::error!("Cannot reopen the Python logging files: {err}");
            }
        });
    }
    let Ok(opened) = OPENED.lock() else { return };
    for (path, file) in opened.iter() {
        let fresh = match append(path) {
            Ok(f) => f,
            Err(err) => {
                tracing::error!("Cannot reopen log file {}: {err}", path.display());
                continue;
            }
        };
        if let Err(err) = take_over(&fresh, file) {
            tracing::error!("Cannot reopen log file {}: {err}", path.display());
        }
    }
    if let Some(file) = CAPTURED.lock().ok().and_then(|c| c.clone()) {
        let _ = nix::unistd::dup2_stdout(&*file);
        let _ = nix::unistd::dup2_stderr(&*file);
    }
}

/// Makes `old`'s descriptor refer to what `fresh` opened.
#[allow(unsafe_code)]
fn take_over(fresh: &File, old: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open and owned by live `File`s; dup3 atomically replaces what
    // `old`'s number refers to (keeping it close-on-exec, which dup2 would clear), and `old`
    // stays the owner of that number.
    let fd = unsafe { nix::libc::dup3(fresh.as_raw_fd(), old.as_raw_fd(), nix::libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `MakeWriter` that buffers one event and writes it whole.
pub struct LineWriter {
    sink: Sink,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.sink.write_line(&self.buf);
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            sink: self.clone(),
            buf: Vec::with_capacity(128),
        }
    }
}

/// gunicorn's error-log line: `[stamp] [pid] [LEVEL] message key=value…`.
struct GunicornFormat {
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for GunicornFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG | Level::TRACE => "DEBUG",
        };
        write!(
            writer,
            "[{}] [{}] [{}] ",
            Civil::now().error_log_stamp(),
            self.pid,
            level
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the error log for this process, and points stdout and stderr at it with
/// `--capture-output`. Called once by `lifecycle`; a second call (tests that start several
/// servers in one process) keeps the first subscriber. With a Python logging configuration, the
/// error log goes to the `gunicorn.error` logger instead.
pub fn init(settings: &LogSettings, python: Option<python::PyLogger>) -> io::Result<()> {
    let level = match settings.level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warning => Level::WARN,
        LogLevel::Error | LogLevel::Critical => Level::ERROR,
    };
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::{Layer as _, SubscriberExt};
    if let Some(logger) = python {
        PYTHON_LOGGING.store(true, std::sync::atomic::Ordering::Relaxed);
        let subscriber = tracing_subscriber::registry()
            .with(python::ToPython { logger, max: level })
            .with(statsd_logs());
        // As `fmt().try_init()` below: also routes the `log` records of crates such as
        // rustls into the same log.
        let _ = tracing_subscriber::util::SubscriberInitExt::try_init(subscriber);
        return Ok(());
    }
    let sink = Sink::open(&settings.errorlog, Sink::Stderr)?;
    if settings.capture_output {
        capture_output(&sink)?;
    }
    if crate::metrics::statsd::global().is_some() {
        let fmt = tracing_subscriber::fmt::layer()
            .event_format(GunicornFormat {
                pid: std::process::id(),
            })
            .with_writer(sink)
            .with_filter(LevelFilter::from_level(level));
        let subscriber = tracing_subscriber::registry().with(fmt).with(statsd_logs());
        // As `fmt().try_init()` below: also routes the `log` records of crates such as
        // rustls into the same log.
        let _ = tracing_subscriber::util::SubscriberInitExt::try_init(subscriber);
        return Ok(());
    }
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(GunicornFormat {
            pid: std::process::id(),
        })
        .with_writer(sink)
        .try_init();
    Ok(())
}

/// With StatsD, error and warning lines also count in `gunicorn.log.*`, whatever the level.
fn statsd_logs<S>() -> Option<impl tracing_subscriber::Layer<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use tracing_subscriber::layer::Layer as _;
    crate::metrics::statsd::global()
        .map(|s| StatsdLogs(s.clone()).with_filter(tracing_subscriber::filter::LevelFilter::WARN))
}

/// Counts error-log lines in StatsD as gunicorn's `Statsd` logger does: `log.exception` for an
/// error with a traceback, `log.critical`, `log.error`, `log.warning`.
struct StatsdLogs(crate::metrics::Statsd);

impl<S: Subscriber> tracing_subscriber::Layer<S> for StatsdLogs {
    fn on_event(&self, event: &Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        use crate::metrics::statsd::{LogKind, CRITICAL_TARGET, EXCEPTION_TARGET};
        let meta = event.metadata();
        let kind = match (*meta.level(), meta.target()) {
            (_, EXCEPTION_TARGET) => LogKind::Exception,
            (_, CRITICAL_TARGET) => LogKind::Critical,
            (Level::ERROR, _) => LogKind::Error,
            (Level::WARN, _) => LogKind::Warning,
            _ => return,
        };
        self.0.log(kind);
    }
}

/// `--capture-output`: the process's stdout and stderr (and so the app's `print`) go where the
/// error log goes. As in gunicorn, a file error log takes both; with the error log on stderr,
/// stdout joins it there.
fn capture_output(sink: &Sink) -> io::Result<()> {
    match sink {
        Sink::File(file) => {
            nix::unistd::dup2_stdout(&**file)?;
            nix::unistd::dup2_stderr(&**file)?;
            if let Ok(mut captured) = CAPTURED.lock() {
                *captured = Some(file.clone());
            }
        }
        _ => nix::unistd::dup2_stdout(io::stderr())?,
    }
    Ok(())
}

/// Whether lines on stderr may carry colors: it is a terminal and `NO_COLOR` is not set (see
/// no-color.org).
pub fn stderr_colors() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
