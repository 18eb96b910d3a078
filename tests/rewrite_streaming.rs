//! The streaming API: any chunking of the input gives the output of one write, and a
//! document that overflows the memory cap is passed through whole.

mod common;

use std::sync::Arc;

use imgrelay::rewrite::{DocKind, Passthrough, RewriteContext, Rewriter};
use proptest::prelude::*;

fn context(max_memory_kb: usize) -> Arc<RewriteContext> {
    imgrelay::internals::rewrite_context(common::KEY_HEX, common::cli::PREFIX, max_memory_kb)
}

fn corpus() -> Vec<Vec<u8>> {
    let mut docs = Vec::new();
    for dir in ["articles/posts", "articles/pages", "seed", "conformance"] {
        let mut paths: Vec<_> = std::fs::read_dir(common::data(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        docs.extend(paths.into_iter().map(|p| std::fs::read(p).unwrap()));
    }
    docs
}

/// The output of `input` written in pieces cut at `cuts` (increasing, inside the input).
fn rewrite_cut(ctx: &Arc<RewriteContext>, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rw = Rewriter::new(ctx.clone(), DocKind::Auto, None, |b: &[u8]| {
        out.extend_from_slice(b)
    });
    let mut from = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        rw.write(&input[from..cut]);
        from = cut;
    }
    rw.end();
    out
}

fn rewrite_chunks(ctx: &Arc<RewriteContext>, input: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rw = Rewriter::new(ctx.clone(), DocKind::Auto, None, |b: &[u8]| {
        out.extend_from_slice(b)
    });
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        rw.write(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    rw.end();
    out
}

#[test]
fn rewriter_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rw = Rewriter::new(context(1024), DocKind::Html, None, |_: &[u8]| {});
    assert_send(&rw);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_chunking_gives_the_same_output(sizes in proptest::collection::vec(1usize..=64, 1..32)) {
        let ctx = context(1024);
        for doc in corpus() {
            let whole = rewrite_chunks(&ctx, &doc, &[doc.len().max(1)]);
            let chunked = rewrite_chunks(&ctx, &doc, &sizes);
            prop_assert!(whole == chunked, "chunked output differs (sizes {:?})", sizes);
        }
    }

    /// Cuts anywhere in the whole length of every document (`PROPTEST_RNG_SEED=N` replays a
    /// run).
    #[test]
    fn any_split_points_give_the_same_output(
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 1..24)
    ) {
        let ctx = context(1024);
        for doc in corpus().into_iter().filter(|d| d.len() > 1) {
            let mut cuts: Vec<usize> = picks.iter().map(|i| 1 + i.index(doc.len() - 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let whole = rewrite_cut(&ctx, &doc, &[]);
            let cut = rewrite_cut(&ctx, &doc, &cuts);
            prop_assert!(whole == cut, "output differs when cut at {:?}", cuts);
        }
    }
}

#[test]
fn overflowing_the_memory_cap_passes_the_rest_through_unchanged() {
    let ctx = context(16);
    let first = b"<p>a</p><img src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/a.jpg\" data-size=\"640,422\">";
    let huge = format!(
        "<img src=\"data:image/png;base64,{}\">",
        "A".repeat(200_000)
    );
    let last =
        b"<img src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/b.jpg\"><p>end</p>";
    let mut input = first.to_vec();
    input.extend_from_slice(huge.as_bytes());
    input.extend_from_slice(last);
    // A lexeme inside one written chunk needs no buffering, so only smaller chunks overflow.
    for sizes in [vec![7], vec![4096], vec![1, 63, 500], vec![65536]] {
        let mut out = Vec::new();
        let mut rw = Rewriter::new(ctx.clone(), DocKind::Html, None, |b: &[u8]| {
            out.extend_from_slice(b)
        });
        let mut rest = &input[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            rw.write(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        let summary = rw.end();
        assert!(
            matches!(summary.passthrough, Some(Passthrough::BailedOut(_))),
            "{sizes:?}"
        );
        // The first image was rewritten; from the huge tag on, every byte is the input's.
        let tail = &input[first.len()..];
        assert!(out.ends_with(tail), "remainder changed ({sizes:?})");
        let head = &out[..out.len() - tail.len()];
        assert!(head.starts_with(b"<p>a</p><img src=\"/p9x/"), "{sizes:?}");
        assert_eq!(common::cli::proxied(head).len(), 3, "{sizes:?}");
    }
}

/// What a chunk of input produced leaves with that chunk: only an unfinished tag at its end
/// can stay behind.
#[test]
fn each_write_hands_over_its_output_at_once() {
    let ctx = context(1024);
    let out = std::cell::RefCell::new(Vec::new());
    let mut rw = Rewriter::new(ctx, DocKind::Html, None, |b: &[u8]| {
        out.borrow_mut().extend_from_slice(b)
    });
    let img = "<img src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/a.jpg\">";
    let mut head = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>");
    for i in 0..100 {
        head.push_str(&format!("<p>paragraph {i}</p>\n"));
    }
    head.push_str(img);
    rw.write(head.as_bytes());
    rw.write(b"<p>unfinished");
    {
        let out = out.borrow();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("paragraph 99"), "{text}");
        assert!(
            text.contains(&format!("<img src=\"{}/", common::cli::PREFIX)),
            "{text}"
        );
        assert!(text.len() > head.len());
    }
    rw.write(b" paragraph</p>");
    rw.end();
    assert!(String::from_utf8_lossy(&out.borrow()).ends_with("<p>unfinished paragraph</p>"));
}
