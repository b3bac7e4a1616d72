//! What the server counts about itself, and where the numbers go. `Metrics` is one registry of
//! relaxed atomics that the request path, the connection tasks and the pool update (requests by
//! status, a latency histogram, requests in flight, body bytes in and out, connections, time
//! pool threads wait for the GIL, thread restarts); the pool's gauges (size, busy, idle, queue)
//! are read from the pool only when someone asks (`PoolProbe`). A `Snapshot` is the registry's
//! numbers at one moment: rendered in Prometheus's text format (`prometheus`), served on
//! `--metrics-bind` with liveness and readiness answers (`endpoint`), or sent by a worker process
//! to its supervisor, which adds them up (`aggregate`). `statsd` sends gunicorn's StatsD metrics.
//! No Python here, and nothing here decides when a request starts or ends: `http` says so.
//!
//! The registry exists only when `--metrics-bind` or `--statsd-host` is set; otherwise the
//! request path pays one `None` check.

pub mod aggregate;
pub mod endpoint;
pub mod prometheus;
pub mod statsd;

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

pub use statsd::Statsd;

/// Upper bounds of the latency histogram's buckets, in microseconds (1 ms to 60 s; Prometheus
/// adds `+Inf`).
pub const LATENCY_BUCKETS_US: [u64; 15] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Status codes counted one by one (100 to 999, what `http::StatusCode` allows).
const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 900;

/// The pool's gauges, read when a snapshot is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSample {
    /// Threads the pool is kept at.
    pub size: u64,
    /// Threads running a request.
    pub busy: u64,
    /// Threads waiting for work.
    pub idle: u64,
    /// Requests waiting for a thread.
    pub queued: u64,
}

/// Reads the pool's gauges (implemented by the pool, which knows nothing of metrics otherwise).
pub trait PoolProbe: Send + Sync {
    fn sample(&self) -> PoolSample;
}

/// The registry. Counters only go up; gauges go both ways.
pub struct Metrics {
    status: Box<[AtomicU64]>,
    latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
    in_flight: AtomicI64,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
    connections_accepted: AtomicU64,
    connections_open: AtomicI64,
    gil_wait_ns: AtomicU64,
    gil_waits: AtomicU64,
    thread_restarts: AtomicU64,
    pool: OnceLock<Box<dyn PoolProbe>>,
    /// Where gunicorn's StatsD metrics go, when `--statsd-host` is set.
    statsd: Option<Statsd>,
}

impl Metrics {
    pub fn new(statsd: Option<Statsd>) -> Metrics {
        Metrics {
            status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            latency: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            gil_wait_ns: AtomicU64::new(0),
            gil_waits: AtomicU64::new(0),
            thread_restarts: AtomicU64::new(0),
            pool: OnceLock::new(),
            statsd,
        }
    }

    pub fn statsd(&self) -> Option<&Statsd> {
        self.statsd.as_ref()
    }

    /// Gives the registry the pool's gauges (once; the pool is started after the registry).
    pub fn set_pool(&self, probe: Box<dyn PoolProbe>) {
        let _ = self.pool.set(probe);
    }

    /// A request was received and is not answered yet.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// A request left without an answer (the client went away first).
    pub fn request_abandoned(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// A request was answered with `status`, `bytes` of body, `elapsed` after it was received.
    pub fn request_done(&self, status: u16, bytes: u64, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Relaxed);
        let slot = usize::from(status.saturating_sub(STATUS_MIN)).min(STATUS_SLOTS - 1);
        self.status[slot].fetch_add(1, Relaxed);
        self.response_bytes.fetch_add(bytes, Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US.partition_point(|&le| le < us);
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
        if let Some(s) = &self.statsd {
            s.request(status, elapsed);
        }
    }

    /// Request body bytes read from a client.
    pub fn request_bytes(&self, n: usize) {
        self.request_bytes.fetch_add(n as u64, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_accepted.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// A pool thread waited `waited` to take the GIL back after waiting for work.
    pub fn gil_waited(&self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.gil_wait_ns.fetch_add(ns, Relaxed);
        self.gil_waits.fetch_add(1, Relaxed);
    }

    /// A pool thread was replaced (`--max-requests`, or the watchdog gave up on it).
    pub fn thread_restarted(&self) {
        self.thread_restarts.fetch_add(1, Relaxed);
    }

    /// The registry's numbers now.
    pub fn snapshot(&self) -> Snapshot {
        let gauge = |a: &AtomicI64| u64::try_from(a.load(Relaxed)).unwrap_or(0);
        Snapshot {
            status: self
                .status
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let n = n.load(Relaxed);
                    (n > 0).then(|| (STATUS_MIN + i as u16, n))
                })
                .collect(),
            latency: std::array::from_fn(|i| self.latency[i].load(Relaxed)),
            latency_sum_us: self.latency_sum_us.load(Relaxed),
            in_flight: gauge(&self.in_flight),
            request_bytes: self.request_bytes.load(Relaxed),
            response_bytes: self.response_bytes.load(Relaxed),
            connections_accepted: self.connections_accepted.load(Relaxed),
            connections_open: gauge(&self.connections_open),
            gil_wait_ns: self.gil_wait_ns.load(Relaxed),
            gil_waits: self.gil_waits.load(Relaxed),
            thread_restarts: self.thread_restarts.load(Relaxed),
            worker_restarts: 0,
            processes: 1,
            pool: self.pool.get().map(|p| p.sample()).unwrap_or_default(),
        }
    }
}

/// The numbers of one registry (or of several, added up) at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests answered, by status code, in code order; codes never seen are left out.
    pub status: Vec<(u16, u64)>,
    /// Requests per latency bucket (not cumulative), the last one past every bound.
    pub latency: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub latency_sum_us: u64,
    pub in_flight: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub gil_wait_ns: u64,
    pub gil_waits: u64,
    pub thread_restarts: u64,
    /// Worker processes started to replace one (supervisor only).
    pub worker_restarts: u64,
    /// Processes serving requests whose numbers are in here.
    pub processes: u64,
    pub pool: PoolSample,
}

impl Snapshot {
    /// Adds `other`'s counters to this one's; with `gauges`, its gauges too (a live worker's
    /// count; a worker that exited leaves only its counters).
    pub fn add(&mut self, other: &Snapshot, gauges: bool) {
        for &(code, n) in &other.status {
            match self.status.binary_search_by_key(&code, |&(c, _)| c) {
                Ok(i) => self.status[i].1 += n,
                Err(i) => self.status.insert(i, (code, n)),
            }
        }
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a += b;
        }
        self.latency_sum_us += other.latency_sum_us;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
        self.connections_accepted += other.connections_accepted;
        self.gil_wait_ns += other.gil_wait_ns;
        self.gil_waits += other.gil_waits;
        self.thread_restarts += other.thread_restarts;
        self.worker_restarts += other.worker_restarts;
        if gauges {
            self.in_flight += other.in_flight;
            self.connections_open += other.connections_open;
            self.processes += other.processes;
            self.pool.size += other.pool.size;
            self.pool.busy += other.pool.busy;
            self.pool.idle += other.pool.idle;
            self.pool.queued += other.pool.queued;
        }
    }

    /// Requests answered, all statuses.
    pub fn requests(&self) -> u64 {
        self.status.iter().map(|&(_, n)| n).sum()
    }
}

/// Where the numbers a scrape shows come from: this process's registry, or a supervisor's sum
/// of its workers'.
pub trait Source: Send + Sync {
    fn snapshot(&self) -> Snapshot;
}

impl Source for Metrics {
    fn snapshot(&self) -> Snapshot {
        Metrics::snapshot(self)
    }
}

/// Whether the server takes requests, for `/ready`.
#[derive(Debug, Default)]
pub struct Health(AtomicU8);

/// This process's readiness: one per process, set by the lifecycle as the server starts, serves
/// and stops, read by the endpoint.
pub static HEALTH: Health = Health(AtomicU8::new(0));

/// The server's state as `/ready` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The app is being imported (or no worker process serves yet).
    Starting,
    /// Accepting and serving.
    Ready,
    /// Stopping: accepting no more, finishing what it has.
    Draining,
}

impl Health {
    pub fn set(&self, r: Readiness) {
        let v = match r {
            Readiness::Starting => 0,
            Readiness::Ready => 1,
            Readiness::Draining => 2,
        };
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> Readiness {
        match self.0.load(Relaxed) {
            0 => Readiness::Starting,
            1 => Readiness::Ready,
            _ => Readiness::Draining,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_status_and_latency_bucket() {
        let m = Metrics::new(None);
        m.request_started();
        m.request_started();
        m.request_done(200, 10, Duration::from_micros(900));
        assert_eq!(m.snapshot().in_flight, 1);
        m.request_done(404, 5, Duration::from_millis(30));
        m.request_started();
        m.request_done(200, 0, Duration::from_secs(100));
        let s = m.snapshot();
        assert_eq!(s.status, [(200, 2), (404, 1)]);
        assert_eq!(s.in_flight, 0);
        assert_eq!(s.response_bytes, 15);
        assert_eq!(s.latency[0], 1, "900 us is under 1 ms");
        assert_eq!(s.latency[5], 1, "30 ms is in the 50 ms bucket");
        assert_eq!(s.latency[LATENCY_BUCKETS_US.len()], 1, "past 60 s");
        assert_eq!(s.latency_sum_us, 900 + 30_000 + 100_000_000);
    }

    #[test]
    fn a_bound_itself_is_in_its_bucket() {
        let m = Metrics::new(None);
        m.request_started();
        m.request_done(200, 0, Duration::from_millis(1));
        assert_eq!(m.snapshot().latency[0], 1);
    }

    #[test]
    fn snapshots_add_up_and_exited_workers_keep_only_counters() {
        let mut a = Snapshot {
            status: vec![(200, 1), (500, 2)],
            in_flight: 3,
            ..Snapshot::default()
        };
        let b = Snapshot {
            status: vec![(201, 1), (500, 1)],
            in_flight: 4,
            request_bytes: 7,
            ..Snapshot::default()
        };
        a.add(&b, false);
        assert_eq!(a.status, [(200, 1), (201, 1), (500, 3)]);
        assert_eq!((a.in_flight, a.request_bytes), (3, 7));
        a.add(&b, true);
        assert_eq!(a.in_flight, 7);
        assert_eq!(a.requests(), 7);
    }
}
