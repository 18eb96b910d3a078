//! How long a worker thread serves without a pause before it offers its core to other threads.
//!
//! Under load a worker always finds another connection ready, so it never sleeps, and the kernel
//! takes its core away only at a scheduler tick (4 ms at the usual HZ=250). A process sharing the
//! cores — nginx in front, Redis, a client on the same machine — then waits a whole tick for its
//! turn, and its requests to us wait with it: that wait was most of a saturated machine's p99.
//! So at the end of each request a worker that has been serving for longer than its burst since
//! it last parked calls `sched_yield`, which returns at once when nothing else waits for the core.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static BURST: Cell<Burst> = const { Cell::new(Burst::NEVER) };
}

/// One thread's run since it last parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Burst {
    /// `None`: the thread never yields (not a runtime worker, or yielding turned off).
    limit: Option<Duration>,
    /// When the thread ended its first request since it last parked or yielded.
    since: Option<Instant>,
}

impl Burst {
    const NEVER: Burst = Burst {
        limit: None,
        since: None,
    };

    /// A request ended at `now`: whether the thread should offer its core now.
    fn request_done(&mut self, now: Instant) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        match self.since {
            Some(since) if now.saturating_duration_since(since) >= limit => {
                self.since = None;
                true
            }
            Some(_) => false,
            None => {
                self.since = Some(now);
                false
            }
        }
    }
}

/// For the runtime's `on_thread_start`: this thread yields after serving for `limit`.
pub(crate) fn thread_started(limit: Option<Duration>) {
    BURST.set(Burst { limit, since: None });
}

/// For the runtime's `on_thread_park`: the thread ran out of work and is about to sleep, which
/// gives its core away.
pub(crate) fn thread_parked() {
    BURST.set(Burst {
        since: None,
        ..BURST.get()
    });
}

/// At the end of every request: yields the core when this thread's burst is over.
pub(super) fn request_done() {
    let mut burst = BURST.get();
    if burst.limit.is_none() {
        return;
    }
    let yields = burst.request_done(Instant::now());
    BURST.set(burst);
    if yields {
        // SAFETY: sched_yield takes no arguments and only reschedules the calling thread.
        #[allow(unsafe_code)]
        unsafe {
            libc::sched_yield();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(200);

    fn worker() -> Burst {
        Burst {
            limit: Some(LIMIT),
            since: None,
        }
    }

    #[test]
    fn yields_once_per_burst_and_starts_a_new_one() {
        let t0 = Instant::now();
        let mut burst = worker();
        assert!(
            !burst.request_done(t0),
            "the first request starts the burst"
        );
        assert!(!burst.request_done(t0 + LIMIT / 2));
        assert!(burst.request_done(t0 + LIMIT));
        // The yield ended the burst: the next request starts another.
        assert!(!burst.request_done(t0 + LIMIT + LIMIT / 2));
        assert!(!burst.request_done(t0 + LIMIT * 2));
        assert!(burst.request_done(t0 + LIMIT * 3));
    }

    #[test]
    fn a_park_ends_the_burst() {
        let t0 = Instant::now();
        BURST.set(worker());
        let mut burst = BURST.get();
        assert!(!burst.request_done(t0));
        BURST.set(burst);
        thread_parked();
        let mut burst = BURST.get();
        assert_eq!(burst, worker(), "the limit is kept, the start forgotten");
        assert!(!burst.request_done(t0 + LIMIT * 10));
    }

    #[test]
    fn threads_without_a_limit_never_yield() {
        let t0 = Instant::now();
        let mut burst = Burst::NEVER;
        for step in 0..4 {
            assert!(!burst.request_done(t0 + LIMIT * step));
        }
        assert_eq!(burst, Burst::NEVER);
    }
}
