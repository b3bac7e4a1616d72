//! One pool thread: attach to Python once, then loop: detach to finish the last job and wait
//! for the next, attach to run it. A panic in a job is caught so the thread, and the pool, keep
//! serving.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use pyo3::Python;

use super::Handler;

/// Python code can recurse deeply (Django templates); give threads the stack CPython's own
/// threads get on Linux.
const STACK_SIZE: usize = 8 * 1024 * 1024;

pub(super) fn spawn<H: Handler>(
    index: usize,
    rx: flume::Receiver<H::Job>,
    handler: Arc<H>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ferrocorn-py-{index}"))
        .stack_size(STACK_SIZE)
        .spawn(move || run(rx, &*handler))
}

fn run<H: Handler>(rx: flume::Receiver<H::Job>, handler: &H) {
    Python::attach(|py| {
        let mut done: Option<H::Done> = None;
        loop {
            let next = py.detach(|| {
                if let Some(done) = done.take() {
                    handler.finish(done);
                }
                rx.recv()
            });
            let Ok(job) = next else { return };
            match catch_unwind(AssertUnwindSafe(|| handler.handle(py, job))) {
                Ok(d) => done = Some(d),
                Err(_) => tracing::error!("a pool thread caught a panic while serving a request"),
            }
        }
    });
}
