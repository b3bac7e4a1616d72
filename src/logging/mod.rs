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
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(spec))?;
        Ok(Sink::File(Arc::new(file)))
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
    if let Some(logger) = python {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber =
            tracing_subscriber::registry().with(python::ToPython { logger, max: level });
        let _ = tracing::subscriber::set_global_default(subscriber);
        return Ok(());
    }
    let sink = Sink::open(&settings.errorlog, Sink::Stderr)?;
    if settings.capture_output {
        capture_output(&sink)?;
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

/// `--capture-output`: the process's stdout and stderr (and so the app's `print`) go where the
/// error log goes. As in gunicorn, a file error log takes both; with the error log on stderr,
/// stdout joins it there.
fn capture_output(sink: &Sink) -> io::Result<()> {
    match sink {
        Sink::File(file) => {
            nix::unistd::dup2_stdout(&**file)?;
            nix::unistd::dup2_stderr(&**file)?;
        }
        _ => nix::unistd::dup2_stdout(io::stderr())?,
    }
    Ok(())
}
