//! Bounded concurrency: a gate that lets a fixed number in at once and a bounded number wait,
//! refusing the rest at once, and the transform pool built on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PoolError {
    #[error("work queue is full")]
    Full,
    /// The job panicked (or the runtime is going away): it ended without a result.
    #[error("work ended without a result: {0}")]
    Panicked(String),
}

/// At most `size` holders at once; at most `queue` more wait for a place.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    size: usize,
}

/// Decrements the waiting count however the wait ends (granted or cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    pub(crate) fn new(size: usize, queue: usize) -> Gate {
        let size = size.max(1);
        Gate {
            permits: Arc::new(Semaphore::new(size)),
            waiting: AtomicUsize::new(0),
            queue,
            size,
        }
    }

    /// Waiting now.
    pub(crate) fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Inside now.
    pub(crate) fn running(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// A place, held until the permit is dropped; [`PoolError::Full`] at once when the
    /// queue is full.
    pub(crate) async fn enter(&self) -> Result<OwnedSemaphorePermit, PoolError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let admitted = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.queue).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return Err(PoolError::Full);
        }
        let _waiting = Waiting(&self.waiting);
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| PoolError::Panicked(e.to_string()))
    }
}

/// At most `workers` jobs run at once on blocking threads; at most `queue` more wait.
pub(crate) struct WorkPool {
    gate: Gate,
}

impl WorkPool {
    pub(crate) fn new(workers: usize, queue: usize) -> WorkPool {
        WorkPool {
            gate: Gate::new(workers, queue),
        }
    }

    /// Jobs waiting for a worker now.
    pub(crate) fn queued(&self) -> usize {
        self.gate.queued()
    }

    /// Jobs running now.
    pub(crate) fn running(&self) -> usize {
        self.gate.running()
    }

    /// Runs `job` on a worker, or fails at once with [`PoolError::Full`] when the queue is full.
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.gate.enter().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| PoolError::Panicked(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn full_queue_refuses_at_once() {
        let pool = Arc::new(WorkPool::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let p = pool.clone();
        let r = rx.clone();
        let running = tokio::spawn(async move {
            p.run(move || {
                let _ = r.lock().unwrap().recv();
            })
            .await
        });
        while pool.running() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let p = pool.clone();
        let queued = tokio::spawn(async move { p.run(|| 7).await });
        while pool.queued() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.run(|| 1).await, Err(PoolError::Full));
        tx.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap(), Ok(7));
        assert_eq!(pool.queued(), 0);
        assert_eq!(pool.run(|| 2).await, Ok(2));
    }
}
