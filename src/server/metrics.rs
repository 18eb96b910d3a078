//! Counters exposed at `/_imgrelay/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::cache::CacheStats;

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Upstream fetches started (after the source cache and single-flight).
    pub upstream_fetches: AtomicU64,
    /// Transforms run (after the variant cache and single-flight).
    pub transforms: AtomicU64,
}

/// A cache's counters under a label.
pub struct CacheView<'a> {
    pub name: &'static str,
    pub stats: &'a CacheStats,
    pub budget: u64,
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((route, status)).or_default() += 1;
    }

    pub fn upstream_error(&self, kind: &'static str) {
        let mut map = self
            .upstream_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(kind).or_default() += 1;
    }

    pub fn render(&self, caches: &[CacheView<'_>], queued: usize, running: usize) -> String {
        let mut out = String::new();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.push_str("# TYPE imgrelay_requests_total counter\n");
        for ((route, status), n) in requests {
            let _ = writeln!(
                out,
                "imgrelay_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let errors = self
            .upstream_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.push_str("# TYPE imgrelay_upstream_errors_total counter\n");
        for (kind, n) in errors {
            let _ = writeln!(out, "imgrelay_upstream_errors_total{{kind=\"{kind}\"}} {n}");
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# TYPE imgrelay_upstream_fetches_total counter\nimgrelay_upstream_fetches_total {}",
            load(&self.upstream_fetches)
        );
        let _ = writeln!(
            out,
            "# TYPE imgrelay_transforms_total counter\nimgrelay_transforms_total {}",
            load(&self.transforms)
        );
        let _ = writeln!(
            out,
            "# TYPE imgrelay_queue_depth gauge\nimgrelay_queue_depth {queued}\n\
             # TYPE imgrelay_transforms_running gauge\nimgrelay_transforms_running {running}"
        );
        for (metric, kind, get) in [
            (
                "hits_total",
                "counter",
                (|s| &s.hits) as fn(&CacheStats) -> &AtomicU64,
            ),
            ("misses_total", "counter", |s| &s.misses),
            ("coalesced_total", "counter", |s| &s.coalesced),
            ("evictions_total", "counter", |s| &s.evictions),
            ("oversize_total", "counter", |s| &s.oversize),
            ("negative_hits_total", "counter", |s| &s.negative_hits),
            ("bytes", "gauge", |s| &s.bytes),
            ("entries", "gauge", |s| &s.entries),
        ] {
            let _ = writeln!(out, "# TYPE imgrelay_cache_{metric} {kind}");
            for c in caches {
                let _ = writeln!(
                    out,
                    "imgrelay_cache_{metric}{{cache=\"{}\"}} {}",
                    c.name,
                    load(get(c.stats))
                );
            }
        }
        out.push_str("# TYPE imgrelay_cache_budget_bytes gauge\n");
        for c in caches {
            let _ = writeln!(
                out,
                "imgrelay_cache_budget_bytes{{cache=\"{}\"}} {}",
                c.name, c.budget
            );
        }
        out
    }
}
