//! Where log lines go: appended to a bounded buffer in memory, written out in batches by one
//! thread. A request never waits for the terminal, pipe or disk behind the log, and appending a
//! line allocates nothing: the two buffers are allocated once, at their full size.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use crate::sync::lock;

/// Bytes of lines held for the writer at most (about 7,000 access lines). Beyond that lines are
/// dropped and counted, not waited for.
const CAPACITY: usize = 1 << 20;
/// How long the writer lets lines gather after a batch: under load one write (and one wake-up)
/// per pause instead of one per line; when idle the first line is written at once.
const BATCH_PAUSE: Duration = Duration::from_millis(20);

struct Pending {
    lines: Vec<u8>,
    /// The writer sleeps on the condition variable and wants a notification for the next line.
    waiting: bool,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    dropped: AtomicU64,
}

impl Shared {
    fn append(&self, line: &[u8]) {
        let notify = {
            let mut pending = lock(&self.pending);
            if pending.lines.len() + line.len() > CAPACITY {
                drop(pending);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pending.lines.extend_from_slice(line);
            std::mem::take(&mut pending.waiting)
        };
        if notify {
            self.wake.notify_one();
        }
    }

    /// The next batch, swapped into `batch`; false once closing and nothing is left.
    fn take(&self, batch: &mut Vec<u8>) -> bool {
        let mut pending = lock(&self.pending);
        while pending.lines.is_empty() {
            if pending.closing {
                return false;
            }
            pending.waiting = true;
            pending = self.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        pending.waiting = false;
        std::mem::swap(&mut pending.lines, batch);
        true
    }

    fn closing(&self) -> bool {
        lock(&self.pending).closing
    }
}

/// Hands tracing's formatter a sink into the shared buffer.
#[derive(Clone)]
pub(crate) struct LogWriter(Arc<Shared>);

/// Lines dropped because the writer fell behind, for the metrics.
#[derive(Clone)]
pub(crate) struct LogDrops(Arc<Shared>);

impl std::fmt::Debug for LogDrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LogDrops").field(&self.count()).finish()
    }
}

impl LogDrops {
    pub(crate) fn count(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// Held for the life of the process: dropping it writes what is still buffered and stops the
/// writer thread.
pub(crate) struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        lock(&self.shared.pending).closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl LogWriter {
    /// Starts the writer thread over `out`.
    pub(crate) fn start(mut out: impl Write + Send + 'static) -> io::Result<(LogWriter, LogGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(CAPACITY),
                waiting: false,
                closing: false,
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("imgrelay-log".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(CAPACITY);
                while writer.take(&mut batch) {
                    // Nowhere to report a failing log; the lines are lost either way.
                    let _ = out.write_all(&batch).and_then(|()| out.flush());
                    batch.clear();
                    if !writer.closing() {
                        std::thread::sleep(BATCH_PAUSE);
                    }
                }
            })?;
        Ok((
            LogWriter(shared.clone()),
            LogGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    pub(crate) fn drops(&self) -> LogDrops {
        LogDrops(self.0.clone())
    }
}

/// One formatted event on its way into the buffer.
pub(crate) struct LineSink<'a>(&'a Shared);

impl Write for LineSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing's formatter writes each event whole, in one call: a line is kept or dropped
        // whole.
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> LineSink<'a> {
        LineSink(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_and_the_guard_flushes() {
        let out = Collect::default();
        let (writer, guard) = LogWriter::start(out.clone()).unwrap();
        let mut expected = Vec::new();
        for i in 0..5000 {
            let line = format!("line {i}\n");
            writer.make_writer().write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        drop(guard);
        assert_eq!(*lock(&out.0), expected);
        assert_eq!(writer.drops().count(), 0);
    }

    #[test]
    fn a_full_buffer_drops_whole_lines_and_counts_them() {
        /// Blocks until told to go on, so the buffer fills.
        struct Stuck(Arc<(Mutex<bool>, Condvar)>);
        impl Write for Stuck {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let (go, cv) = &*self.0;
                let mut go = lock(go);
                while !*go {
                    go = cv.wait(go).unwrap();
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (writer, guard) = LogWriter::start(Stuck(gate.clone())).unwrap();
        let line = [b'x'; 1000];
        // The first batch may already be with the stuck writer; the buffer then fills.
        for _ in 0..(2 * CAPACITY / line.len() + 10) {
            writer.make_writer().write_all(&line).unwrap();
        }
        let dropped = writer.drops().count();
        assert!(dropped > 0);
        assert!(lock(&writer.0.pending).lines.len() <= CAPACITY);
        *lock(&gate.0) = true;
        gate.1.notify_all();
        drop(guard);
    }
}
