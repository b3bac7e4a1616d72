//! Calling the config file's server hooks at the moments gunicorn calls them, with arguments
//! that look enough like gunicorn's to run hook code written for it: `server` (`cfg`, `pid`,
//! `num_workers`, `log`, `proc_name`), `worker` (`pid`, `ppid`, `age`, `alive`, `cfg`, `log`),
//! `req` (`method`, `path`, `query`, `uri`, `version`, `headers` with upper-cased names, ...)
//! and `resp` (`status`, `status_code`, `response_length`). A hook that raises is logged with
//! its traceback and the server goes on. Which hooks exist and their arities is
//! `config::hooks`' table; this module only calls them.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::config::python::positional_arity;
use crate::config::{HookFn, Settings};
use crate::wsgi::{Around, RequestView};

/// The loaded hooks and what their arguments are made of. Holds only immutable Python objects
/// (a namespace built once), so it is shared by every thread as is.
pub struct Hooks {
    fns: Vec<(&'static str, Py<PyAny>, usize)>,
    cfg: Py<PyAny>,
    proc_name: String,
}

/// The error log, for hook code that calls `server.log.info(...)` as in gunicorn.
#[pyclass(frozen, module = "ferrocorn", name = "Log")]
pub struct HookLog;

fn render(msg: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<String> {
    if args.is_empty() {
        Ok(msg.str()?.to_string())
    } else {
        let args = if args.len() == 1 {
            args.get_item(0)?
        } else {
            args.clone().into_any()
        };
        Ok(msg.rem(args)?.str()?.to_string())
    }
}

#[pymethods]
impl HookLog {
    #[pyo3(signature = (msg, *args, **_kw))]
    fn debug(
        &self,
        msg: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        _kw: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        tracing::debug!("{}", render(msg, args)?);
        Ok(())
    }

    #[pyo3(signature = (msg, *args, **_kw))]
    fn info(
        &self,
        msg: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        _kw: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        tracing::info!("{}", render(msg, args)?);
        Ok(())
    }

    #[pyo3(signature = (msg, *args, **_kw))]
    fn warning(
        &self,
        msg: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        _kw: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        tracing::warn!("{}", render(msg, args)?);
        Ok(())
    }

    #[pyo3(signature = (msg, *args, **_kw))]
    fn error(
        &self,
        msg: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        _kw: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        tracing::error!("{}", render(msg, args)?);
        Ok(())
    }

    #[pyo3(signature = (msg, *args, **_kw))]
    fn critical(
        &self,
        msg: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        _kw: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        tracing::error!(target: crate::metrics::statsd::CRITICAL_TARGET, "{}", render(msg, args)?);
        Ok(())
    }

    /// Logs at error level with the traceback of the exception being handled.
    #[pyo3(signature = (msg, *args, **_kw))]
    fn exception(
        &self,
        py: Python<'_>,
        msg: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        _kw: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let tb: String = py
            .import("traceback")?
            .call_method0("format_exc")?
            .extract()?;
        tracing::error!(
            target: crate::metrics::statsd::EXCEPTION_TARGET,
            "{}\n{}",
            render(msg, args)?,
            tb.trim_end()
        );
        Ok(())
    }
}

impl Hooks {
    /// Prepares the hooks of `settings`; `None` when the config file defines none.
    pub fn new(py: Python<'_>, settings: &Settings) -> PyResult<Option<Arc<Hooks>>> {
        if settings.hooks.is_empty() {
            return Ok(None);
        }
        let fns = settings
            .hooks
            .iter()
            .map(|HookFn { hook, func, .. }| {
                let func = func.clone_ref(py);
                let arity = positional_arity(py, func.bind(py)).unwrap_or(hook.arities[0]);
                (hook.name, func, arity)
            })
            .collect();
        // Values as `--print-config` shows them, read back into Python objects (lists, numbers,
        // booleans, None); anything else stays a string.
        let literal = py.import("ast")?.getattr("literal_eval")?;
        let values = PyDict::new(py);
        for (name, shown) in &settings.values {
            let value = literal.call1((shown,)).unwrap_or_else(|_| {
                shown
                    .into_pyobject(py)
                    .map_or_else(|_| py.None().into_bound(py), |s| s.into_any())
            });
            values.set_item(name, value)?;
        }
        let cfg = namespace(py, &values)?;
        Ok(Some(Arc::new(Hooks {
            fns,
            cfg: cfg.unbind(),
            proc_name: settings
                .process
                .proc_name
                .clone()
                .unwrap_or_else(|| settings.app.spec.clone()),
        })))
    }

    pub fn has(&self, name: &str) -> bool {
        self.fns.iter().any(|(n, ..)| *n == name)
    }

    /// Calls hook `name` (if defined) with as many of `args` as it takes; logs what it raises.
    pub fn call(&self, py: Python<'_>, name: &str, args: &[Bound<'_, PyAny>]) {
        let Some((_, func, arity)) = self.fns.iter().find(|(n, ..)| *n == name) else {
            return;
        };
        let take = (*arity).min(args.len());
        let result = PyTuple::new(py, &args[..take]).and_then(|a| func.bind(py).call1(a));
        if let Err(err) = result {
            tracing::error!(
                target: crate::metrics::statsd::EXCEPTION_TARGET,
                "Exception in {name} hook:\n{}",
                crate::config::traceback(py, &err).trim_end()
            );
        }
    }

    /// The `server` argument (gunicorn's arbiter).
    pub fn server<'py>(&self, py: Python<'py>, num_workers: usize) -> Bound<'py, PyAny> {
        let d = PyDict::new(py);
        let _ = d.set_item("cfg", self.cfg.bind(py));
        let _ = d.set_item("pid", std::process::id());
        let _ = d.set_item("num_workers", num_workers);
        let _ = d.set_item("proc_name", &self.proc_name);
        let _ = d.set_item("log", Py::new(py, HookLog).ok());
        namespace(py, &d).unwrap_or_else(|_| py.None().into_bound(py))
    }

    /// The `worker` argument: a worker process, or in single-process mode the process itself.
    pub fn worker<'py>(&self, py: Python<'py>, pid: u32, age: u64) -> Bound<'py, PyAny> {
        let d = PyDict::new(py);
        let _ = d.set_item("pid", pid);
        let _ = d.set_item("ppid", nix::unistd::getppid().as_raw());
        let _ = d.set_item("age", age);
        let _ = d.set_item("alive", true);
        let _ = d.set_item("booted", true);
        let _ = d.set_item("cfg", self.cfg.bind(py));
        let _ = d.set_item("log", Py::new(py, HookLog).ok());
        namespace(py, &d).unwrap_or_else(|_| py.None().into_bound(py))
    }
}

/// `pre_request` and `post_request` around each request, with this process as the worker:
/// one `worker` object, built once, as gunicorn hands its hooks the same worker every time.
pub struct RequestHooks {
    hooks: Arc<Hooks>,
    worker: Py<PyAny>,
}

impl RequestHooks {
    pub fn new(py: Python<'_>, hooks: Arc<Hooks>, age: u64) -> RequestHooks {
        let worker = hooks.worker(py, std::process::id(), age).unbind();
        RequestHooks { hooks, worker }
    }
}

impl Around for RequestHooks {
    fn before(&self, py: Python<'_>, req: &RequestView<'_>) -> Option<Py<PyAny>> {
        let req = request(py, req).ok()?;
        if self.hooks.has("pre_request") {
            let worker = self.worker.bind(py).clone();
            self.hooks.call(py, "pre_request", &[worker, req.clone()]);
        }
        Some(req.unbind())
    }

    fn after(
        &self,
        py: Python<'_>,
        state: Option<Py<PyAny>>,
        environ: Option<&Bound<'_, PyDict>>,
        status: u16,
        bytes: u64,
    ) {
        if !self.hooks.has("post_request") {
            return;
        }
        let Some(req) = state else { return };
        let resp = PyDict::new(py);
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let _ = resp.set_item(
            "status",
            format!("{status} {reason}").trim_end().to_string(),
        );
        let _ = resp.set_item("status_code", status);
        let _ = resp.set_item("response_length", bytes);
        let _ = resp.set_item("sent", bytes);
        let Ok(resp) = namespace(py, &resp) else {
            return;
        };
        let environ = environ.map_or_else(|| py.None().into_bound(py), |e| e.clone().into_any());
        let worker = self.worker.bind(py).clone();
        self.hooks.call(
            py,
            "post_request",
            &[worker, req.into_bound(py), environ, resp],
        );
    }
}

/// gunicorn's `Request` as hooks read it.
fn request<'py>(py: Python<'py>, view: &RequestView<'_>) -> PyResult<Bound<'py, PyAny>> {
    let parts = view.parts;
    let uri = view
        .raw_target
        .map(str::to_string)
        .unwrap_or_else(|| parts.uri.to_string());
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (uri.clone(), String::new()),
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q.to_string(), f.to_string()),
        None => (query, String::new()),
    };
    let headers = PyList::empty(py);
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.append((name.as_str().to_ascii_uppercase(), value))?;
    }
    let version = match parts.version {
        http::Version::HTTP_10 => (1, 0),
        http::Version::HTTP_09 => (0, 9),
        _ => (1, 1),
    };
    let d = PyDict::new(py);
    d.set_item("method", parts.method.as_str())?;
    d.set_item("uri", &uri)?;
    d.set_item("path", path)?;
    d.set_item("query", query)?;
    d.set_item("fragment", fragment)?;
    d.set_item("version", version)?;
    d.set_item("headers", headers)?;
    d.set_item("scheme", view.conn.url_scheme)?;
    let peer = (
        view.conn.remote_addr.as_str(),
        view.conn.remote_port.as_str(),
    );
    d.set_item("remote_addr", peer)?;
    d.set_item("peer_addr", peer)?;
    namespace(py, &d)
}

fn namespace<'py>(py: Python<'py>, d: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyAny>> {
    py.import("types")?
        .getattr("SimpleNamespace")?
        .call((), Some(d))
}
