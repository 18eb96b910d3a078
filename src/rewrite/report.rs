//! What happened to each image reference of a document (`--report`, logs, metrics).

use std::borrow::Cow;

use serde::Serialize;

use super::hints::{SizeHint, SizeStatus};
use crate::probe::{HintAgreement, Probe};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Replaced by a proxied URL.
    Rewritten,
    /// Left as written: not ours to proxy (other host, relative, `data:`).
    Kept,
    /// Ours to proxy but unusable (bad inner URL): left as written.
    Skipped,
}

/// The size hint as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HintReport {
    pub raw: String,
    pub status: SizeStatus,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl HintReport {
    pub fn new(raw: &str, hint: &SizeHint) -> HintReport {
        HintReport {
            raw: raw.to_string(),
            status: hint.status,
            width: hint.size.map(|s| s.0),
            height: hint.size.map(|s| s.1),
        }
    }
}

/// One image reference found in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefReport {
    /// `img[src]`, `div[style]`, `front-matter:photos[1]` …
    pub place: String,
    /// The URL exactly as written (markup escapes included).
    pub original: String,
    pub action: Action,
    pub reason: Cow<'static, str>,
    /// The absolute upstream URL, when one was found.
    pub upstream: Option<String>,
    pub size_hint: Option<HintReport>,
    /// What probing the upstream found (`rewrite --probe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// How the size hint compares with the probed picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<HintAgreement>,
}

/// Counts kept whether or not the entries themselves are collected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rewritten: usize,
    pub kept: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn add(&mut self, action: Action) {
        match action {
            Action::Rewritten => self.rewritten += 1,
            Action::Kept => self.kept += 1,
            Action::Skipped => self.skipped += 1,
        }
    }
}
