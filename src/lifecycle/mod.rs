//! The server's life, in the roles a ferrocorn process can have, with the lines gunicorn users
//! know at each step:
//! - **single** (the default): one process binds, imports the app, serves, and handles every
//!   signal itself. Its first SIGHUP starts a new generation process on the same sockets; once
//!   that one is ready, this process drains and stays on as its supervisor.
//! - **supervisor** (`--processes P`, or a single process after SIGHUP): binds, starts worker
//!   processes and keeps them running (`supervisor`).
//! - **worker**: a process the supervisor started; serves on inherited sockets and reports to
//!   its parent over a socket pair (`spawn`).
//!
//! This module owns the order of startup and shutdown and one `handle_<signal>` per signal; what
//! each step does belongs to `server`, `pool`, `wsgi` and `logging`.

pub mod hooks;
mod observe;
mod pidfile;
mod process;
mod signals;
mod spawn;
mod supervisor;
pub mod systemd;

pub use pidfile::PidFileError;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::Pid;
use pyo3::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{BindAddr, LogSettings, Mode, Settings};
use crate::error::StartupError;
use crate::http::guard::Limits;
use crate::http::worker::Job;
use crate::http::{Budget, Shared, WsgiWorker};
use crate::logging::python::PyLogger;
use crate::logging::{self, AccessLog, Sink};
use crate::metrics::aggregate::{self, Aggregate};
use crate::metrics::{Metrics, Readiness, HEALTH};
use crate::pool::{Pool, PoolOptions, Recycle};
use crate::server::Bound as Listener;
use crate::server::{self, Backlog, BindOptions, ConnOptions, Finish, Kind, Running};
use crate::wsgi::{self, HeaderPolicy, Statics};
use hooks::{Hooks, RequestHooks};
use observe::Observe;
use process::Owner;
use signals::{Sig, Signals};
use spawn::{Inherited, Launch, Report};

/// How long a quick stop waits for pool threads to let go of Python.
const QUICK_STOP_WAIT: Duration = Duration::from_millis(200);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything stopped; exit with this status.
    Code(i32),
    /// Pool threads were still busy in the app at exit: exit 0 without finalizing Python.
    Busy,
}

/// Runs the server (or the check `settings.mode` asks for) to completion. `argv` is the
/// command line as given, for starting further ferrocorn processes.
pub fn run(py: Python<'_>, settings: Settings, argv: &[String]) -> Result<Exit, StartupError> {
    if settings.mode != Mode::Serve {
        return check(py, &settings).map(|()| Exit::Code(0));
    }
    // Before any thread starts, so that all inherit it (worker processes too).
    let batch = settings.process.sched_batch.then(process::batch_scheduling);
    let python = |err: PyErr| StartupError::Python(err.to_string());
    // Before the server's own handlers are installed, which this would replace.
    restore_default_sigint(py);
    let inherited = Inherited::take(py).map_err(python)?;
    let launch = Launch::current(py, argv).map_err(python)?;
    if let Some(link) = inherited.link {
        let fds = inherited.fds.unwrap_or_default();
        return work(py, settings, fds, link, inherited.age);
    }
    if let Some(worker) = inherited.adopt {
        let fds = inherited.fds.unwrap_or_default();
        return resume(py, settings, launch, &fds, worker);
    }
    if settings.process.daemon && inherited.old_master.is_none() {
        process::daemonize(py)?;
    }
    let owner = Owner::resolve(&settings.process)?;
    let mut observe = Observe::new(&settings);
    let access = start_logs(py, &settings.log)?;
    let master = match inherited.old_master {
        Some(_) => "Master.2",
        None => "Master",
    };
    process::set_title(
        py,
        settings.process.proc_name.as_deref(),
        "master",
        &settings.app.spec,
    );
    tracing::info!("Starting ferrocorn {}", env!("CARGO_PKG_VERSION"));
    if let Some(Err(err)) = batch {
        tracing::warn!("Threads keep the default scheduling policy (not SCHED_BATCH): {err}");
    }
    for note in &settings.notes {
        tracing::warn!("{note}");
    }
    let pidfile = match &settings.server.pidfile {
        Some(path) => Some(pidfile::PidFile::create(&pidfile::name(
            path,
            inherited.old_master,
        ))?),
        None => None,
    };
    let hooks = Hooks::new(py, &settings).map_err(python)?;
    let processes = settings.process.processes as usize;
    if let Some(h) = &hooks {
        let server = h.server(py, processes);
        h.call(py, "on_starting", &[server]);
    }

    if let Some(tls) = &settings.server.tls {
        // Refused before binding, whoever serves: a bad file is a configuration error.
        crate::tls::load(tls)?;
    }
    let (runtime, signals) = runtime()?;
    observe.start(&runtime);
    let bound = listen(py, &settings, inherited.fds.as_deref(), owner.as_ref())?;
    let pid = std::process::id();
    for b in &bound {
        let scheme = match settings.server.tls {
            Some(_) => "https",
            None => "http",
        };
        tracing::info!("Listening at: {} ({pid})", b.url_with(scheme));
    }
    py.detach(|| observe.bind(&settings))?;
    tracing::info!("Using worker: threads");
    if let Some(owner) = &owner {
        owner.switch(py)?;
    }
    if let Some(h) = &hooks {
        let server = h.server(py, processes);
        h.call(py, "when_ready", &[server]);
    }

    let master = Master {
        launch,
        hooks: hooks.clone(),
        pidfile,
        name: master,
        old_master: inherited.old_master,
        promoted_pidfile: settings.server.pidfile.clone(),
    };
    // `--reload` swaps processes, so it needs a supervisor even for one.
    let exit = if processes > 1 || settings.dev.reload.is_some() {
        if settings.process.preload && settings.dev.reload.is_none() {
            wsgi::app::prepare(py, &settings.app)?;
            wsgi::app::load_app(py, &settings.app)?;
        }
        let mut sup = Box::new(supervisor::Supervisor::new(
            &settings,
            master.launch.clone(),
            hooks,
        ));
        sup.keep(bound);
        sup.promote_after(master.old_master);
        supervise_metrics(&runtime, &mut observe, &mut sup)?;
        py.detach(|| runtime.block_on(sup.run(signals)))
    } else {
        single(
            py,
            settings,
            &runtime,
            signals,
            bound,
            access,
            &master,
            &mut observe,
        )?
    };
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(master.exit(py, processes, exit))
}

/// A supervisor whose earlier image served the app until a reload: it supervises the worker
/// that image started, on the sockets it held, with the pid file it wrote. Nothing is logged
/// or called that the first start already did.
fn resume(
    py: Python<'_>,
    settings: Settings,
    launch: Launch,
    fds: &[RawFd],
    worker: spawn::Adopted,
) -> Result<Exit, StartupError> {
    let mut observe = Observe::new(&settings);
    start_logs(py, &settings.log)?;
    process::set_title(
        py,
        settings.process.proc_name.as_deref(),
        "master",
        &settings.app.spec,
    );
    let hooks = Hooks::new(py, &settings).map_err(|e| StartupError::Python(e.to_string()))?;
    let (runtime, signals) = runtime()?;
    observe.start(&runtime);
    // Signals held back across the exec reach their handlers now.
    signals::hold(false);
    let bound = listen(py, &settings, Some(fds), None)?;
    py.detach(|| observe.bind(&settings))?;
    let written = settings
        .server
        .pidfile
        .as_deref()
        .map(|path| pidfile::name(path, worker.old_master));
    let master = Master {
        launch: launch.clone(),
        hooks: hooks.clone(),
        pidfile: written.as_deref().map(pidfile::PidFile::adopt),
        name: "Master",
        old_master: worker.old_master,
        promoted_pidfile: settings.server.pidfile.clone(),
    };
    let processes = settings.process.processes as usize;
    let mut sup = Box::new(supervisor::Supervisor::new(&settings, launch, hooks));
    sup.keep(bound);
    supervise_metrics(&runtime, &mut observe, &mut sup)?;
    let exit = py.detach(|| {
        runtime.block_on(async {
            match sup.adopt(worker) {
                Ok(()) => sup.run(signals).await,
                Err(err) => {
                    tracing::error!("Cannot supervise the worker after a reload: {err}");
                    Exit::Code(crate::error::exit::ERROR)
                }
            }
        })
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(master.exit(py, processes, exit))
}

impl Master {
    /// The end of the server: `on_exit`, the last line, the pid file.
    fn exit(self, py: Python<'_>, processes: usize, exit: Exit) -> Exit {
        if let Some(h) = &self.hooks {
            let server = h.server(py, processes);
            h.call(py, "on_exit", &[server]);
        }
        // A server started by USR2 whose parent is gone was promoted to `Master`.
        let promoted = self
            .old_master
            .is_some_and(|old| nix::unistd::getppid().as_raw() != old);
        let name = if promoted { "Master" } else { self.name };
        tracing::info!("Shutting down: {name}");
        if let Some(p) = self.pidfile {
            p.remove();
        }
        // A server started by USR2 took the real name of the pid file once promoted.
        if let (Some(_), Some(path)) = (self.old_master, &self.promoted_pidfile) {
            pidfile::PidFile::adopt(path).remove();
        }
        exit
    }
}

/// What the first process of a server keeps whatever role it ends up in.
struct Master {
    launch: Launch,
    hooks: Option<Arc<Hooks>>,
    pidfile: Option<pidfile::PidFile>,
    /// `Master`, or `Master.2` for a server started by USR2.
    name: &'static str,
    /// The server that started this one with USR2, until it is gone.
    old_master: Option<i32>,
    /// The pid file's real name (`-p`), which a server started by USR2 takes when promoted.
    promoted_pidfile: Option<std::path::PathBuf>,
}

/// A supervisor's metrics: `--metrics-bind` serves the sum of its workers' registries, and
/// StatsD hears `gunicorn.workers` from it.
fn supervise_metrics(
    runtime: &tokio::runtime::Runtime,
    observe: &mut Observe,
    sup: &mut supervisor::Supervisor,
) -> Result<(), StartupError> {
    let aggregate = Arc::new(Aggregate::default());
    let _guard = runtime.enter();
    observe.serve(aggregate.clone())?;
    sup.observe(aggregate, observe.statsd.clone());
    Ok(())
}

/// The most threads reading files (`wsgi.file_wrapper` bodies, `--static`) at once.
const BLOCKING_THREADS: usize = 16;

/// The I/O runtime, and the signal handlers installed in it.
fn runtime() -> Result<(tokio::runtime::Runtime, Signals), StartupError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrocorn-io")
        // File blocks are read on the blocking threads. Tokio starts one more whenever none is
        // idle (up to 512), and on a busy core a woken reader is seldom idle yet: the
        // benchmark's 64 concurrent 10 MiB downloads got 514 reader threads and 95 MiB, against
        // 27 threads and 62 MiB with this bound, and more req/s. Reads past it queue.
        .max_blocking_threads(BLOCKING_THREADS)
        // Signals are for the main thread: a mask it sets then covers the whole process.
        .on_thread_start(|| signals::hold(true))
        .build()
        .map_err(|err| StartupError::Io {
            context: "Cannot start the I/O runtime",
            err,
        })?;
    let signals = runtime
        .block_on(async { Signals::install() })
        .map_err(|err| StartupError::Io {
            context: "Cannot install signal handlers",
            err,
        })?;
    Ok((runtime, signals))
}

/// Binds `--bind` (or takes the sockets a parent or systemd passed down).
fn listen(
    py: Python<'_>,
    settings: &Settings,
    fds: Option<&[RawFd]>,
    owner: Option<&Owner>,
) -> Result<Vec<Listener>, StartupError> {
    let opts = BindOptions {
        backlog: settings.server.backlog,
        reuse_port: settings.server.reuse_port,
        umask: settings.server.umask,
        // On a laptop a busy port is another server left running: say so at once.
        retry: !settings.dev.preset,
    };
    let binds: Vec<BindAddr> = match fds {
        Some(fds) => fds.iter().map(|fd| BindAddr::Fd(*fd)).collect(),
        None => settings.server.binds.clone(),
    };
    let bound = py.detach(|| server::bind_all(&binds, opts))?;
    if let Some(owner) = owner {
        for b in &bound {
            if let Kind::Unix(path) = &b.kind {
                owner.chown(path);
            }
        }
    }
    Ok(bound)
}

/// The app, loaded, with its pool and the shared state every connection gets.
struct App {
    pool: Pool<Job>,
    shared: Arc<Shared>,
    conn: ConnOptions,
    graceful_timeout: Duration,
    hooks: Option<Arc<Hooks>>,
    /// The `worker.age` hooks see.
    age: u64,
    /// The app's spec, as resolved (a Django project's `WSGI_APPLICATION`).
    spec: String,
    /// `--reload`: the import failed with this error (the traceback), and the error page
    /// serves instead.
    failure: Option<String>,
    /// This process's registry, when metrics are kept.
    metrics: Option<Arc<Metrics>>,
    /// `--enable-backlog-metric`.
    backlog_metric: bool,
}

impl App {
    /// Imports the app and starts the pool. `worker` is the age of a worker process, whose
    /// `--max-requests` counts for the whole process; in a single process the pool recycles
    /// its threads instead.
    fn load(
        py: Python<'_>,
        settings: &Settings,
        access: Option<AccessLog>,
        hooks: Option<Arc<Hooks>>,
        runtime: &tokio::runtime::Runtime,
        worker: Option<u64>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<App, StartupError> {
        let pid = std::process::id();
        let worker_process = worker.is_some();
        let age = worker.unwrap_or(1);
        // Each process reads the certificate files as it starts, so a SIGHUP's new processes
        // serve the files as they are then.
        let tls = settings
            .server
            .tls
            .as_ref()
            .map(crate::tls::load)
            .transpose()?;
        if let Some(h) = &hooks {
            let (server, worker) = (h.server(py, 1), h.worker(py, pid, age));
            if !worker_process {
                h.call(py, "pre_fork", &[server.clone(), worker.clone()]);
            }
            h.call(py, "post_fork", &[server, worker]);
        }
        if settings.dev.reload.is_some() {
            crate::dev::no_bytecode(py);
        }
        wsgi::app::prepare(py, &settings.app)?;
        let loaded = wsgi::app::load_app(py, &settings.app).and_then(|(app, spec)| {
            let app = match settings.dev.preset {
                true => wsgi::django::for_dev(py, app)?,
                false => app,
            };
            Ok((app, spec))
        });
        let (app, spec, failure) = match loaded {
            Ok((app, spec)) => (app, spec, None),
            // The socket stays open and the developer sees the traceback in the browser.
            Err(err) if settings.dev.reload.is_some() => {
                let text = err.to_string();
                tracing::error!("{text}");
                tracing::error!("The app failed to load; serving its traceback until a change");
                let page = Py::new(py, crate::dev::ErrorPage::new(py, &text))
                    .map_err(|e| StartupError::Python(e.to_string()))?;
                (page.into_any(), settings.app.spec.clone(), Some(text))
            }
            Err(err) => return Err(err.into()),
        };
        let mut statics = Statics::new(
            py,
            &settings.app.script_name,
            settings.pool.size > 1,
            settings.process.processes > 1,
            WsgiWorker::keep_for(access.as_ref()),
            HeaderPolicy::new(&settings.server.proxy),
        )
        .map_err(|e| StartupError::Python(e.to_string()))?;
        if let Some(h) = &hooks {
            if h.has("pre_request") || h.has("post_request") {
                statics = statics.with_around(Arc::new(RequestHooks::new(py, h.clone(), age)));
            }
        }
        let static_site =
            crate::http::StaticSite::new(&settings.server.static_mounts, access.clone());
        let mut handler = WsgiWorker::new(app, statics, access);
        if let Some(h) = hooks.clone().filter(|h| h.has("worker_abort")) {
            handler = handler.on_timeout(move |py| {
                let worker = h.worker(py, pid, age);
                h.call(py, "worker_abort", &[worker]);
            });
        }
        let (recycle, budget) = match settings.process.max_requests {
            None => (None, None),
            Some(after) if worker_process => {
                let jitter = Recycle {
                    after,
                    jitter: settings.process.max_requests_jitter,
                };
                (None, Some(Arc::new(Budget::new(jitter.limit_for(0)))))
            }
            Some(after) => (
                Some(Recycle {
                    after,
                    jitter: settings.process.max_requests_jitter,
                }),
                None,
            ),
        };
        // The pool's threads (and every thread they start) leave signals to the main thread.
        signals::hold(true);
        let started = Pool::start_observed(
            PoolOptions {
                size: settings.pool.size,
                queue_limit: settings.pool.queue_limit,
                timeout: settings.pool.timeout,
                grace: settings.server.graceful_timeout,
                max_waiting: settings.server.worker_connections,
                recycle,
            },
            Arc::new(handler),
            metrics.clone(),
        );
        signals::hold(false);
        let pool = started.map_err(|err| StartupError::Io {
            context: "Cannot start the worker threads",
            err,
        })?;
        if !worker_process {
            // A worker process's boot is logged by its supervisor, as in gunicorn.
            tracing::info!("Booting worker with pid: {pid}");
        }
        tracing::info!(
            "Booting worker pool with {} threads ({} workers x {} threads) in pid: {pid}",
            settings.pool.size,
            settings.pool.workers,
            settings.pool.threads
        );
        if let Some(h) = &hooks {
            let worker = h.worker(py, pid, age);
            h.call(py, "post_worker_init", &[worker]);
        }
        if let Some(m) = &metrics {
            m.set_pool(pool.probe());
        }
        let shared = Arc::new(Shared {
            pool: pool.submitter(),
            runtime: runtime.handle().clone(),
            timeout: settings.pool.timeout,
            limit_request_body: settings.server.limit_request_body,
            budget,
            static_site,
            metrics: metrics.clone(),
        });
        let conn = ConnOptions {
            keepalive: settings.server.keepalive,
            graceful_timeout: settings.server.graceful_timeout,
            limits: Limits {
                request_line: settings.server.limits.request_line,
                fields: settings.server.limits.fields,
                field_size: settings.server.limits.field_size,
            },
            max_connections: settings.server.worker_connections,
            proxy_protocol: settings.server.proxy_protocol.clone(),
            send_timeout: settings.pool.timeout,
            tls,
            http2: settings.server.http2,
            h2c_allow: settings.server.proxy.forwarded_allow.clone(),
        };
        Ok(App {
            pool,
            shared,
            conn,
            graceful_timeout: settings.server.graceful_timeout,
            hooks,
            age,
            spec,
            failure,
            metrics,
            backlog_metric: settings.metrics.statsd.as_ref().is_some_and(|s| s.backlog),
        })
    }

    /// Once a second: `gunicorn.backlog` (requests waiting for a thread), when asked for.
    fn report_backlog(&self) {
        let Some(m) = self.metrics.as_ref().filter(|_| self.backlog_metric) else {
            return;
        };
        if let Some(statsd) = m.statsd() {
            statsd.backlog(m.snapshot().pool.queued);
        }
    }

    /// `gunicorn.workers`: in ferrocorn a gunicorn worker is a pool thread.
    fn report_workers(&self) {
        if let Some(statsd) = self.metrics.as_ref().and_then(|m| m.statsd()) {
            statsd.workers(self.pool.size() as u64);
        }
    }

    fn serve(
        &self,
        runtime: &tokio::runtime::Runtime,
        bound: Vec<Listener>,
    ) -> Result<Running, StartupError> {
        let _guard = runtime.enter();
        server::start(bound, self.shared.clone(), self.conn.clone()).map_err(|err| {
            StartupError::Io {
                context: "Cannot serve",
                err,
            }
        })
    }

    /// Calls a hook that takes `worker`.
    fn worker_hook(&self, name: &str) {
        if let Some(h) = self.hooks.as_ref().filter(|h| h.has(name)) {
            Python::attach(|py| {
                let worker = h.worker(py, std::process::id(), self.age);
                h.call(py, name, &[worker]);
            });
        }
    }

    /// SIGTTIN / SIGTTOU: one thread more or fewer.
    fn resize(&self, grow: bool) {
        let old = self.pool.size();
        let new = if grow {
            match self.pool.grow() {
                Ok(n) => n,
                Err(err) => {
                    tracing::error!("Cannot start another worker thread: {err}");
                    return;
                }
            }
        } else {
            self.pool.shrink()
        };
        if new != old {
            tracing::info!("Worker pool resized to {new} threads");
            self.report_workers();
            if let Some(h) = self.hooks.as_ref().filter(|h| h.has("nworkers_changed")) {
                Python::attach(|py| {
                    let server = h.server(py, new);
                    h.call(
                        py,
                        "nworkers_changed",
                        &[server, int(py, new), int(py, old)],
                    );
                });
            }
        }
    }

    /// Waits for the pool's threads after the connections are done; whether all let go.
    fn stop_pool(self, drained: bool) -> bool {
        let wait = if drained {
            self.graceful_timeout
        } else {
            QUICK_STOP_WAIT
        };
        self.pool.shutdown(wait)
    }
}

fn int(py: Python<'_>, n: usize) -> Bound<'_, PyAny> {
    n.into_pyobject(py)
        .map_or_else(|_| py.None().into_bound(py), |n| n.into_any())
}

/// How a serving loop ended.
enum Ended {
    /// Stopped; whether every connection finished in time.
    Stopped { drained: bool },
    /// (single) A new generation took over after SIGHUP; this process supervises it now.
    Handed(Box<supervisor::Supervisor>),
}

/// Stops accepting (serving what waits in the backlog), lets connections finish within the
/// graceful timeout, and gives up early on a second INT or QUIT.
async fn graceful_stop(
    running: &mut Running,
    signals: &mut Signals,
    timeout: Duration,
    how: Finish,
) -> bool {
    // A worker retired politely leaves the backlog to the ones that go on accepting; a
    // server that stops serves it, as those clients have nobody else.
    let backlog = match how {
        Finish::Polite => Backlog::Leave,
        _ => Backlog::Serve,
    };
    stop_serving(running, signals, timeout, backlog, how).await
}

/// Stops accepting (`backlog` says who serves what waits there), lets connections finish
/// (`how`) within `timeout`, and gives up early on a second INT or QUIT.
async fn stop_serving(
    running: &mut Running,
    signals: &mut Signals,
    timeout: Duration,
    backlog: Backlog,
    how: Finish,
) -> bool {
    if backlog == Backlog::Serve {
        systemd::notify("STOPPING=1");
    }
    HEALTH.set(Readiness::Draining);
    drop(running.stop_accepting(backlog).await);
    running.finish_connections(how);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = running.drained() => return true,
            () = &mut deadline => return false,
            sig = signals.next() => if matches!(sig, Sig::Int | Sig::Quit) {
                return false;
            },
        }
    }
}

async fn quick_stop(running: &mut Running) -> bool {
    systemd::notify("STOPPING=1");
    HEALTH.set(Readiness::Draining);
    drop(running.stop_accepting(Backlog::Leave).await);
    running.finish_connections(Finish::Prompt);
    false
}

/// The default role: this process serves, and handles every signal itself.
#[allow(clippy::too_many_arguments)]
fn single(
    py: Python<'_>,
    settings: Settings,
    runtime: &tokio::runtime::Runtime,
    mut signals: Signals,
    bound: Vec<Listener>,
    access: Option<AccessLog>,
    master: &Master,
    observe: &mut Observe,
) -> Result<Exit, StartupError> {
    // Served while the app imports: `/ready` says 503 until it serves.
    let metrics = observe.registry(&settings);
    if let Some(m) = &metrics {
        let _guard = runtime.enter();
        observe.serve(m.clone())?;
    }
    let app = App::load(
        py,
        &settings,
        access,
        master.hooks.clone(),
        runtime,
        None,
        metrics,
    )?;
    let fds: Vec<RawFd> = bound.iter().map(|b| b.socket.as_raw_fd()).collect();
    let mut running = app.serve(runtime, bound)?;
    systemd::notify("READY=1");
    HEALTH.set(Readiness::Ready);
    app.report_workers();
    let ended = py.detach(|| {
        runtime.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut old_master = master.old_master;
            let mut new_master = None;
            loop {
                tokio::select! {
                    sig = signals.next() => match sig {
                        Sig::Term => {
                            let drained = graceful_stop(
                                &mut running, &mut signals, app.graceful_timeout, Finish::Prompt,
                            ).await;
                            return Ended::Stopped { drained };
                        }
                        Sig::Int | Sig::Quit => {
                            app.worker_hook("worker_int");
                            return Ended::Stopped { drained: quick_stop(&mut running).await };
                        }
                        Sig::Hup => {
                            if let Some(sup) = handle_hup(&settings, master, &fds, &mut signals).await {
                                let listeners = running.stop_accepting(Backlog::Leave).await;
                                running.finish_connections(Finish::Polite);
                                let _ = tokio::time::timeout(app.graceful_timeout, running.drained()).await;
                                let mut sup = sup;
                                sup.keep(listeners);
                                return Ended::Handed(sup);
                            }
                        }
                        Sig::Usr1 => logging::reopen_files(),
                        Sig::Usr2 => handle_usr2(master, &fds, old_master, &mut new_master),
                        Sig::Ttin => app.resize(true),
                        Sig::Ttou => app.resize(false),
                        Sig::Winch => tracing::debug!("SIGWINCH ignored. Not daemonized"),
                    },
                    _ = tick.tick() => {
                        promote(&mut old_master, settings.server.pidfile.as_deref());
                        app.report_backlog();
                    }
                }
            }
        })
    });
    app.worker_hook_exit();
    match ended {
        Ended::Stopped { drained } => {
            let clean = py.detach(|| app.stop_pool(drained));
            Ok(if clean { Exit::Code(0) } else { Exit::Busy })
        }
        Ended::Handed(sup) => {
            // The old generation's threads finish what they hold while the new one serves.
            let _ = py.detach(|| app.stop_pool(true));
            // Then this process sheds the app it imported: a fresh image of it supervises
            // the new generation, under the same pid.
            // Held first, so no signal slips in between taking the pending ones and the exec.
            signals::hold(true);
            let pending = signals.take_pending();
            let unpromoted = master
                .old_master
                .filter(|old| nix::unistd::getppid().as_raw() == *old);
            let err = sup.become_fresh(unpromoted, &pending);
            signals::hold(false);
            tracing::error!("Cannot restart as a supervisor ({err}); supervising from here");
            Ok(py.detach(|| runtime.block_on(sup.run(signals))))
        }
    }
}

impl App {
    /// `worker_exit(server, worker)`, as the worker's life ends.
    fn worker_hook_exit(&self) {
        if let Some(h) = self.hooks.as_ref().filter(|h| h.has("worker_exit")) {
            Python::attach(|py| {
                let (server, worker) =
                    (h.server(py, 1), h.worker(py, std::process::id(), self.age));
                h.call(py, "worker_exit", &[server, worker]);
            });
        }
    }
}

/// SIGHUP in a single process: a new generation (a fresh process importing the code and the
/// config file from disk) starts on the same sockets. Returns its supervisor once it is ready;
/// `None` when it failed (logged; this process goes on serving).
async fn handle_hup(
    settings: &Settings,
    master: &Master,
    fds: &[RawFd],
    signals: &mut Signals,
) -> Option<Box<supervisor::Supervisor>> {
    tracing::info!("Hang up: {}", master.name);
    systemd::notify("RELOADING=1");
    if let Some(h) = master.hooks.as_ref().filter(|h| h.has("on_reload")) {
        Python::attach(|py| {
            let server = h.server(py, 1);
            h.call(py, "on_reload", &[server]);
        });
    }
    let mut sup = Box::new(supervisor::Supervisor::new(
        settings,
        master.launch.clone(),
        master.hooks.clone(),
    ));
    sup.set_fds(fds.to_vec());
    let ready = sup.start_first(signals).await;
    systemd::notify("READY=1");
    ready.then_some(sup)
}

/// SIGUSR2: a new server (a fresh process of the same command) starts on the same sockets and
/// serves beside this one; the operator then stops this one (TERM), as with gunicorn.
fn handle_usr2(
    master: &Master,
    fds: &[RawFd],
    old_master: Option<i32>,
    new_master: &mut Option<u32>,
) {
    if old_master.is_some() {
        tracing::warn!("USR2 signal ignored. Parent exists.");
        return;
    }
    if new_master.is_some_and(|pid| nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok())
    {
        tracing::warn!("USR2 signal ignored. Child exists.");
        return;
    }
    if let Some(h) = master.hooks.as_ref().filter(|h| h.has("pre_exec")) {
        Python::attach(|py| {
            let server = h.server(py, 1);
            h.call(py, "pre_exec", &[server]);
        });
    }
    match master.launch.server(fds) {
        Ok(child) => {
            *new_master = child.id();
            tracing::info!(
                "Started a new server (pid: {}) on the same sockets",
                child.id().unwrap_or(0)
            );
        }
        Err(err) => tracing::error!("Cannot start a new server: {err}"),
    }
}

/// A server started by USR2 becomes the server once the one that started it is gone: its pid
/// file takes the real name (gunicorn's "Master has been promoted.").
pub(super) fn promote(old_master: &mut Option<i32>, pidfile: Option<&std::path::Path>) {
    let Some(old) = *old_master else { return };
    if nix::unistd::getppid().as_raw() == old {
        return;
    }
    *old_master = None;
    tracing::info!("Master has been promoted.");
    if let Some(path) = pidfile {
        let two = pidfile::name(path, Some(old));
        if let Err(err) = std::fs::rename(&two, path) {
            tracing::error!("Cannot rename the pid file {two:?}: {err}");
        }
    }
}

/// A worker process: serves on the sockets its supervisor passed and reports to it.
fn work(
    py: Python<'_>,
    settings: Settings,
    fds: Vec<RawFd>,
    link: std::os::fd::OwnedFd,
    age: u64,
) -> Result<Exit, StartupError> {
    let born = std::time::SystemTime::now();
    let mut observe = Observe::new(&settings);
    let access = start_logs(py, &settings.log)?;
    process::set_title(
        py,
        settings.process.proc_name.as_deref(),
        "worker",
        &settings.app.spec,
    );
    let hooks = Hooks::new(py, &settings).map_err(|e| StartupError::Python(e.to_string()))?;
    let (runtime, mut signals) = runtime()?;
    observe.start(&runtime);
    let bound = listen(py, &settings, Some(&fds), None)?;
    if let Some(owner) = Owner::resolve(&settings.process)? {
        // Already switched when the supervisor runs as the user; harmless then.
        let _ = owner.switch(py);
    }
    // Retired for `--reload`, idle keep-alive connections close at once, so a browser's next
    // request (which it retries on a new connection, as it does for any idle connection the
    // server closed) meets the new code; requests in flight finish. Otherwise each keep-alive
    // client gets one more answer.
    let retire = match settings.dev.reload {
        Some(_) => Finish::Prompt,
        None => Finish::Polite,
    };
    let link = std::os::unix::net::UnixStream::from(link);
    let _ = std::io::Write::write_all(&mut &link, &[Report::Loading.byte()]);
    let metrics = observe.registry(&settings);
    let app = App::load(py, &settings, access, hooks, &runtime, Some(age), metrics)?;
    // The supervisor serves `--metrics-bind` from what its workers send.
    let snapshots = settings.metrics.bind.as_ref().and(app.metrics.clone());
    let mut watch = crate::dev::watch(py, &settings, app.failure.as_deref(), born);
    let urls: Vec<String> = bound.iter().map(Listener::url).collect();
    let mut running = app.serve(&runtime, bound)?;
    if settings.dev.preset && age == 1 {
        crate::dev::print_banner(
            py,
            &settings,
            &app.spec,
            &urls,
            watch.as_ref(),
            app.failure.is_some(),
        );
    }
    let ended = py.detach(|| {
        runtime.block_on(async {
            let _ = link.set_nonblocking(true);
            let timeout = app.graceful_timeout;
            let Ok(link) = tokio::net::UnixStream::from_std(link) else {
                return graceful_stop(&mut running, &mut signals, timeout, Finish::Prompt).await;
            };
            let (mut from_parent, mut to_parent) = link.into_split();
            let _ = to_parent.write_all(&[Report::Ready.byte()]).await;
            let parent_gone = async move {
                let mut buf = [0u8; 16];
                while let Ok(n) = from_parent.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            tokio::pin!(parent_gone);
            let budget = app.shared.budget.clone();
            let spent = async move {
                match budget {
                    Some(b) => b.spent().await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(spent);
            let mut beat = tokio::time::interval(Duration::from_secs(1));
            let mut asked = false;
            let ended = loop {
                tokio::select! {
                    sig = signals.next() => match sig {
                        // HUP is how the supervisor retires a worker (another one already
                        // serves), TERM how it stops the server.
                        Sig::Term => {
                            break graceful_stop(&mut running, &mut signals, timeout, Finish::Prompt).await;
                        }
                        Sig::Hup => {
                            break stop_serving(&mut running, &mut signals, timeout, Backlog::Leave, retire).await;
                        }
                        Sig::Int | Sig::Quit => {
                            app.worker_hook("worker_int");
                            break quick_stop(&mut running).await;
                        }
                        Sig::Usr1 => logging::reopen_files(),
                        Sig::Ttin => app.resize(true),
                        Sig::Ttou => app.resize(false),
                        Sig::Usr2 | Sig::Winch => {}
                    },
                    () = &mut parent_gone => {
                        tracing::info!("Parent changed, shutting down: {}", std::process::id());
                        break graceful_stop(&mut running, &mut signals, timeout, Finish::Prompt).await;
                    }
                    path = changed(&mut watch) => {
                        tracing::info!("Worker reloading: {} modified", path.display());
                        let _ = to_parent.write_all(&[Report::Changed.byte()]).await;
                    }
                    () = &mut spent, if !asked => {
                        asked = true;
                        tracing::info!("Autorestarting worker after current request.");
                        let _ = to_parent.write_all(&[Report::Recycle.byte()]).await;
                    }
                    _ = beat.tick() => {
                        // Until it is replaced, a spent worker asks again with every beat: a
                        // request that reached a supervisor as it re-executed itself is lost.
                        let report = if asked { Report::Recycle } else { Report::Beat };
                        let _ = to_parent.write_all(&[report.byte()]).await;
                        if let Some(m) = &snapshots {
                            let _ = to_parent.write_all(&aggregate::encode(&m.snapshot())).await;
                        }
                        app.report_backlog();
                    }
                }
            };
            // The last word: every request this worker answered counts after it is gone.
            if let Some(m) = &snapshots {
                let _ = to_parent.write_all(&aggregate::encode(&m.snapshot())).await;
            }
            ended
        })
    });
    app.worker_hook_exit();
    let clean = py.detach(|| app.stop_pool(ended));
    Ok(if clean { Exit::Code(0) } else { Exit::Busy })
}

/// The next file `--reload` saw change; never, without `--reload`.
async fn changed(watch: &mut Option<crate::dev::Watch>) -> std::path::PathBuf {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// Sets up the error log and returns the access log, if any. With a Python logging
/// configuration both go through Python's `logging`, and the access log is always on (as in
/// gunicorn).
fn start_logs(py: Python<'_>, log: &LogSettings) -> Result<Option<AccessLog>, StartupError> {
    let offset = py.import("time").and_then(|t| {
        t.call_method0("localtime")?
            .getattr("tm_gmtoff")?
            .extract::<i32>()
    });
    logging::set_local_offset(offset.unwrap_or(0));
    let python = |err: PyErr| StartupError::Python(format!("cannot configure logging: {err}"));
    let (error_logger, access_sink) = match &log.python {
        Some(how) => {
            logging::python::configure(py, how).map_err(python)?;
            let error = PyLogger::get(py, "gunicorn.error").map_err(python)?;
            let access = PyLogger::get(py, "gunicorn.access").map_err(python)?;
            (Some(error), Some(Sink::Python(access)))
        }
        None => {
            let access =
                match &log.accesslog {
                    Some(spec) => Some(Sink::open(spec, Sink::Stdout).map_err(|err| {
                        StartupError::LogFile {
                            path: spec.clone(),
                            err,
                        }
                    })?),
                    None => None,
                };
            (None, access)
        }
    };
    logging::init(log, error_logger).map_err(|err| StartupError::LogFile {
        path: log.errorlog.clone(),
        err,
    })?;
    if log.compact_access && log.python.is_none() {
        return Ok(Some(AccessLog::compact(
            Sink::Stderr,
            logging::stderr_colors(),
        )));
    }
    Ok(access_sink.map(|sink| match log.access_log_json {
        true => AccessLog::json(sink),
        false => AccessLog::new(&log.access_log_format, sink),
    }))
}

/// `--check-config` and `--print-config`: print what was asked, then import the app as serving
/// would, and stop.
fn check(py: Python<'_>, settings: &Settings) -> Result<(), StartupError> {
    if let Mode::Print(text) = &settings.mode {
        // A reader that stops early (`| head`) is not an error.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    }
    wsgi::app::prepare(py, &settings.app)
        .and_then(|()| wsgi::app::load_app(py, &settings.app))
        .map(drop)
        .map_err(StartupError::Check)
}

/// Python's SIGINT handler would raise `KeyboardInterrupt` on the main thread once `run`
/// returns; the server handles SIGINT itself.
fn restore_default_sigint(py: Python<'_>) {
    let reset = py.import("signal").and_then(|signal| {
        let dfl = signal.getattr("SIG_DFL")?;
        signal.call_method1("signal", (signal.getattr("SIGINT")?, dfl))
    });
    if let Err(err) = reset {
        tracing::debug!("could not reset the SIGINT handler: {err}");
    }
}
