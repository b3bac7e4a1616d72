//! Metrics with `--processes`: the supervisor serves `--metrics-bind` (one address can only be
//! bound once, and a scrape must see the whole server, not one random worker). Each worker sends
//! a snapshot of its registry over its link to the supervisor with every heartbeat (once a
//! second) and once more after its last request; the supervisor adds up the latest snapshot of
//! every live worker, plus the counters of the workers that have exited, so counters never go
//! back when a worker is replaced. A scrape is therefore at most about a second behind.
//!
//! On the link a snapshot travels as `S`, a little-endian `u32` length, then little-endian `u64`
//! words; the one-byte reports (`spawn::Report`) pass through `Frames` untouched.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{PoolSample, Snapshot, Source, LATENCY_BUCKETS_US};

/// The first byte of a snapshot frame.
pub const FRAME: u8 = b'S';
/// Changes whenever the layout of the words changes (a worker of another build is ignored).
const LAYOUT: u64 = 1;
/// No snapshot is this large; a length past it means the stream is not what we think.
const MAX_FRAME: usize = 1 << 20;

/// `s` as a frame for the link.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut words: Vec<u64> = vec![LAYOUT, s.latency.len() as u64];
    words.extend_from_slice(&s.latency);
    words.extend_from_slice(&[
        s.latency_sum_us,
        s.in_flight,
        s.request_bytes,
        s.response_bytes,
        s.connections_accepted,
        s.connections_open,
        s.gil_wait_ns,
        s.gil_waits,
        s.thread_restarts,
        s.pool.size,
        s.pool.busy,
        s.pool.idle,
        s.pool.queued,
        s.status.len() as u64,
    ]);
    for &(code, n) in &s.status {
        words.extend_from_slice(&[u64::from(code), n]);
    }
    let payload_len = words.len() * 8;
    let mut frame = Vec::with_capacity(5 + payload_len);
    frame.push(FRAME);
    frame.extend_from_slice(&(payload_len as u32).to_le_bytes());
    for w in words {
        frame.extend_from_slice(&w.to_le_bytes());
    }
    frame
}

/// A frame's payload back as a snapshot; `None` for another layout or a short payload.
fn decode(payload: &[u8]) -> Option<Snapshot> {
    let mut words = payload
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
    let mut next = || words.next();
    if next()? != LAYOUT || next()? != (LATENCY_BUCKETS_US.len() + 1) as u64 {
        return None;
    }
    let mut s = Snapshot::default();
    for b in s.latency.iter_mut() {
        *b = next()?;
    }
    s.latency_sum_us = next()?;
    s.in_flight = next()?;
    s.request_bytes = next()?;
    s.response_bytes = next()?;
    s.connections_accepted = next()?;
    s.connections_open = next()?;
    s.gil_wait_ns = next()?;
    s.gil_waits = next()?;
    s.thread_restarts = next()?;
    s.pool = PoolSample {
        size: next()?,
        busy: next()?,
        idle: next()?,
        queued: next()?,
    };
    let n = usize::try_from(next()?).ok()?;
    for _ in 0..n.min(MAX_FRAME) {
        let code = u16::try_from(next()?).ok()?;
        s.status.push((code, next()?));
    }
    s.processes = 1;
    Some(s)
}

/// What a worker's link carries.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A one-byte report.
    Byte(u8),
    Snapshot(Box<Snapshot>),
}

/// Splits what is read from a link into frames, whatever the read boundaries.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    /// Adds `data` and hands each complete frame to `out`.
    pub fn push(&mut self, data: &[u8], mut out: impl FnMut(Frame)) {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while at < self.buf.len() {
            if self.buf[at] != FRAME {
                out(Frame::Byte(self.buf[at]));
                at += 1;
                continue;
            }
            let Some(len) = self.buf.get(at + 1..at + 5) else {
                break;
            };
            let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
            if len > MAX_FRAME {
                at += 1;
                continue;
            }
            let Some(payload) = self.buf.get(at + 5..at + 5 + len) else {
                break;
            };
            if let Some(s) = decode(payload) {
                out(Frame::Snapshot(Box::new(s)));
            }
            at += 5 + len;
        }
        self.buf.drain(..at);
    }
}

/// The supervisor's sum of its workers' registries.
#[derive(Debug, Default)]
pub struct Aggregate {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The latest snapshot of each live worker, by pid.
    live: HashMap<u32, Snapshot>,
    /// The counters of workers that have exited.
    retired: Snapshot,
    worker_restarts: u64,
}

impl Aggregate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Worker `pid`'s registry now reads `s`.
    pub fn update(&self, pid: u32, s: Snapshot) {
        self.lock().live.insert(pid, s);
    }

    /// Worker `pid` is gone (its link closed): its counters stay, its gauges go.
    pub fn retire(&self, pid: u32) {
        let mut inner = self.lock();
        if let Some(last) = inner.live.remove(&pid) {
            inner.retired.add(&last, false);
        }
    }

    /// A worker process was started to replace one.
    pub fn worker_restarted(&self) {
        self.lock().worker_restarts += 1;
    }
}

impl Source for Aggregate {
    fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let mut total = inner.retired.clone();
        total.processes = 0;
        for s in inner.live.values() {
            total.add(s, true);
        }
        total.worker_restarts = inner.worker_restarts;
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut s = Snapshot {
            status: vec![(200, 5), (404, 1)],
            latency_sum_us: 1234,
            in_flight: 2,
            request_bytes: 10,
            response_bytes: 20,
            connections_accepted: 3,
            connections_open: 1,
            gil_wait_ns: 99,
            gil_waits: 4,
            thread_restarts: 1,
            worker_restarts: 0,
            processes: 1,
            pool: PoolSample {
                size: 4,
                busy: 2,
                idle: 2,
                queued: 0,
            },
            ..Snapshot::default()
        };
        s.latency[3] = 6;
        s
    }

    #[test]
    fn frames_survive_any_split_and_reports_pass_through() {
        let mut wire = vec![b'R'];
        wire.extend(encode(&sample()));
        wire.push(b'B');
        for split in 0..wire.len() {
            let mut frames = Frames::default();
            let mut got = Vec::new();
            frames.push(&wire[..split], |f| got.push(f));
            frames.push(&wire[split..], |f| got.push(f));
            assert_eq!(
                got,
                [
                    Frame::Byte(b'R'),
                    Frame::Snapshot(Box::new(sample())),
                    Frame::Byte(b'B')
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn retired_workers_keep_their_counters() {
        let agg = Aggregate::default();
        agg.update(1, sample());
        agg.update(2, sample());
        let both = agg.snapshot();
        assert_eq!(
            (both.requests(), both.in_flight, both.processes),
            (12, 4, 2)
        );
        agg.retire(1);
        agg.worker_restarted();
        let one = agg.snapshot();
        assert_eq!((one.requests(), one.in_flight, one.processes), (12, 2, 1));
        assert_eq!((one.pool.size, one.worker_restarts), (4, 1));
    }
}
