//! The `--dev` startup banner: what is served, by which Python (and Django), with how many
//! threads, whether it reloads, and the URL to open (a terminal hyperlink when stderr is a
//! terminal). Printed once, by the first worker process once it serves.

use std::fmt::Write as _;

use pyo3::prelude::*;

use super::Watch;
use crate::config::Settings;

/// Prints the banner to stderr.
pub fn print_banner(
    py: Python<'_>,
    settings: &Settings,
    spec: &str,
    urls: &[String],
    watch: Option<&Watch>,
    failed: bool,
) {
    let color = crate::logging::stderr_colors();
    let bold = |s: &str| {
        if color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let python = py
        .import("sys")
        .and_then(|s| s.getattr("version"))
        .and_then(|v| v.extract::<String>())
        .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n  {} {} (development server)",
        bold("ferrocorn"),
        env!("CARGO_PKG_VERSION")
    );
    let mut versions = format!("Python {python}");
    if let Some(django) = crate::wsgi::django::version(py) {
        let _ = write!(versions, ", Django {django}");
    }
    let _ = writeln!(out, "  {versions}");
    let _ = writeln!(out, "  App:    {spec}");
    if let Some(named) = &settings.app.django_settings {
        // manage.py only sets a default; the environment may have named other settings.
        let used = std::env::var("DJANGO_SETTINGS_MODULE").unwrap_or_else(|_| named.clone());
        let line = if &used == named {
            format!("found by manage.py: DJANGO_SETTINGS_MODULE={used}, WSGI_APPLICATION")
        } else {
            format!("DJANGO_SETTINGS_MODULE={used} from the environment (manage.py names {named})")
        };
        let _ = writeln!(out, "          {line}");
    }
    if failed {
        let _ = writeln!(
            out,
            "          failed to import: its traceback is served until a change fixes it"
        );
    }
    let pool = &settings.pool;
    let _ = writeln!(
        out,
        "  Pool:   {} threads ({} workers x {} threads){}",
        pool.size,
        pool.workers,
        pool.threads,
        match settings.process.processes {
            1 => String::new(),
            p => format!(" in each of {p} processes"),
        }
    );
    if let Some(w) = watch {
        let _ = writeln!(
            out,
            "  Reload: on ({}), watching {} files",
            w.engine, w.files
        );
    }
    for url in urls {
        let shown = browsable(url);
        let link = if color && shown.starts_with("http") {
            format!("\x1b]8;;{shown}\x1b\\{}\x1b]8;;\x1b\\", bold(&shown))
        } else {
            shown
        };
        let _ = writeln!(out, "  Open:   {link}");
    }
    let _ = writeln!(out, "  Quit with Ctrl-C.\n");
    eprint!("{out}");
}

/// `http://0.0.0.0:8000` (all interfaces) as a browser can open it, with the trailing slash.
fn browsable(url: &str) -> String {
    let url = url
        .replacen("://0.0.0.0:", "://127.0.0.1:", 1)
        .replacen("://[::]:", "://[::1]:", 1);
    if url.starts_with("http") {
        format!("{url}/")
    } else {
        url
    }
}
