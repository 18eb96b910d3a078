//! `imgrelay rewrite --probe`: a first pass finds every upstream the documents would proxy,
//! each is probed once (or taken from the probe cache on disk), and the summary at the end
//! says what was found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fetch::FetchSettings;
use crate::pipeline::Limits;
use crate::probe::{probe_all, HintAgreement, Probe, ProbeStatus};
use crate::rewrite::{Action, Probes, RefReport};

/// Where probe results are kept between runs unless `--probe-cache` says otherwise.
pub const DEFAULT_CACHE: &str = ".imgrelay-probes.json";

/// `--probe` and its companions.
#[derive(Debug, Clone)]
pub struct ProbeArgs {
    pub cache: PathBuf,
    /// How long a cached result is trusted.
    pub max_age: Duration,
    pub fail_on_broken: bool,
    /// Dominant colours as `<img>` backgrounds (`--placeholder`).
    pub placeholder: bool,
}

/// The upstreams of the rewritten references of a first pass, in document order.
pub(super) fn rewritten_upstreams(refs: Vec<RefReport>) -> impl Iterator<Item = String> {
    refs.into_iter()
        .filter(|r| r.action == Action::Rewritten)
        .filter_map(|r| r.upstream)
}

/// One cached probe.
#[derive(Serialize, Deserialize)]
struct Cached {
    /// Seconds since the Unix epoch.
    at: u64,
    probe: Probe,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Probes `upstreams` (deduplicated), answering from the cache what it holds young enough;
/// pictures that were broken are always probed again, since they may have been fixed.
pub(super) fn run(
    settings: FetchSettings,
    limits: Limits,
    upstreams: Vec<String>,
    args: &ProbeArgs,
) -> Result<(Arc<Probes>, usize, Duration), String> {
    let mut seen = HashSet::new();
    let upstreams: Vec<String> = upstreams
        .into_iter()
        .filter(|u| seen.insert(u.clone()))
        .collect();
    let mut cache = read_cache(&args.cache);
    let fresh_from = now().saturating_sub(args.max_age.as_secs());
    let known: HashMap<String, Probe> = upstreams
        .iter()
        .filter_map(|u| {
            let c = cache.get(u)?;
            let p = &c.probe;
            // A colour is wanted and was not asked for then (an unsized SVG has none).
            let lacks_colour = args.placeholder && p.colour.is_none() && p.width.is_some();
            (c.at >= fresh_from && p.status == ProbeStatus::Ok && !lacks_colour)
                .then(|| (u.clone(), p.clone()))
        })
        .collect();
    let run = probe_all(
        settings,
        upstreams,
        known,
        args.placeholder.then_some(limits),
    )?;
    let at = now();
    for (url, probe) in &run.probes {
        if probe.status != ProbeStatus::Ok {
            cache.remove(url);
        } else if cache.get(url).is_none_or(|c| c.at < fresh_from) {
            cache.insert(
                url.clone(),
                Cached {
                    at,
                    probe: probe.clone(),
                },
            );
        }
    }
    cache.retain(|_, c| c.at >= fresh_from);
    if let Err(e) = write_cache(&args.cache, &cache) {
        eprintln!(
            "imgrelay rewrite: cannot write probe cache {}: {e}",
            args.cache.display()
        );
    }
    Ok((Arc::new(run.probes), run.requests, run.elapsed))
}

/// An unreadable or corrupt cache is an empty one: it only saves time. A colour goes into
/// markup, so an entry whose colour is not `#rrggbb` is dropped (the file may have been edited).
fn read_cache(path: &Path) -> BTreeMap<String, Cached> {
    let mut cache: BTreeMap<String, Cached> = std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    cache.retain(|_, c| c.probe.colour.as_deref().is_none_or(is_hex_colour));
    cache
}

fn is_hex_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Written next to its place and renamed over it, so a cut run leaves the old cache whole.
fn write_cache(path: &Path, cache: &BTreeMap<String, Cached>) -> std::io::Result<()> {
    let text = serde_json::to_vec(cache).map_err(std::io::Error::other)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)
}

/// What the references of every document came to, for the summary line.
#[derive(Debug, Default)]
pub(super) struct Tally {
    references: usize,
    rewritten: usize,
    broken: BTreeMap<&'static str, usize>,
    mismatches: usize,
}

impl Tally {
    pub(super) fn add(&mut self, refs: &[RefReport]) {
        for r in refs {
            self.references += 1;
            if r.action != Action::Rewritten {
                continue;
            }
            self.rewritten += 1;
            if let Some(p) = r.probe.as_ref().filter(|p| p.status != ProbeStatus::Ok) {
                *self.broken.entry(p.status.as_str()).or_default() += 1;
            }
            self.mismatches += usize::from(r.hint == Some(HintAgreement::Mismatch));
        }
    }

    pub(super) fn broken(&self) -> usize {
        self.broken.values().sum()
    }

    /// `probed P pictures (R upstream requests) in S s: N references, W rewritten, B broken
    /// (not-found 1, timeout 1), M hint mismatches`.
    pub(super) fn line(&self, pictures: usize, requests: usize, elapsed: Duration) -> String {
        let reasons: Vec<String> = self
            .broken
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let reasons = if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        };
        format!(
            "probed {pictures} pictures ({requests} upstream requests) in {:.1} s: {} references, \
             {} rewritten, {} broken{reasons}, {} hint mismatches",
            elapsed.as_secs_f64(),
            self.references,
            self.rewritten,
            self.broken(),
            self.mismatches
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_colour_that_is_not_hex_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probes.json");
        let entry = |colour: &str| {
            format!(
                r#"{{"at":1,"probe":{{"status":"ok","width":1,"height":1,"colour":"{colour}"}}}}"#
            )
        };
        let text = format!(
            r#"{{"http://a/1.jpg":{},"http://a/2.jpg":{}}}"#,
            entry("#0a0B0c"),
            entry("red; background-image: url(x)")
        );
        std::fs::write(&path, text).unwrap();
        let cache = read_cache(&path);
        assert_eq!(cache.keys().collect::<Vec<_>>(), ["http://a/1.jpg"]);
    }
}
