//! Streaming keeps memory flat: a 50 MB document needs no more peak RSS than a 1 MB one.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;

/// Writes an article-like HTML document of about `bytes` bytes built from corpus pages,
/// without holding it in memory (the child's RSS would include a forked copy of ours).
fn write_document(path: &std::path::Path, bytes: usize) -> usize {
    let page = std::fs::read(common::data("articles/pages/page-utf8.html")).unwrap();
    let post = std::fs::read(common::data("articles/posts/mixed-01.md")).unwrap();
    let body_start = memchr::memmem::find(&post[4..], b"\n---\n").map_or(0, |i| i + 9);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&page).unwrap();
    let mut written = page.len();
    while written < bytes {
        f.write_all(&post[body_start..]).unwrap();
        written += post.len() - body_start;
    }
    f.flush().unwrap();
    written
}

/// Runs `imgrelay rewrite` over `input` via stdin/stdout; returns (peak RSS in KB, output bytes).
fn peak_rss_kb(env: &common::cli::Env, input: &std::path::Path) -> (i64, usize) {
    // Reaped with wait4 below, which also reports the peak RSS.
    #[allow(clippy::zombie_processes)]
    let mut child = common::cli::bin()
        .args(["rewrite", "--config", env.config.to_str().unwrap()])
        .stdin(Stdio::from(std::fs::File::open(input).unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child. A test's helper, not the
    // product: the standard library reports no child's peak memory.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    #[allow(unsafe_code)]
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "rewrite failed"
    );
    (usage.ru_maxrss, reader.join().unwrap())
}

#[test]
fn peak_memory_does_not_grow_with_document_size() {
    let env = common::cli::env("");
    let small = env.dir.path().join("small.html");
    let large = env.dir.path().join("large.html");
    write_document(&small, 1 << 20);
    let big = write_document(&large, 50 << 20);
    let (rss_small, out_small) = peak_rss_kb(&env, &small);
    let (rss_large, out_large) = peak_rss_kb(&env, &large);
    eprintln!("peak RSS: 1 MB input {rss_small} KB, 50 MB input {rss_large} KB");
    assert!(
        out_small > 1 << 20 && out_large > big,
        "outputs were produced"
    );
    assert!(
        rss_large <= rss_small + 4 * 1024,
        "50 MB document peaked at {rss_large} KB vs {rss_small} KB for 1 MB"
    );
}
