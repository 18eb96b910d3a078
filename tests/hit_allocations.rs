//! A cache hit allocates nothing: the whole process's allocations are counted while one
//! kept-alive connection asks for a cached variant again and again, with the access log on and
//! written by `imgrelay serve`'s own log writer.
//!
//! One test in this binary: the count is the process's, so nothing else may run beside it.
#![allow(unsafe_code)] // the counting allocator below: a `GlobalAlloc` is unsafe to implement

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{upstream, Origin, Server};
use imgrelay::config::LogSettings;

/// Counts every allocation and reallocation, then lets the system allocator do it.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts the access lines of hits that reach the log's output, storing nothing.
struct HitLines(Arc<AtomicU64>);

impl Write for HitLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The writer hands over whole lines only.
        let hits = buf
            .split(|&b| b == b'\n')
            .filter(|line| line.windows(9).any(|w| w == b"cache=HIT"))
            .count();
        self.0.fetch_add(hits as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends `request` and reads one answer whole into `buf`, allocating nothing.
fn exchange(socket: &mut std::net::TcpStream, request: &[u8], buf: &mut [u8]) -> (u16, usize) {
    socket.write_all(request).unwrap();
    let mut filled = 0;
    loop {
        let n = socket.read(&mut buf[filled..]).unwrap();
        assert!(n > 0, "connection closed");
        filled += n;
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(head) = response.parse(&buf[..filled]).unwrap() {
            let len = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                })
                .unwrap();
            let code = response.code.unwrap();
            while filled < head + len {
                let n = socket.read(&mut buf[filled..]).unwrap();
                assert!(n > 0, "connection closed mid-body");
                filled += n;
            }
            assert_eq!(filled, head + len, "nothing beyond one answer");
            return (code, len);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_allocate_nothing() {
    let hit_lines = Arc::new(AtomicU64::new(0));
    let settings = LogSettings {
        json: false,
        level: "info".into(),
    };
    let log = imgrelay::internals::log_to(&settings, HitLines(hit_lines.clone())).unwrap();
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let path = server.path(&upstream("photo-640x422.jpg"), "320x211");
    let addr = server.addr;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: imgrelay.test\r\nAccept: image/avif,image/webp,*/*\r\n\r\n"
    );
    const HITS: u64 = 2000;
    let counted = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let (status, miss_len) = exchange(&mut socket, request.as_bytes(), &mut buf);
        assert_eq!(status, 200);
        // Warm: the first hit fills the per-thread buffers (log line, date) of whichever
        // runtime thread serves it; a few more reach the other thread.
        for _ in 0..50 {
            assert_eq!(
                exchange(&mut socket, request.as_bytes(), &mut buf),
                (200, miss_len)
            );
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..HITS {
            assert_eq!(
                exchange(&mut socket, request.as_bytes(), &mut buf),
                (200, miss_len)
            );
        }
        ALLOCATIONS.load(Ordering::Relaxed) - before
    })
    .await
    .unwrap();
    drop(server);
    drop(log);
    // Every hit was logged, so the count covers the access log's path too.
    assert!(
        hit_lines.load(Ordering::Relaxed) >= HITS,
        "{} hit lines logged",
        hit_lines.load(Ordering::Relaxed)
    );
    // Timers and the runtime's bookkeeping may allocate now and then; a hit never does.
    assert!(
        counted * 100 < HITS,
        "{counted} allocations during {HITS} cache hits"
    );
    eprintln!("{counted} allocations during {HITS} cache hits");
}
