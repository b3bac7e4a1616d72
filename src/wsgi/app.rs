//! Finding and importing the app: `module:callable`, `module` (callable `application`), or
//! `module:factory(args)` with literal arguments, parsed with Python's own `ast` as gunicorn
//! does. Failures carry the Python traceback and a hint; `error::exit_code` turns them into
//! gunicorn's "App failed to load" status.

use std::path::{Path, PathBuf};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::response::format_exception;
use crate::config::AppSettings;

/// Why the app could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{traceback}\nHint: could not import '{module}'. Is it on the Python path? Run ferrocorn from your project's directory, or point at it with --chdir or --pythonpath (searched: {searched}).")]
    Import {
        module: String,
        traceback: String,
        searched: String,
    },
    #[error("Failed to parse '{0}' as an attribute name or function call.")]
    BadSpec(String),
    #[error("Failed to find attribute '{attr}' in '{module}'.")]
    NoAttribute { attr: String, module: String },
    #[error("{traceback}\nHint: the app factory '{spec}' raised while building the app.")]
    Factory { spec: String, traceback: String },
    #[error("Application object must be callable.")]
    NotCallable,
    #[error("Cannot set the environment from --env: {0}")]
    Environ(String),
    #[error("Cannot change directory to {}: {err}", path.display())]
    Chdir { path: PathBuf, err: std::io::Error },
    #[error("{traceback}\nHint: the project's URLconf (or a view it imports) failed to import.")]
    Urlconf { traceback: String },
    #[error("{traceback}\nHint: the Django settings '{settings}' (named by manage.py or DJANGO_SETTINGS_MODULE) could not be read; is Django installed in this environment?")]
    DjangoSettings { settings: String, traceback: String },
}

/// Imports the app the settings name; returns it with its spec (for a Django project found by
/// its `manage.py`, the spec its `WSGI_APPLICATION` gives).
pub fn load_app(py: Python<'_>, settings: &AppSettings) -> Result<(Py<PyAny>, String), AppError> {
    let spec = match &settings.django_settings {
        Some(module) => super::django::app_spec(py, module)?,
        None => settings.spec.clone(),
    };
    load(py, &spec).map(|app| (app, spec))
}

/// Prepares the process for importing the app like gunicorn: `-e` variables into `os.environ`,
/// `--chdir` first, its directory at the front of `sys.path`, then each `--pythonpath` entry.
pub fn prepare(py: Python<'_>, settings: &AppSettings) -> Result<(), AppError> {
    set_environ(py, &settings.raw_env).map_err(|e| AppError::Environ(e.to_string()))?;
    let pythonpath = &settings.pythonpath;
    if let Some(dir) = settings.chdir.as_deref() {
        std::env::set_current_dir(dir).map_err(|err| AppError::Chdir {
            path: dir.into(),
            err,
        })?;
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let insert = |p: &Path| -> PyResult<()> {
        let sys_path = py
            .import(intern!(py, "sys"))?
            .getattr(intern!(py, "path"))?;
        let sys_path = sys_path.cast::<PyList>()?;
        let s = p.to_string_lossy();
        if !sys_path.contains(&*s)? {
            sys_path.insert(0, &*s)?;
        }
        Ok(())
    };
    let _ = insert(&cwd);
    for p in pythonpath.iter().rev() {
        let _ = insert(&cwd.join(p));
    }
    Ok(())
}

/// Puts `-e KEY=VALUE` pairs in `os.environ` (which also sets the process environment).
fn set_environ(py: Python<'_>, pairs: &[(String, String)]) -> PyResult<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let environ = py.import("os")?.getattr("environ")?;
    for (k, v) in pairs {
        environ.set_item(k, v)?;
    }
    Ok(())
}

/// Imports the app named by `spec`.
pub fn load<'py>(py: Python<'py>, spec: &str) -> Result<Py<PyAny>, AppError> {
    let (module_name, expr) = match spec.split_once(':') {
        Some((m, e)) => (m.trim(), e.trim()),
        None => (spec.trim(), "application"),
    };
    // Through importlib, as gunicorn does: the traceback then shows where the import failed.
    let module = py
        .import(intern!(py, "importlib"))
        .and_then(|importlib| importlib.call_method1(intern!(py, "import_module"), (module_name,)))
        .map_err(|err| AppError::Import {
            module: module_name.to_string(),
            traceback: format_exception(py, &err).trim_end().to_string(),
            searched: search_path(py),
        })?;
    let bad_spec = || AppError::BadSpec(expr.to_string());
    let ast = py.import(intern!(py, "ast")).map_err(|_| bad_spec())?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("mode", "eval").map_err(|_| bad_spec())?;
    let body = ast
        .call_method("parse", (expr,), Some(&kwargs))
        .and_then(|tree| tree.getattr("body"))
        .map_err(|_| bad_spec())?;
    let is = |node: &Bound<'_, PyAny>, kind: &str| -> bool {
        ast.getattr(kind)
            .and_then(|k| node.is_instance(&k))
            .unwrap_or(false)
    };
    let attr_of = |name: &Bound<'_, PyAny>| -> Result<(String, Bound<'_, PyAny>), AppError> {
        let attr: String = name
            .getattr("id")
            .and_then(|i| i.extract())
            .map_err(|_| bad_spec())?;
        let obj = module
            .getattr(attr.as_str())
            .map_err(|_| AppError::NoAttribute {
                attr: attr.clone(),
                module: module_name.to_string(),
            })?;
        Ok((attr, obj))
    };

    let app = if is(&body, "Name") {
        attr_of(&body)?.1
    } else if is(&body, "Call") {
        let func = body.getattr("func").map_err(|_| bad_spec())?;
        if !is(&func, "Name") {
            return Err(bad_spec());
        }
        let (_, factory) = attr_of(&func)?;
        let literal = |node: Bound<'py, PyAny>| ast.call_method1("literal_eval", (node,));
        let args: Vec<Bound<'_, PyAny>> = body
            .getattr("args")
            .and_then(|a| a.try_iter()?.map(|n| literal(n?)).collect())
            .map_err(|_| bad_spec())?;
        let kw = PyDict::new(py);
        for keyword in body
            .getattr("keywords")
            .and_then(|k| k.try_iter())
            .map_err(|_| bad_spec())?
        {
            let keyword = keyword.map_err(|_| bad_spec())?;
            let name = keyword.getattr("arg").map_err(|_| bad_spec())?;
            let value = keyword
                .getattr("value")
                .and_then(literal)
                .map_err(|_| bad_spec())?;
            kw.set_item(name, value).map_err(|_| bad_spec())?;
        }
        let args = pyo3::types::PyTuple::new(py, args).map_err(|_| bad_spec())?;
        factory
            .call(args, Some(&kw))
            .map_err(|err| AppError::Factory {
                spec: spec.to_string(),
                traceback: format_exception(py, &err).trim_end().to_string(),
            })?
    } else {
        return Err(bad_spec());
    };
    if !app.is_callable() {
        return Err(AppError::NotCallable);
    }
    Ok(app.unbind())
}

fn search_path(py: Python<'_>) -> String {
    py.import(intern!(py, "sys"))
        .and_then(|s| s.getattr("path"))
        .and_then(|p| p.extract::<Vec<String>>())
        .map(|p| {
            p.into_iter()
                .filter(|s| !s.is_empty())
                .take(4)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
