//! The bounded pool of OS threads that run Python. Each thread attaches to the interpreter once
//! for its whole life (so `threading.local` and per-thread state such as Django's database
//! connections survive between requests) and detaches whenever it waits. The pool knows nothing
//! of HTTP: it runs a `Handler`'s jobs.

mod thread;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::Python;

/// What the pool threads run.
pub trait Handler: Send + Sync + 'static {
    type Job: Send + 'static;
    /// What a job leaves for `finish`.
    type Done: Send;
    /// Runs one job, attached to Python.
    fn handle(&self, py: Python<'_>, job: Self::Job) -> Self::Done;
    /// Runs after `handle` with Python detached (access logging).
    fn finish(&self, done: Self::Done);
}

/// The pool's queue is this many jobs deep per thread before submitters wait.
const QUEUE_PER_THREAD: usize = 4;

/// A running pool. Dropping the last `Submitter` lets the threads finish their jobs and exit.
pub struct Pool<J> {
    submitter: Submitter<J>,
    threads: Vec<JoinHandle<()>>,
}

/// The sending side, cloned into every connection.
pub struct Submitter<J> {
    tx: flume::Sender<J>,
}

impl<J> Clone for Submitter<J> {
    fn clone(&self) -> Self {
        Submitter {
            tx: self.tx.clone(),
        }
    }
}

/// The pool is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the worker pool is closed")]
pub struct Closed;

impl<J: Send + 'static> Submitter<J> {
    /// Queues a job, waiting (without blocking a runtime thread) while the queue is full.
    pub async fn submit(&self, job: J) -> Result<(), Closed> {
        self.tx.send_async(job).await.map_err(|_| Closed)
    }
}

impl<J: Send + 'static> Pool<J> {
    /// Starts `size` threads running `handler`.
    pub fn start<H: Handler<Job = J>>(size: usize, handler: Arc<H>) -> std::io::Result<Pool<J>> {
        let (tx, rx) = flume::bounded(size.max(1) * QUEUE_PER_THREAD);
        let threads = (0..size.max(1))
            .map(|i| thread::spawn(i, rx.clone(), handler.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool {
            submitter: Submitter { tx },
            threads,
        })
    }

    pub fn submitter(&self) -> Submitter<J> {
        self.submitter.clone()
    }

    /// Closes the queue and waits up to `timeout` for the threads to finish what they hold.
    /// Returns whether every thread exited.
    pub fn shutdown(self, timeout: Duration) -> bool {
        drop(self.submitter);
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
