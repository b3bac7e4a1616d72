//! The supervisor: holds the listening sockets and keeps `--processes` worker processes serving
//! on them. It restarts a worker that dies (backing off when they die as they start), halts the
//! server with exit 4 when the app cannot be imported at all, kills a worker that stops
//! reporting for `--timeout`, and replaces workers one by one on SIGHUP (a new generation; an
//! old worker stops only once a new one is ready, so there is never nobody accepting) and on
//! `--max-requests` (the worker asks). With `--reload` a worker reports a changed file and every
//! worker is replaced at once: the old ones stop accepting as soon as a new one imports (the
//! kernel holds new connections meanwhile, for the new code) and close their idle keep-alive
//! connections, finishing only the requests in flight. It runs no app code and no request ever
//! passes through it; it only starts processes and reads their one-byte reports.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pyo3::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::hooks::Hooks;
use super::signals::{Sig, Signals};
use super::spawn::{Adopted, Launch, Report};
use super::{int, systemd, Exit};
use crate::config::Settings;
use crate::error::exit;
use crate::logging;
use crate::metrics::aggregate::{Aggregate, Frame, Frames};
use crate::metrics::{Readiness, Statsd, HEALTH};
use crate::server::Bound as Listener;

/// How often timeouts and pending starts are looked at.
const TICK: Duration = Duration::from_millis(250);
/// A worker that dies sooner than this after starting counts as a failed start.
const QUICK_DEATH: Duration = Duration::from_secs(1);
/// The longest pause between failed starts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// ... with `--reload`.
const MAX_RELOAD_BACKOFF: Duration = Duration::from_secs(1);
/// Reports are a second apart; a worker is never declared stuck sooner than this.
const MIN_SILENCE: Duration = Duration::from_secs(3);
/// How long a quick stop waits before killing workers.
const QUICK_WAIT: Duration = Duration::from_secs(2);

pub(super) struct Supervisor {
    launch: Launch,
    hooks: Option<Arc<Hooks>>,
    /// The listening sockets, as every new worker inherits them.
    fds: Vec<RawFd>,
    /// Keeps the sockets open while workers come and go.
    listeners: Vec<Listener>,
    /// What `--bind` said when they were opened.
    binds: Vec<crate::config::BindAddr>,
    target: usize,
    timeout: Option<Duration>,
    graceful: Duration,
    generation: u64,
    workers: Vec<Worker>,
    events: mpsc::UnboundedReceiver<Event>,
    sender: mpsc::UnboundedSender<Event>,
    /// Workers started so far (`worker.age`).
    started: u64,
    /// Failed starts in a row, and when the next start may happen.
    failures: u32,
    next_start: Instant,
    /// Whether systemd was told the server is ready.
    announced: bool,
    /// `--reload`: old workers stop as soon as a worker of the new generation imports, not
    /// once it is ready.
    stop_first: bool,
    /// A server this one started with USR2, while it runs.
    new_master: Option<u32>,
    /// The server that started this one with USR2, until it is gone; and the pid file.
    old_master: Option<i32>,
    pidfile: Option<std::path::PathBuf>,
    /// `--metrics-bind`: the sum of the workers' registries, which their links feed.
    aggregate: Option<Arc<Aggregate>>,
    statsd: Option<Statsd>,
    /// Threads in each worker's pool (for `gunicorn.workers`).
    pool_size: usize,
    /// The most workers asked for so far: starts beyond it replace a worker.
    high_target: usize,
}

#[derive(Debug)]
struct Worker {
    pid: u32,
    age: u64,
    generation: u64,
    ready: bool,
    /// Past its configuration: it imports the app (or already serves).
    loading: bool,
    /// Asked for its replacement (`--max-requests`).
    retiring: bool,
    /// When it was told to stop.
    stopping: Option<Instant>,
    heard: Instant,
    born: Instant,
    timed_out: bool,
    /// Our end of its link (open as long as the reader task runs).
    link: RawFd,
}

impl Worker {
    fn new(pid: u32, age: u64, generation: u64, link: RawFd) -> Worker {
        let now = Instant::now();
        Worker {
            pid,
            age,
            generation,
            ready: false,
            loading: false,
            retiring: false,
            stopping: None,
            heard: now,
            born: now,
            timed_out: false,
            link,
        }
    }
}

/// `Some` once `pid` has exited (with its status, if it could be read).
#[allow(unsafe_code)]
fn reap(pid: u32) -> Option<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: waitpid with a valid pointer to a local; WNOHANG never blocks.
    let r = unsafe { nix::libc::waitpid(pid as i32, &mut status, nix::libc::WNOHANG) };
    match r {
        0 => None,
        -1 => Some(None),
        _ => Some(Some(std::process::ExitStatus::from_raw(status))),
    }
}

#[derive(Debug)]
enum Event {
    Report(u32, Report),
    Exited(u32, Option<std::process::ExitStatus>),
}

impl Supervisor {
    pub(super) fn new(settings: &Settings, launch: Launch, hooks: Option<Arc<Hooks>>) -> Self {
        let (sender, events) = mpsc::unbounded_channel();
        Supervisor {
            launch,
            hooks,
            fds: Vec::new(),
            listeners: Vec::new(),
            binds: settings.server.binds.clone(),
            target: settings.process.processes.max(1) as usize,
            timeout: settings.pool.timeout,
            graceful: settings.server.graceful_timeout,
            generation: 0,
            workers: Vec::new(),
            events,
            sender,
            started: 0,
            failures: 0,
            next_start: Instant::now(),
            announced: false,
            stop_first: settings.dev.reload.is_some(),
            new_master: None,
            old_master: None,
            pidfile: settings.server.pidfile.clone(),
            aggregate: None,
            statsd: None,
            pool_size: settings.pool.size,
            high_target: settings.process.processes.max(1) as usize,
        }
    }

    /// Feeds `aggregate` from the workers' links and sends `gunicorn.workers` to `statsd`.
    pub(super) fn observe(&mut self, aggregate: Arc<Aggregate>, statsd: Option<Statsd>) {
        self.aggregate = Some(aggregate);
        self.statsd = statsd;
    }

    /// `gunicorn.workers`: in ferrocorn a gunicorn worker is a pool thread, so the supervisor
    /// counts the threads of all its worker processes.
    fn report_workers(&self) {
        if let Some(s) = &self.statsd {
            s.workers((self.target * self.pool_size) as u64);
        }
    }

    /// This supervisor was started by USR2: take over the pid file once `old` is gone.
    pub(super) fn promote_after(&mut self, old: Option<i32>) {
        self.old_master = old;
    }

    pub(super) fn set_fds(&mut self, fds: Vec<RawFd>) {
        self.fds = fds;
    }

    /// Takes the listening sockets to keep open.
    pub(super) fn keep(&mut self, listeners: Vec<Listener>) {
        if self.fds.is_empty() {
            self.fds = listeners.iter().map(|b| b.socket.as_raw_fd()).collect();
        }
        self.listeners = listeners;
    }

    /// Starts one worker and waits until it is ready (`true`) or has failed; `--timeout`
    /// bounds its start. A stop signal meanwhile kills it (it has served nothing); that and
    /// any other signal are raised again for the caller's loop once this returns.
    pub(super) async fn start_first(&mut self, signals: &mut Signals) -> bool {
        self.start();
        if self.workers.is_empty() {
            tracing::error!(
                "Reload failed: the new generation could not be started; the previous code \
                 keeps serving"
            );
            return false;
        }
        let mut tick = tokio::time::interval(TICK);
        let mut deferred: Vec<Sig> = Vec::new();
        let ready = loop {
            tokio::select! {
                Some(ev) = self.events.recv() => match ev {
                    Event::Report(pid, Report::Ready) => {
                        self.heard(pid, true);
                        break true;
                    }
                    Event::Report(pid, _) => self.heard(pid, false),
                    Event::Exited(pid, status) => {
                        self.reaped(pid, status);
                        tracing::error!(
                            "Reload failed: the new generation did not start; the previous \
                             code keeps serving"
                        );
                        break false;
                    }
                },
                sig = signals.next() => {
                    if !deferred.contains(&sig) {
                        deferred.push(sig);
                    }
                    if matches!(sig, Sig::Term | Sig::Int | Sig::Quit) {
                        self.signal_all(Signal::SIGKILL);
                        break false;
                    }
                }
                _ = tick.tick() => self.check_timeouts(),
            }
        };
        for sig in deferred {
            let _ = nix::sys::signal::raise(sig.number());
        }
        ready
    }

    /// Supervises until a stop signal, or until the app cannot be imported at all.
    pub(super) async fn run(mut self: Box<Self>, mut signals: Signals) -> Exit {
        let mut tick = tokio::time::interval(TICK);
        self.report_workers();
        loop {
            self.maintain();
            tokio::select! {
                sig = signals.next() => match sig {
                    Sig::Term => return self.stop(&mut signals, Sig::Term, exit::OK).await,
                    Sig::Int | Sig::Quit => return self.stop(&mut signals, sig, exit::OK).await,
                    Sig::Hup => self.handle_hup(),
                    Sig::Usr1 => {
                        logging::reopen_files();
                        // One still starting has no handler yet (USR1 would kill it) and opens
                        // its log files afresh anyway.
                        for w in self.workers.iter().filter(|w| w.ready) {
                            let _ = kill(Pid::from_raw(w.pid as i32), Signal::SIGUSR1);
                        }
                    }
                    Sig::Usr2 => self.handle_usr2(),
                    Sig::Ttin => self.resize(self.target + 1),
                    Sig::Ttou => self.resize(self.target.saturating_sub(1).max(1)),
                    Sig::Winch => tracing::debug!("SIGWINCH ignored. Not daemonized"),
                },
                Some(ev) = self.events.recv() => {
                    if let Some(code) = self.on_event(ev) {
                        tracing::info!("Reason: App failed to load.");
                        return self.stop(&mut signals, Sig::Term, code).await;
                    }
                }
                _ = tick.tick() => {
                    self.check_timeouts();
                    super::promote(&mut self.old_master, self.pidfile.as_deref());
                }
            }
        }
    }

    fn start(&mut self) {
        self.started += 1;
        let age = self.started;
        if let Some(h) = self.hooks.as_ref().filter(|h| h.has("pre_fork")) {
            Python::attach(|py| {
                let (server, worker) = (h.server(py, self.target), h.worker(py, 0, age));
                h.call(py, "pre_fork", &[server, worker]);
            });
        }
        let (mut child, link) = match self.launch.worker(&self.fds, age) {
            Ok(started) => started,
            Err(err) => {
                tracing::error!("Cannot start a worker process: {err}");
                self.failed_start();
                return;
            }
        };
        let Some(pid) = child.id() else {
            // Only a child already reaped has no id; it is gone.
            tracing::error!("A worker process exited as it started");
            self.failed_start();
            return;
        };
        tracing::info!("Booting worker with pid: {pid}");
        if self.started > self.high_target as u64 {
            if let Some(a) = &self.aggregate {
                a.worker_restarted();
            }
        }
        let tx = self.sender.clone();
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            let _ = tx.send(Event::Exited(pid, status));
        });
        let fd = link.as_raw_fd();
        self.listen_to(pid, link);
        self.workers
            .push(Worker::new(pid, age, self.generation, fd));
    }

    /// Reads a worker's reports (and its metrics snapshots) until its link closes.
    fn listen_to(&self, pid: u32, mut link: tokio::net::UnixStream) {
        let tx = self.sender.clone();
        let aggregate = self.aggregate.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let mut frames = Frames::default();
            while let Ok(n @ 1..) = link.read(&mut buf).await {
                frames.push(&buf[..n], |frame| match frame {
                    Frame::Byte(b) => {
                        if let Some(report) = Report::from_byte(b) {
                            let _ = tx.send(Event::Report(pid, report));
                        }
                    }
                    Frame::Snapshot(s) => {
                        if let Some(a) = &aggregate {
                            a.update(pid, *s);
                        }
                    }
                });
            }
            // Its last snapshot came before its link closed.
            if let Some(a) = &aggregate {
                a.retire(pid);
            }
        });
    }

    /// Takes over a ready worker an earlier image of this process started (call inside the
    /// runtime). It is this process's child, but no `Child` handle crossed the exec: its exit
    /// is read with `waitpid` when SIGCHLD comes.
    pub(super) fn adopt(&mut self, worker: Adopted) -> std::io::Result<()> {
        let Adopted {
            pid,
            link,
            age,
            old_master,
        } = worker;
        self.old_master = old_master;
        let std_link = std::os::unix::net::UnixStream::from(link);
        std_link.set_nonblocking(true)?;
        let link = tokio::net::UnixStream::from_std(std_link)?;
        let fd = link.as_raw_fd();
        let mut chld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let tx = self.sender.clone();
        tokio::spawn(async move {
            loop {
                if let Some(status) = reap(pid) {
                    let _ = tx.send(Event::Exited(pid, status));
                    return;
                }
                tokio::select! {
                    _ = chld.recv() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        self.listen_to(pid, link);
        self.announced = true;
        self.started = self.started.max(age);
        let mut w = Worker::new(pid, age, self.generation, fd);
        w.ready = true;
        self.workers.push(w);
        Ok(())
    }

    /// With its one worker ready, replaces this process's image with a fresh supervisor of it
    /// (same pid, without the app the old image imported). Returns only if that failed.
    pub(super) fn become_fresh(
        &self,
        old_master: Option<i32>,
        pending: &[super::signals::Sig],
    ) -> std::io::Error {
        let [w] = self.workers.as_slice() else {
            return std::io::Error::other("more than one worker");
        };
        self.launch
            .become_supervisor(&self.fds, (w.pid, w.link, w.age), old_master, pending)
    }

    fn failed_start(&mut self) {
        self.failures += 1;
        let pause = Duration::from_millis(100) * 2u32.saturating_pow(self.failures.min(10));
        // While developing, the fix is a save away: try again soon.
        let most = if self.stop_first {
            MAX_RELOAD_BACKOFF
        } else {
            MAX_BACKOFF
        };
        self.next_start = Instant::now() + pause.min(most);
    }

    fn heard(&mut self, pid: u32, ready: bool) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.pid == pid) {
            w.heard = Instant::now();
            if ready && !w.ready {
                w.ready = true;
                self.failures = 0;
                if !self.announced {
                    // The server serves once its first worker does.
                    self.announced = true;
                    systemd::notify("READY=1");
                }
            }
        }
    }

    /// Handles a report or an exit; `Some(status)` when the server must halt.
    fn on_event(&mut self, ev: Event) -> Option<i32> {
        match ev {
            Event::Report(pid, Report::Ready) => self.heard(pid, true),
            Event::Report(pid, Report::Beat) => self.heard(pid, false),
            Event::Report(pid, Report::Loading) => {
                self.heard(pid, false);
                if let Some(w) = self.workers.iter_mut().find(|w| w.pid == pid) {
                    w.loading = true;
                }
            }
            Event::Report(pid, Report::Recycle) => {
                self.heard(pid, false);
                if let Some(w) = self.workers.iter_mut().find(|w| w.pid == pid) {
                    w.retiring = true;
                }
            }
            Event::Report(pid, Report::Changed) => {
                self.heard(pid, false);
                let current = self
                    .workers
                    .iter()
                    .any(|w| w.pid == pid && w.generation == self.generation);
                // Every worker of a generation sees the same change; the first report counts.
                if current {
                    self.new_generation();
                }
            }
            Event::Exited(pid, status) => {
                let w = self.reaped(pid, status)?;
                if w.stopping.is_some() {
                    return None;
                }
                let code = status.and_then(|s| s.code());
                if code == Some(exit::APP_LOAD_ERROR) && !w.ready {
                    let serving = self.workers.iter().any(|o| o.ready && o.stopping.is_none());
                    if !serving {
                        return Some(exit::APP_LOAD_ERROR);
                    }
                    tracing::error!(
                        "Reload failed: the app did not load in worker {pid}; the previous code \
                         keeps serving"
                    );
                    // The workers still serving become the current generation again; one that
                    // asked to be recycled still is.
                    for o in &mut self.workers {
                        o.generation = self.generation;
                    }
                    self.failed_start();
                } else if !w.ready || w.born.elapsed() < QUICK_DEATH {
                    self.failed_start();
                }
            }
        }
        None
    }

    /// Forgets an exited worker, logging how it ended as gunicorn does.
    fn reaped(&mut self, pid: u32, status: Option<std::process::ExitStatus>) -> Option<Worker> {
        let i = self.workers.iter().position(|w| w.pid == pid)?;
        let w = self.workers.remove(i);
        if let Some(status) = status {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                let name = Signal::try_from(sig)
                    .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string());
                match sig {
                    nix::libc::SIGKILL if !w.timed_out => tracing::error!(
                        "Worker (pid:{pid}) was sent {name}! Perhaps out of memory?"
                    ),
                    nix::libc::SIGKILL => tracing::error!("Worker (pid:{pid}) was sent {name}!"),
                    nix::libc::SIGTERM => tracing::info!("Worker (pid:{pid}) was sent {name}!"),
                    _ => tracing::warn!("Worker (pid:{pid}) was sent {name}!"),
                }
            }
            if let Some(code) = status.code().filter(|c| *c != 0) {
                tracing::error!("Worker (pid:{pid}) exited with code {code}.");
            }
        }
        if let Some(h) = self.hooks.as_ref().filter(|h| h.has("child_exit")) {
            Python::attach(|py| {
                let (server, worker) = (h.server(py, self.target), h.worker(py, pid, w.age));
                h.call(py, "child_exit", &[server, worker]);
            });
        }
        Some(w)
    }

    /// Starts and stops workers until `target` of the current generation serve. While older
    /// ones remain (a reload, a recycle), new ones start one at a time and an old one stops
    /// each time a new one is ready.
    fn maintain(&mut self) {
        let live = |w: &&Worker| w.stopping.is_none();
        let current = |w: &&Worker| w.generation == self.generation && !w.retiring;
        let (mut cur_ready, mut cur_starting, mut old) = (0, 0, 0);
        for w in self.workers.iter().filter(live) {
            match (current(&w), w.ready) {
                (true, true) => cur_ready += 1,
                (true, false) => cur_starting += 1,
                (false, _) => old += 1,
            }
        }
        let missing = self.target.saturating_sub(cur_ready + cur_starting);
        let may_start = if old > 0 {
            1usize.saturating_sub(cur_starting)
        } else {
            missing
        };
        for _ in 0..missing.min(may_start) {
            if Instant::now() < self.next_start {
                break;
            }
            self.start();
        }
        // `--reload`: the old code stops as soon as a new worker is importing, so requests
        // after a change wait for the new code; not before, so a new worker that cannot even
        // start (a broken config file) leaves the old one serving.
        let replacing =
            self.stop_first
                && self.workers.iter().filter(live).any(|w| {
                    w.generation == self.generation && !w.retiring && (w.loading || w.ready)
                });
        // Old workers stop as new ones are ready to take their place.
        let mut serving = cur_ready + old;
        let now = Instant::now();
        let generation = self.generation;
        let mut retire: Vec<usize> = (0..self.workers.len())
            .filter(|&i| {
                let w = &self.workers[i];
                w.stopping.is_none() && (w.generation != generation || w.retiring)
            })
            .collect();
        // One still starting serves nobody: it goes first.
        retire.sort_by_key(|&i| (self.workers[i].ready, self.workers[i].age));
        for i in retire {
            let eager = replacing && self.workers[i].generation != generation;
            if !eager && (serving <= self.target || cur_ready == 0) {
                continue;
            }
            self.stop_worker(i, now);
            serving -= 1;
        }
        let serving = self.workers.iter().any(|w| w.ready && w.stopping.is_none());
        HEALTH.set(match serving {
            true => Readiness::Ready,
            false => Readiness::Starting,
        });
        // Fewer processes asked for (TTOU): the newest current ones go.
        let mut extra = (cur_ready + cur_starting).saturating_sub(self.target);
        while extra > 0 {
            let Some(i) = (0..self.workers.len())
                .filter(|&i| {
                    let w = &self.workers[i];
                    w.stopping.is_none() && w.generation == generation && !w.retiring
                })
                .max_by_key(|&i| self.workers[i].age)
            else {
                break;
            };
            self.stop_worker(i, now);
            extra -= 1;
        }
    }

    /// Retires a worker: HUP lets a ready one finish politely (each keep-alive client gets one
    /// more answer, with `Connection: close`); one still starting has no handler for it yet
    /// and gets TERM.
    fn stop_worker(&mut self, i: usize, now: Instant) {
        let w = &mut self.workers[i];
        w.stopping = Some(now);
        let sig = if w.ready {
            Signal::SIGHUP
        } else {
            Signal::SIGTERM
        };
        let _ = kill(Pid::from_raw(w.pid as i32), sig);
    }

    fn check_timeouts(&mut self) {
        let now = Instant::now();
        let silence = self.timeout.map(|t| t.max(MIN_SILENCE));
        let grace = self.graceful + Duration::from_secs(5);
        for w in &mut self.workers {
            let stuck = match w.stopping {
                Some(since) => now.duration_since(since) > grace,
                // From its start, as in gunicorn: a worker whose import hangs is stuck too.
                None => silence.is_some_and(|s| now.duration_since(w.heard) > s),
            };
            if stuck && !w.timed_out {
                tracing::error!("WORKER TIMEOUT (pid:{})", w.pid);
                w.timed_out = true;
                w.stopping.get_or_insert(now);
                let _ = kill(Pid::from_raw(w.pid as i32), Signal::SIGKILL);
            }
        }
    }

    fn signal_all(&self, sig: Signal) {
        for w in &self.workers {
            let _ = kill(Pid::from_raw(w.pid as i32), sig);
        }
    }

    /// SIGUSR2: a new server on the same sockets, beside this one.
    fn handle_usr2(&mut self) {
        if self.old_master.is_some() {
            tracing::warn!("USR2 signal ignored. Parent exists.");
            return;
        }
        if self
            .new_master
            .is_some_and(|pid| kill(Pid::from_raw(pid as i32), None).is_ok())
        {
            tracing::warn!("USR2 signal ignored. Child exists.");
            return;
        }
        if let Some(h) = self.hooks.as_ref().filter(|h| h.has("pre_exec")) {
            Python::attach(|py| {
                let server = h.server(py, self.target);
                h.call(py, "pre_exec", &[server]);
            });
        }
        match self.launch.server(&self.fds) {
            Ok(child) => {
                self.new_master = child.id();
                tracing::info!(
                    "Started a new server (pid: {}) on the same sockets",
                    child.id().unwrap_or(0)
                );
            }
            Err(err) => tracing::error!("Cannot start a new server: {err}"),
        }
    }

    /// SIGHUP: re-read the configuration, then replace every worker with a new generation.
    fn handle_hup(&mut self) {
        tracing::info!("Hang up: Master");
        systemd::notify("RELOADING=1");
        let argv = self.launch.argv();
        let reloaded = Python::attach(|py| {
            let settings = crate::config::load(py, argv, &crate::config::Env::from_process())
                .map_err(|e| e.to_string())?;
            // New workers would fail on a certificate that does not load; the old ones keep
            // serving the old certificate instead.
            if let Some(tls) = &settings.server.tls {
                crate::tls::load(tls).map_err(|e| e.to_string())?;
            }
            let hooks = Hooks::new(py, &settings).map_err(|e| e.to_string())?;
            Ok::<_, String>((settings, hooks))
        });
        match reloaded {
            Ok((settings, hooks)) => {
                if settings.server.binds != self.binds {
                    tracing::warn!(
                        "The bind addresses changed in the configuration; the sockets stay as \
                         they are until a restart"
                    );
                }
                self.hooks = hooks;
                self.timeout = settings.pool.timeout;
                self.graceful = settings.server.graceful_timeout;
                let target = settings.process.processes.max(1) as usize;
                if target != self.target {
                    self.resize(target);
                }
            }
            Err(err) => {
                tracing::error!("Cannot reload the configuration, keeping the old one: {err}");
                systemd::notify("READY=1");
                return;
            }
        }
        if let Some(h) = self.hooks.as_ref().filter(|h| h.has("on_reload")) {
            Python::attach(|py| {
                let server = h.server(py, self.target);
                h.call(py, "on_reload", &[server]);
            });
        }
        self.new_generation();
        systemd::notify("READY=1");
    }

    /// Every worker is to be replaced by one started from now on (HUP, or `--reload`).
    fn new_generation(&mut self) {
        self.generation += 1;
        self.failures = 0;
        self.next_start = Instant::now();
    }

    fn resize(&mut self, target: usize) {
        let old = self.target;
        self.target = target.max(1);
        if self.target == old {
            return;
        }
        self.high_target = self.high_target.max(self.target);
        self.report_workers();
        if let Some(h) = self.hooks.as_ref().filter(|h| h.has("nworkers_changed")) {
            Python::attach(|py| {
                let server = h.server(py, self.target);
                h.call(
                    py,
                    "nworkers_changed",
                    &[server, int(py, self.target), int(py, old)],
                );
            });
        }
    }

    /// Stops every worker with `how` and waits for them (a graceful stop is bounded by the
    /// graceful timeout; a second INT or QUIT makes it quick), then returns `status`.
    async fn stop(&mut self, signals: &mut Signals, how: Sig, status: i32) -> Exit {
        systemd::notify("STOPPING=1");
        HEALTH.set(Readiness::Draining);
        self.signal_all(how.number());
        let now = Instant::now();
        for w in &mut self.workers {
            w.stopping.get_or_insert(now);
        }
        // The workers hold the sockets too: closing ours lets the last of them really close
        // them once it has taken what waits in the backlog.
        self.listeners.clear();
        let mut until = tokio::time::Instant::now()
            + match how {
                Sig::Term => self.graceful + Duration::from_secs(1),
                _ => QUICK_WAIT,
            };
        let mut killed = false;
        loop {
            if self.workers.is_empty() {
                return Exit::Code(status);
            }
            tokio::select! {
                Some(ev) = self.events.recv() => {
                    if let Event::Exited(pid, st) = ev {
                        self.reaped(pid, st);
                    }
                }
                sig = signals.next() => if matches!(sig, Sig::Int | Sig::Quit) {
                    self.signal_all(sig.number());
                    until = until.min(tokio::time::Instant::now() + QUICK_WAIT);
                },
                () = tokio::time::sleep_until(until) => {
                    if killed {
                        return Exit::Code(status);
                    }
                    self.signal_all(Signal::SIGKILL);
                    killed = true;
                    until = tokio::time::Instant::now() + QUICK_WAIT;
                }
            }
        }
    }
}
