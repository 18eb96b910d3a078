//! Counters exposed at `/_imgrelay/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::log_writer::LogDrops;

use crate::cache::CacheStats;
use crate::sync::lock;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One route's latency histogram: cumulative counts are computed when rendering.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Answered requests, counted and timed.
#[derive(Debug, Default, Clone)]
struct Responses {
    counts: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
}

impl Responses {
    fn add(&mut self, other: &Responses) {
        for (key, n) in &other.counts {
            *self.counts.entry(*key).or_default() += n;
        }
        for (route, h) in &other.latency {
            let sum = self.latency.entry(route).or_default();
            for (a, b) in sum.buckets.iter_mut().zip(h.buckets) {
                *a += b;
            }
            sum.count += h.count;
            sum.sum += h.sum;
        }
    }
}

/// Request counters are kept in this many shards, each thread writing to its own, so that
/// runtime threads answering at once do not queue on one lock; a scrape sums them.
const RESPONSE_SHARDS: usize = 8;

/// A value alone on its cache lines, so that shards written by different cores do not share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// The shard the calling thread writes to.
fn response_shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = (NEXT.fetch_add(1, Ordering::Relaxed) % RESPONSE_SHARDS as u64) as usize;
    }
    SHARD.with(|s| *s)
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    responses: [Padded<Mutex<Responses>>; RESPONSE_SHARDS],
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
    page_proxy_errors: Mutex<BTreeMap<&'static str, u64>>,
    rewrite_errors: Mutex<BTreeMap<&'static str, u64>>,
    rewriter_bailouts: Mutex<BTreeMap<&'static str, u64>>,
    /// Open client connections by plane.
    connections_open: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections the server closed, by plane and reason.
    connection_closes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    accept_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Upstream fetches started (after the source cache and single-flight).
    pub upstream_fetches: AtomicU64,
    /// Transforms run (after the variant cache and single-flight).
    pub transforms: AtomicU64,
    /// Access and error lines dropped because the log writer fell behind.
    log_drops: OnceLock<LogDrops>,
}

/// How full one bounded stage (transforms, fetches) is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StageLoad {
    pub queued: usize,
    pub running: usize,
}

/// A cache's counters under a label.
pub(crate) struct CacheView<'a> {
    pub name: &'static str,
    pub stats: &'a CacheStats,
    pub budget: u64,
    /// Work finished and cached after every request waiting for it had gone.
    pub abandoned: u64,
}

impl Metrics {
    /// One answered request; `elapsed` is the time until its response head was ready
    /// (streamed bodies continue after it).
    pub(crate) fn response(&self, route: &'static str, status: u16, elapsed: Duration) {
        let mut r = lock(&self.responses[response_shard()].0);
        *r.counts.entry((route, status)).or_default() += 1;
        r.latency
            .entry(route)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn upstream_error(&self, kind: &'static str) {
        bump(&self.upstream_errors, kind);
    }

    /// The blog origin failed: `connect`, `timeout`, `body`, `body_timeout` …
    pub(crate) fn page_proxy_error(&self, kind: &'static str) {
        bump(&self.page_proxy_errors, kind);
    }

    /// A request body sent to `/_imgrelay/rewrite` stopped early.
    pub(crate) fn rewrite_error(&self, kind: &'static str) {
        bump(&self.rewrite_errors, kind);
    }

    /// The rewriter passed (the rest of) a document through unchanged, by reason.
    pub(crate) fn rewriter_bailout(&self, reason: &'static str) {
        bump(&self.rewriter_bailouts, reason);
    }

    pub(crate) fn connection_opened(&self, plane: &'static str) {
        bump(&self.connections_open, plane);
    }

    pub(crate) fn connection_ended(&self, plane: &'static str) {
        let mut open = lock(&self.connections_open);
        if let Some(n) = open.get_mut(plane) {
            *n = n.saturating_sub(1);
        }
    }

    /// The server closed a connection: `header_timeout`, `idle`, `send_timeout`, `evicted`.
    pub(crate) fn connection_closed(&self, plane: &'static str, reason: &'static str) {
        *lock(&self.connection_closes)
            .entry((plane, reason))
            .or_default() += 1;
    }

    /// Where the log writer counts the lines it had to drop.
    pub(crate) fn count_log_drops(&self, counter: LogDrops) {
        let _ = self.log_drops.set(counter);
    }

    pub(crate) fn accept_error(&self, plane: &'static str) {
        bump(&self.accept_errors, plane);
    }

    pub(crate) fn render(
        &self,
        caches: &[CacheView<'_>],
        transforms: StageLoad,
        fetches: StageLoad,
    ) -> String {
        let mut out = String::new();
        let mut responses = Responses::default();
        for shard in &self.responses {
            responses.add(&lock(&shard.0));
        }
        out.push_str("# TYPE imgrelay_requests_total counter\n");
        for ((route, status), n) in &responses.counts {
            let _ = writeln!(
                out,
                "imgrelay_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        Self::render_latency(&responses.latency, &mut out);
        for (name, kind, label, map) in [
            (
                "imgrelay_upstream_errors_total",
                "counter",
                "kind",
                &self.upstream_errors,
            ),
            (
                "imgrelay_page_proxy_errors_total",
                "counter",
                "kind",
                &self.page_proxy_errors,
            ),
            (
                "imgrelay_rewrite_body_errors_total",
                "counter",
                "kind",
                &self.rewrite_errors,
            ),
            (
                "imgrelay_rewriter_bailouts_total",
                "counter",
                "reason",
                &self.rewriter_bailouts,
            ),
            (
                "imgrelay_connections_open",
                "gauge",
                "plane",
                &self.connections_open,
            ),
            (
                "imgrelay_accept_errors_total",
                "counter",
                "plane",
                &self.accept_errors,
            ),
        ] {
            let map = lock(map).clone();
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (value, n) in map {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
            }
        }
        let closes = lock(&self.connection_closes).clone();
        out.push_str("# TYPE imgrelay_connections_closed_total counter\n");
        for ((plane, reason), n) in closes {
            let _ = writeln!(
                out,
                "imgrelay_connections_closed_total{{plane=\"{plane}\",reason=\"{reason}\"}} {n}"
            );
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        if let Some(heap) = crate::allocator::heap() {
            let _ = writeln!(out, "# TYPE imgrelay_heap_bytes gauge");
            for (state, bytes) in [
                ("in_use", heap.in_use),
                ("free", heap.free),
                ("mapped", heap.mapped),
            ] {
                let _ = writeln!(out, "imgrelay_heap_bytes{{state=\"{state}\"}} {bytes}");
            }
        }
        if let Some(drops) = self.log_drops.get() {
            let _ = writeln!(
                out,
                "# TYPE imgrelay_log_lines_dropped_total counter\nimgrelay_log_lines_dropped_total {}",
                drops.count()
            );
        }
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
            "# TYPE imgrelay_queue_depth gauge\nimgrelay_queue_depth {}\n\
             # TYPE imgrelay_transforms_running gauge\nimgrelay_transforms_running {}\n\
             # TYPE imgrelay_fetch_queue_depth gauge\nimgrelay_fetch_queue_depth {}\n\
             # TYPE imgrelay_fetches_running gauge\nimgrelay_fetches_running {}",
            transforms.queued, transforms.running, fetches.queued, fetches.running
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
        out.push_str("# TYPE imgrelay_cache_abandoned_total counter\n");
        for c in caches {
            let _ = writeln!(
                out,
                "imgrelay_cache_abandoned_total{{cache=\"{}\"}} {}",
                c.name, c.abandoned
            );
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

    fn render_latency(latency: &BTreeMap<&'static str, Histogram>, out: &mut String) {
        let name = "imgrelay_request_duration_seconds";
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (route, h) in latency {
            let mut cumulative = 0;
            for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}\n\
                 {name}_sum{{route=\"{route}\"}} {sum}\n\
                 {name}_count{{route=\"{route}\"}} {count}",
                count = h.count,
                sum = h.sum,
            );
        }
    }
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    let mut map = lock(map);
    *map.entry(key).or_default() += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_histogram_is_cumulative() {
        let m = Metrics::default();
        m.response("page", 200, Duration::from_millis(3));
        m.response("page", 200, Duration::from_millis(30));
        m.response("page", 502, Duration::from_secs(60));
        let text = m.render(&[], StageLoad::default(), StageLoad::default());
        let line = |s: &str| text.lines().any(|l| l == s);
        let name = "imgrelay_request_duration_seconds";
        assert!(
            line(&format!("{name}_bucket{{route=\"page\",le=\"0.001\"}} 0")),
            "{text}"
        );
        assert!(
            line(&format!("{name}_bucket{{route=\"page\",le=\"0.005\"}} 1")),
            "{text}"
        );
        assert!(
            line(&format!("{name}_bucket{{route=\"page\",le=\"0.05\"}} 2")),
            "{text}"
        );
        assert!(
            line(&format!("{name}_bucket{{route=\"page\",le=\"10\"}} 2")),
            "{text}"
        );
        assert!(
            line(&format!("{name}_bucket{{route=\"page\",le=\"+Inf\"}} 3")),
            "{text}"
        );
        assert!(line(&format!("{name}_count{{route=\"page\"}} 3")), "{text}");
    }
}
