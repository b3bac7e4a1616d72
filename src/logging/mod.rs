//! Logging as gunicorn users read it. The error log is a `tracing` subscriber whose lines look
//! like `[2026-11-24 09:00:00 +0000] [1234] [INFO] Listening at: …`; the access log is
//! `access::AccessLog`, rendered from a format compiled once. This module owns where lines go
//! (stderr, stdout, a file); it does not decide what is worth logging.

pub mod access;
mod clock;

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
pub(crate) use clock::Civil;

/// Where a log's lines go. Each line is written with one `write_all`, so lines from several
/// threads never interleave within a line (files are opened with `O_APPEND`).
#[derive(Debug, Clone)]
pub enum Sink {
    Stdout,
    Stderr,
    File(Arc<File>),
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

/// Installs the error log for this process. Called once by `lifecycle`; a second call (tests
/// that start several servers in one process) keeps the first subscriber.
pub fn init(settings: &LogSettings) -> io::Result<()> {
    let sink = Sink::open(&settings.errorlog, Sink::Stderr)?;
    let level = match settings.level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warning => Level::WARN,
        LogLevel::Error | LogLevel::Critical => Level::ERROR,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(GunicornFormat {
            pid: std::process::id(),
        })
        .with_writer(sink)
        .try_init();
    Ok(())
}
