//! The pool of OS threads that run Python. Each thread attaches to the interpreter once for its
//! whole life (so `threading.local` and per-thread state such as Django's database connections
//! survive between requests) and detaches whenever it waits. The pool knows nothing of HTTP: it
//! runs a `Handler`'s jobs.
//!
//! Scheduling is shaped by the GIL (see `queue`): the thread holding it serves queued jobs back
//! to back, and one more thread stands by to take over whenever the app releases the GIL (I/O,
//! `time.sleep`), so slow requests never hold up quick ones and quick ones never pay for a
//! thread switch each.
//!
//! The `watchdog` keeps the pool at its size: it interrupts jobs that overrun `--timeout`,
//! replaces threads that stay stuck, and replaces threads that wait on slow clients, so neither
//! a stuck app nor clients that stop reading can take the pool away from everyone else.

mod queue;
mod thread;
mod watchdog;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::Python;

use crate::metrics::{Metrics, PoolProbe, PoolSample};
use queue::{PushError, Queue};
pub use thread::waiting_for_client;
pub use watchdog::RequestTimeout;

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
    /// What a job is, for the timeout log (`GET /path`). Called for every job, so it should
    /// hand out something the job already holds; it is rendered only when a job overruns.
    fn describe(&self, job: &Self::Job) -> Arc<dyn Describe>;
    /// Called (attached) after a job that ran past the timeout was interrupted.
    fn timed_out(&self, _py: Python<'_>) {}
}

/// A job's description, rendered only when the watchdog has something to say about it.
pub trait Describe: Send + Sync {
    fn describe(&self) -> String;
}

/// How the pool runs.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Threads (`workers × threads`).
    pub size: usize,
    /// The most jobs waiting for a thread; beyond it `submit` says `Full`.
    pub queue_limit: Option<usize>,
    /// How long a job may run before it is interrupted (`--timeout`); `None` never.
    pub timeout: Option<Duration>,
    /// How long an interrupted job has to give its thread back before the thread is abandoned
    /// and replaced (`--graceful-timeout`).
    pub grace: Duration,
    /// The most threads counted out of the pool while they wait on slow clients
    /// (`--worker-connections`: each connection holds at most one).
    pub max_waiting: usize,
    /// Replace each thread after this many jobs (`--max-requests`), `None` never.
    pub recycle: Option<Recycle>,
}

/// `--max-requests` and `--max-requests-jitter`: a thread serves `after` jobs plus up to
/// `jitter` more, then a fresh thread (with a fresh Python thread state and fresh
/// thread-locals) takes its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recycle {
    pub after: u64,
    pub jitter: u64,
}

impl Recycle {
    /// How many jobs the thread numbered `index` serves; the jitter spreads the restarts so
    /// threads started together do not all leave together.
    pub fn limit_for(&self, index: usize) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(index);
        let extra = match self.jitter {
            0 => 0,
            j => h.finish() % (j + 1),
        };
        self.after.max(1) + extra
    }
}

/// A running pool.
pub struct Pool<J> {
    queue: Arc<Queue<J>>,
    threads: Threads,
    watchdog: Option<watchdog::Watchdog>,
    /// Starts one more thread (`grow`).
    spawn: Box<dyn Fn() -> std::io::Result<()> + Send + Sync>,
    /// The size the pool is kept at (changed by `grow` and `shrink`).
    size: Arc<AtomicUsize>,
}

/// Every pool thread ever started, with the slot through which it reports what it runs.
type Threads = Arc<Mutex<Vec<(JoinHandle<()>, Arc<thread::Slot>)>>>;

/// The pool's gauges, read at each scrape.
struct Probe<J> {
    queue: Arc<Queue<J>>,
    size: Arc<AtomicUsize>,
}

impl<J: Send> PoolProbe for Probe<J> {
    fn sample(&self) -> PoolSample {
        let (queued, idle, busy) = self.queue.sample();
        PoolSample {
            size: self.size.load(Ordering::Relaxed) as u64,
            busy: busy as u64,
            idle: idle as u64,
            queued: queued as u64,
        }
    }
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

/// Why a job was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the worker pool is closed")]
    Closed,
    #[error("every worker thread is busy and the queue is full")]
    Full,
}

impl<J: Send + 'static> Submitter<J> {
    /// Queues a job. Never blocks: each connection has at most one request in flight, so the
    /// queue is bounded by the number of connections, and by `queue_limit` when set.
    pub fn submit(&self, job: J) -> Result<(), SubmitError> {
        self.queue.push(job).map_err(|e| match e {
            PushError::Closed => SubmitError::Closed,
            PushError::Full => SubmitError::Full,
        })
    }
}

impl<J: Send + 'static> Pool<J> {
    /// Starts the threads running `handler`, and the watchdog when there is a timeout.
    pub fn start<H: Handler<Job = J>>(
        opts: PoolOptions,
        handler: Arc<H>,
    ) -> std::io::Result<Pool<J>> {
        Pool::start_observed(opts, handler, None)
    }

    /// `start`, with the threads reporting to `metrics` (time waiting for the GIL, restarts).
    pub fn start_observed<H: Handler<Job = J>>(
        opts: PoolOptions,
        handler: Arc<H>,
        metrics: Option<Arc<Metrics>>,
    ) -> std::io::Result<Pool<J>> {
        let queue = Arc::new(Queue::with_limit(opts.queue_limit));
        let threads: Threads = Arc::default();
        let spawner = Arc::new(thread::Spawner::new(
            queue.clone(),
            handler,
            threads.clone(),
            opts.recycle,
            metrics,
        ));
        for _ in 0..opts.size.max(1) {
            spawner.spawn()?;
        }
        let watchdog = Some(watchdog::Watchdog::start(
            opts,
            threads.clone(),
            spawner.clone(),
        )?);
        Ok(Pool {
            queue,
            threads,
            watchdog,
            spawn: Box::new(move || spawner.spawn()),
            size: Arc::new(AtomicUsize::new(opts.size.max(1))),
        })
    }

    /// Reads the pool's gauges for the metrics.
    pub fn probe(&self) -> Box<dyn PoolProbe> {
        Box::new(Probe {
            queue: self.queue.clone(),
            size: self.size.clone(),
        })
    }

    /// The number of threads the pool is kept at.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// Adds a thread (SIGTTIN). Returns the new size.
    pub fn grow(&self) -> std::io::Result<usize> {
        (self.spawn)()?;
        Ok(self.size.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Lets one thread go, once it is idle or done with its job (SIGTTOU); never below one.
    /// Returns the new size.
    pub fn shrink(&self) -> usize {
        let size = self.size();
        if size <= 1 {
            return size;
        }
        self.queue.shrink();
        self.size.store(size - 1, Ordering::Relaxed);
        size - 1
    }

    pub fn submitter(&self) -> Submitter<J> {
        Submitter {
            queue: self.queue.clone(),
        }
    }

    /// Stops taking jobs and waits up to `timeout` for the threads to finish what they hold.
    /// Returns whether every thread exited (abandoned threads never count as exited).
    pub fn shutdown(self, timeout: Duration) -> bool {
        if let Some(w) = self.watchdog {
            w.stop();
        }
        self.queue.close();
        let deadline = Instant::now() + timeout;
        let all_done = || {
            let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
            threads.iter().all(|(t, _)| t.is_finished())
        };
        while !all_done() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for (t, _) in threads {
            let _ = t.join();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct JobNumber(u32);

    impl Describe for JobNumber {
        fn describe(&self) -> String {
            format!("job {}", self.0)
        }
    }

    /// Panics on job 0 and reports every other job.
    struct Flaky(Mutex<mpsc::Sender<u32>>);

    impl Handler for Flaky {
        type Job = u32;
        type Done = ();
        fn handle(&self, _py: Python<'_>, job: u32) {
            if job == 0 {
                panic!("a bug while serving job 0");
            }
            let _ = self.0.lock().unwrap().send(job);
        }
        fn needs_finish(&self) -> bool {
            false
        }
        fn finish(&self, _: ()) {}
        fn describe(&self, job: &u32) -> Arc<dyn Describe> {
            Arc::new(JobNumber(*job))
        }
    }

    #[test]
    fn a_panicking_job_leaves_the_thread_serving() {
        let (tx, rx) = mpsc::channel();
        let opts = PoolOptions {
            size: 1,
            queue_limit: None,
            timeout: Some(Duration::from_secs(30)),
            grace: Duration::from_secs(1),
            max_waiting: 10,
            recycle: None,
        };
        let pool = Pool::start(opts, Arc::new(Flaky(Mutex::new(tx)))).unwrap();
        let submit = pool.submitter();
        submit.submit(0).unwrap();
        submit.submit(1).unwrap();
        submit.submit(2).unwrap();
        let got: Vec<u32> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, [1, 2]);
        assert!(pool.shutdown(Duration::from_secs(10)));
    }

    #[test]
    fn a_full_queue_says_so() {
        let (tx, _rx) = mpsc::channel();
        let opts = PoolOptions {
            size: 1,
            queue_limit: Some(0),
            timeout: None,
            grace: Duration::from_secs(1),
            max_waiting: 10,
            recycle: None,
        };
        let pool = Pool::start(opts, Arc::new(Flaky(Mutex::new(tx)))).unwrap();
        assert_eq!(pool.submitter().submit(5), Err(SubmitError::Full));
        assert!(pool.shutdown(Duration::from_secs(10)));
    }

    /// Reports the OS thread each job ran on.
    struct ThreadOf(Mutex<mpsc::Sender<std::thread::ThreadId>>);

    impl Handler for ThreadOf {
        type Job = ();
        type Done = ();
        fn handle(&self, _py: Python<'_>, _job: ()) {
            let _ = self.0.lock().unwrap().send(std::thread::current().id());
        }
        fn needs_finish(&self) -> bool {
            false
        }
        fn finish(&self, _: ()) {}
        fn describe(&self, _job: &()) -> Arc<dyn Describe> {
            Arc::new(JobNumber(0))
        }
    }

    fn live_threads(pool: &Pool<()>) -> usize {
        let threads = pool.threads.lock().unwrap();
        threads.iter().filter(|(t, _)| !t.is_finished()).count()
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn options(size: usize, recycle: Option<Recycle>) -> PoolOptions {
        PoolOptions {
            size,
            queue_limit: None,
            timeout: None,
            grace: Duration::from_secs(1),
            max_waiting: 10,
            recycle,
        }
    }

    #[test]
    fn threads_are_recycled_after_their_jobs_and_no_job_is_lost() {
        let (tx, rx) = mpsc::channel();
        let recycle = Recycle {
            after: 3,
            jitter: 0,
        };
        let pool = Pool::start(
            options(1, Some(recycle)),
            Arc::new(ThreadOf(Mutex::new(tx))),
        )
        .unwrap();
        let submit = pool.submitter();
        for _ in 0..9 {
            submit.submit(()).unwrap();
        }
        let ran: Vec<_> = (0..9)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        let distinct: std::collections::HashSet<_> = ran.iter().collect();
        assert_eq!(distinct.len(), 3, "three jobs per thread: {ran:?}");
        wait_for("one live thread", || live_threads(&pool) == 1);
        assert!(pool.shutdown(Duration::from_secs(10)));
    }

    #[test]
    fn the_pool_grows_and_shrinks_but_never_below_one() {
        let (tx, _rx) = mpsc::channel();
        let pool = Pool::start(options(2, None), Arc::new(ThreadOf(Mutex::new(tx)))).unwrap();
        assert_eq!(pool.grow().unwrap(), 3);
        wait_for("three threads", || live_threads(&pool) == 3);
        assert_eq!(pool.shrink(), 2);
        assert_eq!(pool.shrink(), 1);
        assert_eq!(pool.shrink(), 1);
        wait_for("one thread", || live_threads(&pool) == 1);
        assert!(pool.shutdown(Duration::from_secs(10)));
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let r = Recycle {
            after: 100,
            jitter: 10,
        };
        for i in 0..50 {
            assert!((100..=110).contains(&r.limit_for(i)));
        }
        assert_eq!(
            Recycle {
                after: 0,
                jitter: 0
            }
            .limit_for(0),
            1
        );
    }
}
