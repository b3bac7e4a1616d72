//! Local development (`--dev`, `--reload`), in a worker process: which files to watch (the
//! modules the app imported from the project, found in `sys.modules`, and the files of a
//! failed import's traceback), the error page served while the app cannot be imported, and
//! the startup banner. The watcher itself (`watch`) knows no Python; swapping the process for a
//! fresh one when a file changes is the supervisor's job (`lifecycle`).

mod banner;
pub mod error_page;
pub mod watch;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

pub use banner::print_banner;
pub use error_page::ErrorPage;
pub use watch::Watch;

use crate::config::Settings;

/// Where the project's own modules live: the working directory (after `--chdir`) and the
/// `--pythonpath` entries. Installed packages are never part of it, even inside it (a
/// `.venv` in the project).
fn roots(settings: &Settings) -> Vec<PathBuf> {
    let cwd = current_dir();
    let mut roots = vec![cwd.clone()];
    roots.extend(settings.app.pythonpath.iter().map(|p| cwd.join(p)));
    roots
        .into_iter()
        .map(|r| r.canonicalize().unwrap_or(r))
        .collect()
}

/// The project's roots, and where Python's own library lives (never part of the project,
/// even when ferrocorn runs from a directory above it).
struct Project {
    roots: Vec<PathBuf>,
    stdlib: Vec<PathBuf>,
}

impl Project {
    fn new(py: Python<'_>, settings: &Settings) -> Project {
        let stdlib = ["stdlib", "platstdlib"]
            .iter()
            .filter_map(|name| {
                let paths = py
                    .import("sysconfig")
                    .ok()?
                    .call_method0("get_paths")
                    .ok()?;
                let path: PathBuf = paths.get_item(name).ok()?.extract().ok()?;
                path.canonicalize().ok()
            })
            .collect();
        Project {
            roots: roots(settings),
            stdlib,
        }
    }

    fn contains(&self, file: &Path) -> bool {
        let installed = file.components().any(|c| {
            let c = c.as_os_str();
            c == "site-packages" || c == "dist-packages"
        });
        !installed
            && !self.stdlib.iter().any(|s| file.starts_with(s))
            && self.roots.iter().any(|r| file.starts_with(r))
    }
}

/// The `.py` files of the imported modules in the project.
fn module_files(py: Python<'_>, project: &Project) -> Vec<PathBuf> {
    let Ok(modules) = py
        .import(intern!(py, "sys"))
        .and_then(|sys| sys.getattr(intern!(py, "modules")))
    else {
        return Vec::new();
    };
    let Ok(modules) = modules.cast::<PyDict>() else {
        return Vec::new();
    };
    // A copy: imports on other threads may change the dict meanwhile.
    modules
        .values()
        .iter()
        .filter_map(|m| {
            m.getattr(intern!(py, "__file__"))
                .ok()?
                .extract::<PathBuf>()
                .ok()
        })
        .filter(|f| f.extension().is_some_and(|e| e == "py"))
        .filter_map(|f| f.canonicalize().ok())
        .filter(|f| project.contains(f))
        .collect()
}

fn module_count(py: Python<'_>) -> usize {
    py.import(intern!(py, "sys"))
        .and_then(|sys| sys.getattr(intern!(py, "modules"))?.len())
        .unwrap_or(0)
}

fn current_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// `--reload` workers write no bytecode: CPython trusts a cached `.pyc` whose source has the
/// same size and the same mtime in whole seconds, so an edit within the second of the last
/// import could otherwise load the old code.
pub fn no_bytecode(py: Python<'_>) {
    if let Err(err) = py
        .import("sys")
        .and_then(|sys| sys.setattr("dont_write_bytecode", true))
    {
        tracing::debug!("cannot turn bytecode writing off: {err}");
    }
}

/// Starts watching for `--reload`: the project's imported modules (and those imported later),
/// the files of `failure`'s traceback, and `--reload-extra-file`. `since` is when this process
/// started, so a change made while the app was importing is not missed. `None` (logged) when
/// nothing can be watched.
pub fn watch(
    py: Python<'_>,
    settings: &Settings,
    failure: Option<&str>,
    since: SystemTime,
) -> Option<Watch> {
    let reload = settings.dev.reload.as_ref()?;
    let project = Project::new(py, settings);
    let mut files = module_files(py, &project);
    if let Some(tb) = failure {
        files.extend(
            error_page::traceback_files(tb)
                .into_iter()
                .filter(|f| f.canonicalize().is_ok_and(|f| project.contains(&f))),
        );
    }
    let dirs = project.roots.clone();
    let mut seen = module_count(py);
    let more = Box::new(move || {
        // `None` once the interpreter is shutting down.
        Python::try_attach(|py| {
            let now = module_count(py);
            if now == seen {
                return None;
            }
            seen = now;
            Some(module_files(py, &project))
        })
        .flatten()
    });
    let cwd = current_dir();
    let extra = &reload.extra_files;
    match py.detach(|| Watch::start(reload.engine, files, dirs, extra, &cwd, since, more)) {
        Ok(w) => {
            tracing::debug!("Watching {} files for changes ({})", w.files, w.engine);
            Some(w)
        }
        Err(err) => {
            tracing::error!("--reload: {err}");
            None
        }
    }
}
