//! The config file, which is Python: `gunicorn.conf.py`, `ferrocorn.conf.py`, `file:PATH` or
//! `python:MODULE`. It is executed as gunicorn executes it; each module-level name that is a
//! setting becomes raw values in a [`Layer`], checked with that setting's own validator from the
//! table; each name that is a server hook becomes a [`HookFn`] after its arity is checked; other
//! names are ignored. This is the only part of `config` that touches Python.

use std::sync::Arc;

use clap::{Arg, Command};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};

use super::hooks::Hook;
use super::sources::{check_value, takes_values, Layer};
use super::ConfigError;

/// A hook function from the config file.
#[derive(Clone)]
pub struct HookFn {
    pub hook: &'static Hook,
    pub func: Arc<Py<PyAny>>,
    /// `module.qualname`, for `--print-config`.
    pub qualname: String,
}

impl std::fmt::Debug for HookFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}()>", self.qualname)
    }
}

/// What a config file gave.
#[derive(Debug, Default)]
pub struct ConfigFile {
    pub layer: Layer,
    pub hooks: Vec<HookFn>,
}

/// Executes the config file at `location` and reads its settings against `cmd`'s table.
pub fn read(py: Python<'_>, location: &str, cmd: &Command) -> Result<ConfigFile, ConfigError> {
    let namespace = execute(py, location)?;
    let mut file = ConfigFile::default();
    for (key, value) in namespace.iter() {
        let Ok(name) = key.extract::<String>() else {
            continue;
        };
        if let Some(hook) = Hook::find(&name) {
            if !value.is_none() {
                file.hooks.push(hook_fn(py, hook, &value)?);
            }
            continue;
        }
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == name.as_str()) else {
            continue;
        };
        let invalid = |reason: String| ConfigError::Invalid {
            name: name.clone(),
            value: repr(&value),
            reason,
        };
        let Some(values) = raw_values(py, &name, arg, &value).map_err(invalid)? else {
            continue;
        };
        for v in &values {
            check(cmd, arg, v).map_err(invalid)?;
        }
        file.layer.set(&name, values);
    }
    Ok(file)
}

/// Runs the file (or imports the module) and returns its namespace, or the traceback.
fn execute<'py>(py: Python<'py>, location: &str) -> Result<Bound<'py, PyDict>, ConfigError> {
    let failed = |err: PyErr| ConfigError::FileFailed {
        path: location.to_string(),
        traceback: traceback(py, &err),
    };
    if let Some(module) = location.strip_prefix("python:") {
        let module = py.import(module).map_err(failed)?;
        return Ok(module.dict());
    }
    let path = location.strip_prefix("file:").unwrap_or(location);
    if !std::path::Path::new(path).exists() {
        return Err(ConfigError::FileMissing(path.to_string()));
    }
    let run = || -> PyResult<Bound<'py, PyDict>> {
        let util = py.import("importlib.util")?;
        let machinery = py.import("importlib.machinery")?;
        // A file without a .py suffix still runs as Python, as in gunicorn.
        let loader = machinery
            .getattr("SourceFileLoader")?
            .call1(("__config__", path))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("loader", loader)?;
        let spec = util
            .getattr("spec_from_file_location")?
            .call(("__config__", path), Some(&kwargs))?;
        let module = util.getattr("module_from_spec")?.call1((&spec,))?;
        py.import("sys")?
            .getattr("modules")?
            .set_item("__config__", &module)?;
        spec.getattr("loader")?
            .call_method1("exec_module", (&module,))?;
        Ok(module.getattr("__dict__")?.cast_into::<PyDict>()?)
    };
    run().map_err(failed)
}

/// The raw values of one setting, or `None` when the file leaves it at its default.
fn raw_values(
    py: Python<'_>,
    name: &str,
    arg: &Arg,
    value: &Bound<'_, PyAny>,
) -> Result<Option<Vec<String>>, String> {
    if value.is_none() {
        return Ok(None);
    }
    if !takes_values(arg) {
        // A flag: given when the file asks for what the flag does (`sendfile = False` gives
        // `--no-sendfile`).
        let on = python_bool(value)?;
        let flag_means = !matches!(arg.get_action(), clap::ArgAction::SetFalse);
        return Ok((on == flag_means).then(Vec::new));
    }
    if value.is_instance_of::<PyBool>() {
        // An option whose bare flag means something (`--http2-cleartext`, `--proxy-protocol`):
        // True is the bare flag, False the default (gunicorn reads `http2_cleartext = True`
        // so).
        if let (Some(long), true) = (
            arg.get_long(),
            arg.get_num_args().is_some_and(|n| n.min_values() == 0),
        ) {
            // clap does not show an option's bare-flag value; parsing the bare flag does.
            let flag = format!("--{long}");
            let values = match python_bool(value)? {
                true => clap::Command::new("x")
                    .arg(arg.clone())
                    .try_get_matches_from(["x", flag.as_str()])
                    .ok()
                    .and_then(|m| {
                        let raw = m.get_raw(arg.get_id().as_str())?;
                        Some(raw.map(|v| v.to_string_lossy().into_owned()).collect())
                    })
                    .unwrap_or_default(),
                false => arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
            };
            return Ok(Some(values));
        }
        return Err("expected a value, not True or False".into());
    }
    if name == "logconfig_dict" {
        if !value.is_instance_of::<PyDict>() {
            return Err("expected a dict".into());
        }
        let json = py
            .import("json")
            .and_then(|j| j.call_method1("dumps", (value,)))
            .and_then(|s| s.extract::<String>())
            .map_err(|e| e.to_string())?;
        return Ok(Some(vec![json]));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut pairs = Vec::new();
        for (k, v) in dict.iter() {
            pairs.push(format!("{}={}", scalar(&k)?, scalar(&v)?));
        }
        return Ok(Some(vec![pairs.join(",")]));
    }
    let items: Option<Vec<Bound<'_, PyAny>>> = if let Ok(list) = value.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    };
    let multiple = matches!(arg.get_action(), clap::ArgAction::Append);
    Ok(Some(match items {
        Some(items) => {
            let items = items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
            match multiple {
                true => items,
                // A list for a comma-separated setting (`forwarded_allow_ips = [...]`).
                false => vec![items.join(",")],
            }
        }
        None => vec![scalar(value)?],
    }))
}

/// A string, an integer, or a class (`worker_class = MyWorker`) as its dotted name.
fn scalar(value: &Bound<'_, PyAny>) -> Result<String, String> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_string());
    }
    if value.is_instance_of::<PyBool>() {
        return Err("expected a string or a number".into());
    }
    if value.is_instance_of::<pyo3::types::PyInt>()
        || value.is_instance_of::<pyo3::types::PyFloat>()
    {
        return Ok(value.str().map_err(|e| e.to_string())?.to_string());
    }
    if value.is_instance_of::<pyo3::types::PyType>() {
        return Ok(dotted_name(value));
    }
    Err(format!(
        "expected a string or a number, not {}",
        value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    ))
}

fn python_bool(value: &Bound<'_, PyAny>) -> Result<bool, String> {
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(b.is_true());
    }
    match value
        .extract::<String>()
        .map(|s| s.trim().to_ascii_lowercase())
    {
        Ok(s) if s == "true" => Ok(true),
        Ok(s) if s == "false" => Ok(false),
        _ => Err("expected True or False".into()),
    }
}

fn check(cmd: &Command, arg: &Arg, value: &str) -> Result<(), String> {
    check_value(cmd, arg, value).map_err(|e| clap_reason(&e))
}

/// The useful part of a clap validation error: the validator's reason or the possible values.
pub fn clap_reason(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    if let Some((_, reason)) = first.split_once(">': ") {
        return reason.trim().to_string();
    }
    if let Some(values) = text.lines().find(|l| l.contains("[possible values")) {
        return values.trim().to_string();
    }
    first.trim_start_matches("error: ").trim().to_string()
}

/// Checks a hook value (a callable, or a dotted path to one) against the hook's arity.
fn hook_fn(
    py: Python<'_>,
    hook: &'static Hook,
    value: &Bound<'_, PyAny>,
) -> Result<HookFn, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: hook.name.to_string(),
        value: repr(value),
        reason,
    };
    let func = match value.extract::<String>() {
        Ok(path) => import_dotted(py, &path).map_err(|e| invalid(e.to_string()))?,
        Err(_) => value.clone(),
    };
    if !func.is_callable() {
        return Err(invalid("expected a callable".into()));
    }
    let arity = positional_arity(py, &func).map_err(|e| invalid(e.to_string()))?;
    if !hook.arities.contains(&arity) {
        let wanted = hook
            .arities
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        return Err(invalid(format!(
            "must take {wanted} positional arguments ({}), it takes {arity}",
            hook.params
        )));
    }
    Ok(HookFn {
        hook,
        qualname: dotted_name(&func),
        func: Arc::new(func.unbind()),
    })
}

fn import_dotted<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyAny>> {
    let (module, attr) = path
        .rsplit_once('.')
        .ok_or_else(|| PyTypeError::new_err(format!("'{path}' is not a dotted path")))?;
    py.import(module)?.getattr(attr)
}

/// Counts positional parameters as gunicorn's `util.get_arity` does.
pub fn positional_arity(py: Python<'_>, func: &Bound<'_, PyAny>) -> PyResult<usize> {
    let inspect = py.import("inspect")?;
    let kinds = (
        inspect.getattr("Parameter")?.getattr("POSITIONAL_ONLY")?,
        inspect
            .getattr("Parameter")?
            .getattr("POSITIONAL_OR_KEYWORD")?,
    );
    let params = inspect
        .call_method1("signature", (func,))?
        .getattr("parameters")?
        .call_method0("values")?;
    let mut n = 0;
    for p in params.try_iter()? {
        let kind = p?.getattr("kind")?;
        if kind.eq(&kinds.0)? || kind.eq(&kinds.1)? {
            n += 1;
        }
    }
    Ok(n)
}

fn dotted_name(obj: &Bound<'_, PyAny>) -> String {
    let get = |attr: &str| obj.getattr(attr).and_then(|v| v.extract::<String>()).ok();
    match (get("__module__"), get("__qualname__")) {
        (Some(m), Some(q)) if m != "__config__" => format!("{m}.{q}"),
        (_, Some(q)) => q,
        _ => repr(obj),
    }
}

fn repr(value: &Bound<'_, PyAny>) -> String {
    value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<unprintable>".into())
}

/// A Python exception with its traceback, as `traceback.print_exc()` would print it.
pub fn traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?
        .extract::<Vec<String>>()
    });
    match formatted {
        Ok(lines) => lines.concat(),
        Err(_) => format!("{err}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::CommandFactory;
    use std::io::Write;

    fn read_source(source: &str) -> Result<ConfigFile, ConfigError> {
        let mut file = tempfile(source);
        file.flush().unwrap();
        let path = file_path(&file);
        Python::attach(|py| read(py, &path, &Cli::command()))
    }

    // A tiny temp file without a crate: unique per test through the thread id and a counter.
    struct Temp(std::fs::File, std::path::PathBuf);
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.1);
        }
    }
    impl Write for Temp {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    fn tempfile(source: &str) -> Temp {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ferrocorn-conf-{}-{}.py",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(source.as_bytes()).unwrap();
        Temp(f, path)
    }
    fn file_path(t: &Temp) -> String {
        t.1.display().to_string()
    }

    fn values(file: &ConfigFile, name: &str) -> Vec<String> {
        file.layer.get(name).unwrap_or_default().to_vec()
    }

    #[test]
    fn settings_become_raw_values() {
        let file = read_source(
            "import os\n\
             bind = ['127.0.0.1:9000', 'unix:/tmp/s']\n\
             workers = 2 * 2\n\
             reload = True\n\
             preload_app = False\n\
             sendfile = False\n\
             forwarded_allow_ips = ['10.0.0.1', '10.0.0.2']\n\
             secure_scheme_headers = {'X-SCHEME': 'https'}\n\
             raw_env = 'A=1'\n\
             accesslog = None\n\
             helper = 'not a setting'\n",
        )
        .unwrap();
        assert_eq!(values(&file, "bind"), ["127.0.0.1:9000", "unix:/tmp/s"]);
        assert_eq!(values(&file, "workers"), ["4"]);
        assert_eq!(file.layer.get("reload"), Some(&[][..]));
        assert_eq!(file.layer.get("preload_app"), None);
        assert_eq!(file.layer.get("sendfile"), Some(&[][..]));
        assert_eq!(values(&file, "forwarded_allow_ips"), ["10.0.0.1,10.0.0.2"]);
        assert_eq!(values(&file, "secure_scheme_headers"), ["X-SCHEME=https"]);
        assert_eq!(values(&file, "raw_env"), ["A=1"]);
        assert_eq!(file.layer.get("accesslog"), None);
        assert_eq!(file.layer.get("helper"), None);
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let err = read_source("workers = 'x'\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value for workers: 'x' (not an integer)"
        );
        let err = read_source("reload = 'maybe'\n").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("Invalid value for reload: 'maybe'"));
        let err = read_source("reload_engine = 'kqueue'\n").unwrap_err();
        assert!(err.to_string().contains("possible values"), "{err}");
    }

    #[test]
    fn hooks_are_checked_for_arity() {
        let file = read_source(
            "def on_starting(server): pass\n\
             def post_request(worker, req): pass\n\
             when_ready = None\n",
        )
        .unwrap();
        let names: Vec<_> = file.hooks.iter().map(|h| h.hook.name).collect();
        assert_eq!(names, ["on_starting", "post_request"]);
        let err = read_source("def pre_fork(server): pass\n").unwrap_err();
        assert!(
            err.to_string().contains("must take 2 positional arguments"),
            "{err}"
        );
        let err = read_source("on_exit = 3\n").unwrap_err();
        assert!(err.to_string().contains("expected a callable"), "{err}");
    }

    #[test]
    fn a_broken_file_gives_its_traceback() {
        match read_source("workers = (\n") {
            Err(ConfigError::FileFailed { traceback, .. }) => {
                assert!(traceback.contains("SyntaxError"), "{traceback}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Python::attach(|py| read(py, "/nonexistent/x.py", &Cli::command())),
            Err(ConfigError::FileMissing(_))
        ));
    }
}
