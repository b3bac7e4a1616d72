//! The job queue and the rule for waking threads.
//!
//! A thread is *sleeping* (detached, waiting on its condvar), on *standby* (awake and about to
//! take a job once it holds the GIL), or *running* a job. Submitting wakes a sleeper only when
//! nobody is on standby; taking a job wakes a sleeper only when jobs remain and nobody else is
//! on standby. So under load the GIL holder drains the queue without a thread switch per job,
//! and exactly one thread waits for the GIL, ready to serve the queue the moment the app
//! releases it.
//!
//! Sleepers are woken last in, first out: each sleeps on its own condvar, and a wake-up goes to
//! the thread that went to sleep most recently. A shared condvar wakes the longest sleeper (the
//! futex queue is FIFO), which under light load rotates every job through all the threads, so
//! each of `--workers 32` keeps its stack, its Python frames and its malloc arena warm; LIFO
//! keeps the work on the few threads the load needs and lets the others stay cold.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub(super) struct Queue<J> {
    state: Mutex<State<J>>,
    /// The most jobs waiting for a thread; `None` for no bound beyond the connection cap.
    limit: Option<usize>,
}

struct State<J> {
    jobs: VecDeque<J>,
    /// The sleeping threads, the most recent last.
    sleepers: Vec<Arc<Waiter>>,
    standby: usize,
    /// Threads asked to leave the pool (`shrink`) and not yet gone.
    leaving: usize,
    /// Threads running a job (for the metrics).
    running: usize,
    closed: bool,
}

/// A sleeping thread's own wake-up. `woken` is only read and written under the queue's lock;
/// it tells a wake-up from a spurious one.
#[derive(Default)]
struct Waiter {
    cv: Condvar,
    woken: AtomicBool,
}

thread_local! {
    static WAITER: Arc<Waiter> = Arc::default();
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PushError {
    /// The queue no longer takes jobs.
    Closed,
    /// `limit` jobs are already waiting.
    Full,
}

impl<J> Queue<J> {
    #[cfg(test)]
    pub(super) fn new() -> Queue<J> {
        Queue::with_limit(None)
    }

    pub(super) fn with_limit(limit: Option<usize>) -> Queue<J> {
        let state = State {
            jobs: VecDeque::new(),
            sleepers: Vec::new(),
            standby: 0,
            leaving: 0,
            running: 0,
            closed: false,
        };
        Queue {
            state: Mutex::new(state),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the most recent sleeper to standby.
    fn wake_one(&self, st: &mut State<J>) {
        if let Some(waiter) = st.sleepers.pop() {
            st.standby += 1;
            waiter.woken.store(true, Ordering::Relaxed);
            waiter.cv.notify_one();
        }
    }

    /// Wakes every sleeper to look at the state again (closing, shrinking); they stay counted
    /// as sleepers until they do.
    fn wake_all(st: &State<J>) {
        for waiter in &st.sleepers {
            waiter.cv.notify_one();
        }
    }

    pub(super) fn push(&self, job: J) -> Result<(), PushError> {
        let mut st = self.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        if self.limit.is_some_and(|limit| st.jobs.len() >= limit) {
            return Err(PushError::Full);
        }
        st.jobs.push_back(job);
        if st.standby == 0 {
            self.wake_one(&mut st);
        }
        Ok(())
    }

    /// Called on standby (holding the GIL): takes the next job and leaves standby, or `None`.
    pub(super) fn take(&self) -> Option<J> {
        let mut st = self.lock();
        let job = st.jobs.pop_front()?;
        st.standby -= 1;
        st.running += 1;
        if !st.jobs.is_empty() && st.standby == 0 {
            self.wake_one(&mut st);
        }
        Some(job)
    }

    /// A running thread finished its job and is on standby again.
    pub(super) fn back_on_standby(&self) {
        let mut st = self.lock();
        st.standby += 1;
        st.running = st.running.saturating_sub(1);
    }

    /// (jobs waiting, threads waiting for work, threads running a job), under one lock.
    pub(super) fn sample(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.jobs.len(), st.sleepers.len() + st.standby, st.running)
    }

    /// Called on standby with nothing to take (and Python detached): sleeps until woken, and
    /// returns on standby. `false` when the thread should exit: the queue is closed and empty,
    /// or the pool is shrinking.
    pub(super) fn sleep(&self) -> bool {
        WAITER.with(|waiter| self.sleep_on(waiter))
    }

    fn sleep_on(&self, waiter: &Arc<Waiter>) -> bool {
        let mut st = self.lock();
        loop {
            if !st.jobs.is_empty() {
                return true;
            }
            if st.closed || st.leaving > 0 {
                if !st.closed {
                    st.leaving -= 1;
                }
                st.standby -= 1;
                return false;
            }
            st.standby -= 1;
            waiter.woken.store(false, Ordering::Relaxed);
            st.sleepers.push(waiter.clone());
            while !waiter.woken.load(Ordering::Relaxed) && !st.closed && st.leaving == 0 {
                st = waiter.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            // A woken thread was taken off the sleepers and counted on standby by its waker.
            if !waiter.woken.load(Ordering::Relaxed) {
                st.sleepers.retain(|w| !Arc::ptr_eq(w, waiter));
                st.standby += 1;
            }
        }
    }

    /// Asks one thread to leave: the next to go idle (or to finish a job) exits.
    pub(super) fn shrink(&self) {
        let mut st = self.lock();
        st.leaving += 1;
        Self::wake_all(&st);
    }

    /// Called by a thread that just finished a job: whether it should leave because the pool
    /// is shrinking (it then does not go back on standby).
    pub(super) fn leave_after_job(&self) -> bool {
        let mut st = self.lock();
        if st.leaving == 0 {
            return false;
        }
        st.leaving -= 1;
        st.running = st.running.saturating_sub(1);
        self.handed_over(&mut st);
        true
    }

    /// A running thread leaves for good without going back on standby (recycled, shrunk,
    /// abandoned): someone must still serve what is queued.
    pub(super) fn leave(&self) {
        let mut st = self.lock();
        st.running = st.running.saturating_sub(1);
        self.handed_over(&mut st);
    }

    fn handed_over(&self, st: &mut State<J>) {
        if !st.jobs.is_empty() && st.standby == 0 {
            self.wake_one(st);
        }
    }

    /// Joins a new thread on standby.
    pub(super) fn join(&self) {
        self.lock().standby += 1;
    }

    pub(super) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        Self::wake_all(&st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// (sleeping, standby, woken and not yet up), read under one lock.
    fn counts<J>(q: &Queue<J>, sleepers: &[Arc<Waiter>]) -> (usize, usize, usize) {
        let st = q.lock();
        let woken = sleepers
            .iter()
            .filter(|w| w.woken.load(Ordering::Relaxed))
            .count();
        (st.sleepers.len(), st.standby, woken)
    }

    /// Counts `n` pretend sleepers in (no thread waits on them).
    fn pretend_sleepers<J>(q: &Queue<J>, n: usize) -> Vec<Arc<Waiter>> {
        let all: Vec<Arc<Waiter>> = (0..n).map(|_| Arc::default()).collect();
        q.lock().sleepers.extend(all.iter().cloned());
        all
    }

    #[test]
    fn a_push_wakes_a_sleeper_only_when_nobody_stands_by() {
        let q: Queue<u32> = Queue::new();
        let sleepers = pretend_sleepers(&q, 2);
        q.join();
        q.push(1).unwrap();
        assert_eq!(counts(&q, &sleepers), (2, 1, 0));
        // The standby thread takes it; the queue is empty, so nobody else is woken.
        assert_eq!(q.take(), Some(1));
        assert_eq!(counts(&q, &sleepers), (2, 0, 0));
        // Now nobody stands by: the next job wakes one sleeper, the one that slept last.
        q.push(2).unwrap();
        assert_eq!(counts(&q, &sleepers), (1, 1, 1));
        assert!(sleepers[1].woken.load(Ordering::Relaxed));
    }

    #[test]
    fn taking_with_jobs_left_keeps_someone_on_standby() {
        let q: Queue<u32> = Queue::new();
        let sleepers = pretend_sleepers(&q, 3);
        q.join();
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.take(), Some(1));
        assert_eq!(counts(&q, &sleepers), (2, 1, 1));
    }

    #[test]
    fn the_thread_that_slept_last_is_woken_first() {
        let q: Arc<Queue<u32>> = Arc::new(Queue::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let mut handles = Vec::new();
        for name in 0..3 {
            let (mine, tx) = (q.clone(), tx.clone());
            mine.join();
            handles.push(std::thread::spawn(move || {
                while mine.sleep() {
                    if let Some(job) = mine.take() {
                        tx.send((name, job)).unwrap();
                        mine.back_on_standby();
                    }
                }
            }));
            // Each goes to sleep before the next starts, so they sleep in the order 0, 1, 2.
            while q.lock().sleepers.len() < name + 1 {
                std::thread::yield_now();
            }
        }
        q.push(10).unwrap();
        assert_eq!(rx.recv().unwrap(), (2, 10));
        // Thread 2 goes back to sleep last, so it serves the next job too.
        while q.lock().sleepers.len() < 3 {
            std::thread::yield_now();
        }
        q.push(11).unwrap();
        assert_eq!(rx.recv().unwrap(), (2, 11));
        q.close();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn a_bounded_queue_refuses_past_its_limit() {
        let q: Queue<u32> = Queue::with_limit(Some(2));
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.push(3), Err(PushError::Full));
        q.join();
        assert_eq!(q.take(), Some(1));
        q.push(3).unwrap();
    }

    #[test]
    fn sleepers_wake_for_jobs_and_exit_on_close() {
        let q: Arc<Queue<u32>> = Arc::new(Queue::new());
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || {
                q.join();
                let mut got = Vec::new();
                loop {
                    while let Some(j) = q.take() {
                        got.push(j);
                        q.back_on_standby();
                    }
                    if !q.sleep() {
                        return got;
                    }
                }
            })
        };
        for i in 0..100 {
            q.push(i).unwrap();
        }
        while !q.lock().jobs.is_empty() {
            std::thread::yield_now();
        }
        q.close();
        assert_eq!(q.push(7), Err(PushError::Closed));
        assert_eq!(worker.join().unwrap(), (0..100).collect::<Vec<_>>());
    }
}
