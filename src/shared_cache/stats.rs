//! The shared tier's counters, as the metrics page shows them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy)]
pub(super) enum Tier {
    Variants,
    Sources,
}

const TIERS: [&str; 2] = ["variants", "sources"];

#[derive(Debug, Clone, Copy)]
pub(super) enum Lookup {
    Hit,
    Miss,
    /// A value that was not one of ours (or damaged): read as a miss.
    Corrupt,
    /// Redis failed or timed out.
    Error,
    /// Not asked: not connected yet, or resting after a failure.
    Skipped,
}

const LOOKUPS: [&str; 5] = ["hit", "miss", "corrupt", "error", "skipped"];

#[derive(Debug, Clone, Copy)]
pub(super) enum Write {
    Stored,
    Error,
    /// Too many writes in flight.
    Dropped,
    /// Larger than `max_entry_bytes`.
    Oversize,
}

const WRITES: [&str; 4] = ["stored", "error", "dropped", "oversize"];

#[derive(Debug, Clone, Copy)]
pub(super) enum LeaseOutcome {
    /// This instance makes the variant.
    Acquired,
    /// Another instance made it while this one waited.
    WaitedForResult,
    /// The owner's lease ended without a result; this instance took it over.
    TakenOver,
    /// The wait ran out; this instance made it too.
    WaitedInVain,
    Error,
}

const LEASES: [&str; 5] = [
    "acquired",
    "waited_for_result",
    "taken_over",
    "waited_in_vain",
    "error",
];

#[derive(Debug, Default)]
pub(super) struct SharedStats {
    lookups: [[AtomicU64; LOOKUPS.len()]; TIERS.len()],
    writes: [[AtomicU64; WRITES.len()]; TIERS.len()],
    leases: [AtomicU64; LEASES.len()],
}

impl SharedStats {
    pub(super) fn lookup(&self, tier: Tier, result: Lookup) {
        self.lookups[tier as usize][result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn write(&self, tier: Tier, result: Write) {
        self.writes[tier as usize][result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn lease(&self, outcome: LeaseOutcome) {
        self.leases[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn render(&self, up: bool, out: &mut String) {
        let _ = writeln!(
            out,
            "# TYPE imgrelay_shared_cache_up gauge\nimgrelay_shared_cache_up {}",
            u8::from(up)
        );
        render_table(
            out,
            "imgrelay_shared_cache_lookups_total",
            &LOOKUPS,
            &self.lookups,
        );
        render_table(
            out,
            "imgrelay_shared_cache_writes_total",
            &WRITES,
            &self.writes,
        );
        let _ = writeln!(out, "# TYPE imgrelay_shared_cache_leases_total counter");
        for (outcome, n) in LEASES.iter().zip(&self.leases) {
            let _ = writeln!(
                out,
                "imgrelay_shared_cache_leases_total{{outcome=\"{outcome}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

fn render_table<const N: usize>(
    out: &mut String,
    name: &str,
    results: &[&str; N],
    rows: &[[AtomicU64; N]; TIERS.len()],
) {
    let _ = writeln!(out, "# TYPE {name} counter");
    for (tier, row) in TIERS.iter().zip(rows) {
        for (result, n) in results.iter().zip(row) {
            let _ = writeln!(
                out,
                "{name}{{tier=\"{tier}\",result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}
