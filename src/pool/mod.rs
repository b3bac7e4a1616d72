//! The pool of OS threads that run Python. Each thread attaches to the interpreter once for its
//! whole life (so `threading.local` and per-thread state such as Django's database connections
//! survive between requests) and detaches whenever it waits. The pool knows nothing of HTTP: it
//! runs a `Handler`'s jobs.
//!
//! Scheduling is shaped by the GIL (see `queue`): the thread holding it serves queued jobs back
//! to back, and one more thread stands by to take over whenever the app releases the GIL (I/O,
//! `time.sleep`), so slow requests never hold up quick ones and quick ones never pay for a
//! thread switch each.

mod queue;
mod thread;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::Python;

use queue::Queue;

/// What the pool threads run.
pub trait Handler: Send + Sync + 'static {
    type Job: Send + 'static;
    /// What a job leaves for `finish`.
    type Done: Send;
    /// Runs one job, attached to Python.
    fn handle(&self, py: Python<'_>, job: Self::Job) -> Self::Done;
    /// Whether `finish` has work to do; when it has, it runs with Python detached.
    fn needs_finish(&self) -> bool;
    /// Runs after `handle` (access logging).
    fn finish(&self, done: Self::Done);
}

/// A running pool.
pub struct Pool<J> {
    queue: Arc<Queue<J>>,
    threads: Vec<JoinHandle<()>>,
}

/// The sending side, cloned into every connection.
pub struct Submitter<J> {
    queue: Arc<Queue<J>>,
}

impl<J> Clone for Submitter<J> {
    fn clone(&self) -> Self {
        Submitter {
            queue: self.queue.clone(),
        }
    }
}

/// The pool is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the worker pool is closed")]
pub struct Closed;

impl<J: Send + 'static> Submitter<J> {
    /// Queues a job. Never blocks: each connection has at most one request in flight, so the
    /// queue is bounded by the number of connections.
    pub fn submit(&self, job: J) -> Result<(), Closed> {
        self.queue.push(job).map_err(|_| Closed)
    }
}

impl<J: Send + 'static> Pool<J> {
    /// Starts `size` threads running `handler`.
    pub fn start<H: Handler<Job = J>>(size: usize, handler: Arc<H>) -> std::io::Result<Pool<J>> {
        let queue = Arc::new(Queue::new());
        let threads = (0..size.max(1))
            .map(|i| thread::spawn(i, queue.clone(), handler.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool { queue, threads })
    }

    pub fn submitter(&self) -> Submitter<J> {
        Submitter {
            queue: self.queue.clone(),
        }
    }

    /// Stops taking jobs and waits up to `timeout` for the threads to finish what they hold.
    /// Returns whether every thread exited.
    pub fn shutdown(self, timeout: Duration) -> bool {
        self.queue.close();
        let deadline = Instant::now() + timeout;
        while self.threads.iter().any(|t| !t.is_finished()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.threads.into_iter().for_each(|t| {
            let _ = t.join();
        });
        true
    }
}
