//! The job queue and the rule for waking threads.
//!
//! A thread is *sleeping* (detached, waiting on the condvar), on *standby* (awake and about to
//! take a job once it holds the GIL), or *running* a job. Submitting wakes a sleeper only when
//! nobody is on standby; taking a job wakes a sleeper only when jobs remain and nobody else is
//! on standby. So under load the GIL holder drains the queue without a thread switch per job,
//! and exactly one thread waits for the GIL, ready to serve the queue the moment the app
//! releases it.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

pub(super) struct Queue<J> {
    state: Mutex<State<J>>,
    wake: Condvar,
    /// The most jobs waiting for a thread; `None` for no bound beyond the connection cap.
    limit: Option<usize>,
}

struct State<J> {
    jobs: VecDeque<J>,
    sleeping: usize,
    standby: usize,
    /// Wake-ups sent and not yet taken by a sleeper (proof against spurious wake-ups).
    signals: usize,
    /// Threads asked to leave the pool (`shrink`) and not yet gone.
    leaving: usize,
    /// Threads running a job (for the metrics).
    running: usize,
    closed: bool,
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
            sleeping: 0,
            standby: 0,
            signals: 0,
            leaving: 0,
            running: 0,
            closed: false,
        };
        Queue {
            state: Mutex::new(state),
            wake: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves one sleeper to standby.
    fn wake_one(&self, st: &mut State<J>) {
        if st.sleeping > 0 {
            st.sleeping -= 1;
            st.standby += 1;
            st.signals += 1;
            self.wake.notify_one();
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
        (st.jobs.len(), st.sleeping + st.standby, st.running)
    }

    /// Called on standby with nothing to take (and Python detached): sleeps until woken, and
    /// returns on standby. `false` when the thread should exit: the queue is closed and empty,
    /// or the pool is shrinking.
    pub(super) fn sleep(&self) -> bool {
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
            st.sleeping += 1;
            while st.signals == 0 && !st.closed && st.leaving == 0 {
                st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.signals > 0 {
                // The waker already counted this thread on standby.
                st.signals -= 1;
            } else {
                st.sleeping -= 1;
                st.standby += 1;
            }
        }
    }

    /// Asks one thread to leave: the next to go idle (or to finish a job) exits.
    pub(super) fn shrink(&self) {
        self.lock().leaving += 1;
        self.wake.notify_all();
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
        self.lock().closed = true;
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// (sleeping, standby, signals), read under one lock.
    fn counts<J>(q: &Queue<J>) -> (usize, usize, usize) {
        let st = q.lock();
        (st.sleeping, st.standby, st.signals)
    }

    #[test]
    fn a_push_wakes_a_sleeper_only_when_nobody_stands_by() {
        let q: Queue<u32> = Queue::new();
        {
            let mut st = q.lock();
            st.sleeping = 2;
            st.standby = 1;
        }
        q.push(1).unwrap();
        assert_eq!(counts(&q), (2, 1, 0));
        // The standby thread takes it; the queue is empty, so nobody else is woken.
        assert_eq!(q.take(), Some(1));
        assert_eq!(counts(&q), (2, 0, 0));
        // Now nobody stands by: the next job wakes one sleeper.
        q.push(2).unwrap();
        assert_eq!(counts(&q), (1, 1, 1));
    }

    #[test]
    fn taking_with_jobs_left_keeps_someone_on_standby() {
        let q: Queue<u32> = Queue::new();
        q.lock().sleeping = 3;
        q.join();
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.take(), Some(1));
        assert_eq!(counts(&q), (2, 1, 1));
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
