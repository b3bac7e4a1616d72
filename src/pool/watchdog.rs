//! `--timeout`: a request that runs past it is interrupted, and its thread replaced if it does
//! not let go. gunicorn's threaded worker has no per-request timeout (gunicorn#2086); here a
//! watchdog thread reads every pool thread's slot a few times per timeout. An overdue job is
//! logged (`WORKER TIMEOUT`, what it was serving and the thread's Python stack) and interrupted
//! by raising `RequestTimeout` in its thread. If the thread is still in the same job a
//! `--graceful-timeout` later, it is abandoned and a replacement thread is started, so the pool
//! keeps its size. Answering the client (504) is the HTTP side's business, not this module's.
//! The same replacement serves threads that wait on a slow client (`waiting_for_client`): after
//! a moment such a thread is counted out of the pool and another takes its place, up to
//! `max_waiting` of them, so clients that stop reading cannot take the pool away from the rest.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::PyTypeInfo;

use super::thread::{Slot, Spawner};
use super::{Describe, Handler, PoolOptions, Threads};

pyo3::create_exception!(
    ferrocorn,
    RequestTimeout,
    pyo3::exceptions::PyBaseException,
    "Raised inside a request that ran past ferrocorn's --timeout. It derives from BaseException \
     so that `except Exception` in the app does not swallow it."
);

pub(super) struct Watchdog {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Watchdog {
    pub(super) fn start<H: Handler>(
        opts: PoolOptions,
        threads: Threads,
        spawner: Arc<Spawner<H>>,
    ) -> std::io::Result<Watchdog> {
        let (stop, stopped) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("ferrocorn-watchdog".into())
            .spawn(move || watch(opts, &threads, &spawner, &stopped))?;
        Ok(Watchdog { stop, handle })
    }

    pub(super) fn stop(self) {
        drop(self.stop);
        let _ = self.handle.join();
    }
}

/// How long a thread waits on a slow client before another takes its place in the pool.
const CLIENT_WAIT: Duration = Duration::from_millis(500);

fn watch<H: Handler>(
    opts: PoolOptions,
    threads: &Threads,
    spawner: &Arc<Spawner<H>>,
    stopped: &mpsc::Receiver<()>,
) {
    let (timeout, grace) = (opts.timeout, opts.grace);
    let tick = (timeout.unwrap_or(CLIENT_WAIT) / 4)
        .clamp(Duration::from_millis(50), Duration::from_millis(250));
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
        let now = Instant::now();
        let mut overdue = Vec::new();
        let mut abandoned = Vec::new();
        let mut waiting = Vec::new();
        let mut threads = threads.lock().unwrap_or_else(|p| p.into_inner());
        // Threads that left the pool and have ended are forgotten.
        threads.retain(|(handle, _)| !handle.is_finished());
        let mut out_of_pool = threads.iter().filter(|(_, s)| s.lock().abandoned).count();
        for (_, slot) in threads.iter() {
            let mut st = slot.lock();
            if st.abandoned {
                continue;
            }
            if st
                .client_wait
                .is_some_and(|since| now.duration_since(since) >= CLIENT_WAIT)
                && out_of_pool < opts.max_waiting
            {
                st.abandoned = true;
                out_of_pool += 1;
                waiting.push(slot.index);
                continue;
            }
            let (Some(timeout), Some(job)) = (timeout, st.running.as_mut()) else {
                continue;
            };
            match job.interrupted {
                None if now.duration_since(job.since) >= timeout => {
                    job.interrupted = Some(now);
                    overdue.push((slot.clone(), job.seq, job.what.clone()));
                }
                Some(at) if now.duration_since(at) >= grace => {
                    let what = job.what.describe();
                    st.abandoned = true;
                    abandoned.push((slot.clone(), what));
                }
                _ => {}
            }
        }
        drop(threads);
        for index in waiting {
            tracing::debug!(
                "Worker thread {index} waits on a slow client; another thread takes its place"
            );
            if let Err(err) = spawner.replace() {
                tracing::error!("Cannot start a replacement worker thread: {err}");
            }
        }
        for (slot, seq, what) in overdue {
            interrupt(&slot, seq, &*what, timeout.unwrap_or_default());
            Python::attach(|py| spawner.handler().timed_out(py));
        }
        for (slot, what) in abandoned {
            tracing::error!(
                "Worker thread {} is still serving {what} {} s after it was interrupted: \
                 abandoning it and starting a replacement",
                slot.index,
                grace.as_secs()
            );
            if let Err(err) = spawner.replace() {
                tracing::error!("Cannot start a replacement worker thread: {err}");
            }
        }
    }
}

/// Logs the overdue job with its thread's stack and raises `RequestTimeout` in that thread.
fn interrupt(slot: &Arc<Slot>, seq: u64, what: &dyn Describe, timeout: Duration) {
    Python::attach(|py| {
        let ident = slot.ident.load(std::sync::atomic::Ordering::Relaxed);
        // Taking the stack runs Python code, which may let the job's thread run on and finish.
        let stack = stack_of(py, ident).unwrap_or_else(|err| format!("(no stack: {err})\n"));
        // The check and the raise happen under the slot's lock, where the thread records the
        // end of its job: either the job is still running and the exception is its own (the
        // thread clears it if the job ends before Python sees it), or the job is over and
        // nothing is raised. No Python code runs here, so the lock is never held across a
        // wait for the interpreter.
        let raised = {
            let st = slot.lock();
            let running = st.running.as_ref().is_some_and(|job| job.seq == seq);
            if running {
                set_async_exc(py, ident, true);
            }
            running
        };
        if raised {
            tracing::error!(
                "WORKER TIMEOUT (pid:{}) {} ran past the {} s timeout in worker thread {}; \
                 raising RequestTimeout in it. Its stack:\n{}",
                std::process::id(),
                what.describe(),
                timeout.as_secs(),
                slot.index,
                stack.trim_end()
            );
        }
    });
}

/// The thread's Python stack, as `traceback.format_stack` prints it.
fn stack_of(py: Python<'_>, ident: u64) -> PyResult<String> {
    let frames = py.import("sys")?.call_method0("_current_frames")?;
    let Some(frame) = frames
        .call_method1("get", (ident,))
        .ok()
        .filter(|f| !f.is_none())
    else {
        return Ok("(the thread is not running Python code)\n".into());
    };
    let lines: Vec<String> = py
        .import("traceback")?
        .call_method1("format_stack", (frame,))?
        .extract()?;
    Ok(lines.concat())
}

/// Raises (`raise_it`) or clears a pending `RequestTimeout` in the thread `ident`.
pub(super) fn set_async_exc(py: Python<'_>, ident: u64, raise_it: bool) {
    let exc = if raise_it {
        RequestTimeout::type_object_raw(py).cast::<pyo3::ffi::PyObject>()
    } else {
        std::ptr::null_mut()
    };
    #[allow(unsafe_code)]
    // SAFETY: the GIL is held (`py`), `exc` is a type object that lives as long as the
    // interpreter (or NULL, which clears a pending exception), and CPython checks `ident`.
    let _ = unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(ident as std::os::raw::c_long, exc) };
}
