//! One pool thread: attach to Python once, then serve the queue while holding the GIL and
//! detach to sleep when it is empty. A panic in a job is caught so the thread, and the pool,
//! keep serving.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use pyo3::Python;

use super::queue::Queue;
use super::Handler;

/// Python code can recurse deeply (Django templates); give threads the stack CPython's own
/// threads get on Linux.
const STACK_SIZE: usize = 8 * 1024 * 1024;

pub(super) fn spawn<H: Handler>(
    index: usize,
    queue: Arc<Queue<H::Job>>,
    handler: Arc<H>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ferrocorn-py-{index}"))
        .stack_size(STACK_SIZE)
        .spawn(move || run(&queue, &*handler))
}

fn run<H: Handler>(queue: &Queue<H::Job>, handler: &H) {
    queue.join();
    Python::attach(|py| loop {
        while let Some(job) = queue.take() {
            match catch_unwind(AssertUnwindSafe(|| handler.handle(py, job))) {
                Ok(done) if handler.needs_finish() => py.detach(|| handler.finish(done)),
                Ok(_) => {}
                Err(_) => tracing::error!("a pool thread caught a panic while serving a request"),
            }
            queue.back_on_standby();
        }
        // Before sleeping, let the I/O threads run once: on a busy core they queue the next
        // requests while this thread is still awake, which spares a wake-up per request.
        if !py.detach(|| {
            std::thread::yield_now();
            queue.sleep()
        }) {
            return;
        }
    });
}
