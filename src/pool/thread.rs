//! One pool thread: attach to Python once, then serve the queue while holding the GIL and
//! detach to sleep when it is empty. A panic in a job is caught so the thread, and the pool,
//! keep serving. Each thread reports what it runs, and whether it is waiting on a slow client,
//! in its `Slot`, which the watchdog reads; a thread the watchdog counted out of the pool (its
//! job overran `--timeout` and ignored the interruption, or it waits on a client that does not
//! read or send) exits as soon as the job gives it back, its replacement having already taken
//! its place.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pyo3::prelude::*;

use super::queue::Queue;
use super::{Describe, Handler, Recycle, Threads};
use crate::metrics::Metrics;

/// Python code can recurse deeply (Django templates); give threads the stack CPython's own
/// threads get on Linux.
const STACK_SIZE: usize = 8 * 1024 * 1024;

/// What one pool thread is doing, shared with the watchdog.
pub(super) struct Slot {
    pub(super) index: usize,
    /// `threading.get_ident()` of the thread, for its stack and for interrupting it.
    pub(super) ident: AtomicU64,
    state: Mutex<SlotState>,
}

#[derive(Default)]
pub(super) struct SlotState {
    pub(super) running: Option<Running>,
    /// The watchdog gave up on this thread; it exits once its job returns.
    pub(super) abandoned: bool,
    /// Since when the job has been waiting for a slow client to take its response.
    pub(super) client_wait: Option<Instant>,
    /// Jobs started, so the watchdog can tell one job from the next.
    pub(super) started: u64,
}

/// The job a thread is running.
pub(super) struct Running {
    pub(super) seq: u64,
    pub(super) since: Instant,
    pub(super) what: Arc<dyn Describe>,
    /// When the watchdog raised `RequestTimeout` in it.
    pub(super) interrupted: Option<Instant>,
}

impl Slot {
    pub(super) fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts pool threads; shared by the pool (to grow), the watchdog and recycled threads (to
/// start replacements).
pub(super) struct Spawner<H: Handler> {
    queue: Arc<Queue<H::Job>>,
    handler: Arc<H>,
    threads: Threads,
    next: AtomicUsize,
    recycle: Option<Recycle>,
    /// Told how long threads wait for the GIL, and of restarts; `None` measures nothing.
    metrics: Option<Arc<Metrics>>,
}

impl<H: Handler> Spawner<H> {
    pub(super) fn new(
        queue: Arc<Queue<H::Job>>,
        handler: Arc<H>,
        threads: Threads,
        recycle: Option<Recycle>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Spawner {
            queue,
            handler,
            threads,
            next: AtomicUsize::new(0),
            recycle,
            metrics,
        }
    }

    /// Starts a thread to take the place of one that leaves (recycled, or counted out by the
    /// watchdog).
    pub(super) fn replace(self: &Arc<Self>) -> std::io::Result<()> {
        self.spawn()?;
        if let Some(m) = &self.metrics {
            m.thread_restarted();
        }
        Ok(())
    }

    pub(super) fn handler(&self) -> &H {
        &self.handler
    }

    pub(super) fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            index,
            ident: AtomicU64::new(0),
            state: Mutex::default(),
        });
        let (spawner, thread_slot) = (self.clone(), slot.clone());
        let handle = std::thread::Builder::new()
            .name(format!("ferrocorn-py-{index}"))
            .stack_size(STACK_SIZE)
            .spawn(move || run(&spawner, &thread_slot))?;
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((handle, slot));
        Ok(())
    }
}

thread_local! {
    /// The slot of the pool thread running here, for `waiting_for_client`.
    static SLOT: std::cell::RefCell<Option<Arc<Slot>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `wait` (a detached wait for a slow client to take a response chunk) with the thread's
/// slot saying so: the watchdog then counts the thread out of the pool and starts another, so
/// a client that stops reading holds no share of the pool while the app's iterator waits on its
/// own thread (where its thread-local state lives).
pub fn waiting_for_client<R>(wait: impl FnOnce() -> R) -> R {
    let mark = |since: Option<Instant>| {
        SLOT.with(|s| {
            if let Some(slot) = &*s.borrow() {
                slot.lock().client_wait = since;
            }
        })
    };
    mark(Some(Instant::now()));
    let out = wait();
    mark(None);
    out
}

fn run<H: Handler>(spawner: &Arc<Spawner<H>>, slot: &Arc<Slot>) {
    let (queue, handler) = (&*spawner.queue, &*spawner.handler);
    let metrics = spawner.metrics.as_deref();
    let mut jobs_left = spawner.recycle.map(|r| r.limit_for(slot.index));
    SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
    queue.join();
    Python::attach(|py| {
        if let Ok(ident) = py
            .import("threading")
            .and_then(|t| t.call_method0("get_ident")?.extract::<u64>())
        {
            slot.ident.store(ident, Ordering::Relaxed);
        }
        loop {
            while let Some(job) = queue.take() {
                {
                    let mut st = slot.lock();
                    st.started += 1;
                    st.running = Some(Running {
                        seq: st.started,
                        since: Instant::now(),
                        what: handler.describe(&job),
                        interrupted: None,
                    });
                }
                let done = catch_unwind(AssertUnwindSafe(|| handler.handle(py, job)));
                let abandoned = {
                    let mut st = slot.lock();
                    if st
                        .running
                        .take()
                        .is_some_and(|job| job.interrupted.is_some())
                    {
                        // The job may have ended before Python noticed the exception; it must
                        // not surface in the next one.
                        super::watchdog::set_async_exc(
                            py,
                            slot.ident.load(Ordering::Relaxed),
                            false,
                        );
                    }
                    st.abandoned
                };
                match done {
                    Ok(done) if handler.needs_finish() => {
                        let back = py.detach(|| {
                            handler.finish(done);
                            metrics.map(|_| Instant::now())
                        });
                        gil_waited(metrics, back);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tracing::error!("a pool thread caught a panic while serving a request")
                    }
                }
                if abandoned {
                    tracing::debug!("Worker thread {} leaves the pool", slot.index);
                    queue.leave();
                    return;
                }
                if let Some(left) = jobs_left.as_mut() {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        // The replacement joins before this thread leaves, so the pool never
                        // runs short and no queued request waits for it.
                        tracing::info!("Autorestarting worker after current request.");
                        if let Err(err) = spawner.replace() {
                            tracing::error!("Cannot start a replacement worker thread: {err}");
                            *left = 1;
                        } else {
                            queue.leave();
                            return;
                        }
                    }
                }
                if queue.leave_after_job() {
                    tracing::debug!("Worker thread {} leaves the pool", slot.index);
                    return;
                }
                queue.back_on_standby();
            }
            // Before sleeping, let the I/O threads run once: on a busy core they queue the next
            // requests while this thread is still awake, which spares a wake-up per request.
            let (more, woke) = py.detach(|| {
                std::thread::yield_now();
                let more = queue.sleep();
                (more, metrics.map(|_| Instant::now()))
            });
            if !more {
                return;
            }
            gil_waited(metrics, woke);
        }
    });
}

/// Counts the wait between `since` (when a detached thread was ready to go on) and now (it
/// holds the GIL again).
fn gil_waited(metrics: Option<&Metrics>, since: Option<Instant>) {
    if let (Some(m), Some(since)) = (metrics, since) {
        m.gil_waited(since.elapsed());
    }
}
