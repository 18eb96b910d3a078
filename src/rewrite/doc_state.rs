//! What the rewriter knows of one document while it runs: the context, the memo of signed
//! URLs, how many images were seen, the counts and the report.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::context::{Markup, Memo, Outcome, ProxiedId, RewriteContext};
use super::hints::{SizeHint, SizeStatus};
use super::report::{Action, Counts, HintReport, RefReport};
use super::tag::Edits;
use crate::pipeline::Options;
use crate::probe::{HintAgreement, Probe};

/// Probe results by upstream URL.
pub type Probes = HashMap<String, Probe>;

/// Per-document state shared by the handlers.
#[derive(Debug)]
pub(crate) struct DocState {
    pub ctx: Arc<RewriteContext>,
    pub memo: Memo,
    pub images_seen: usize,
    pub counts: Counts,
    pub report: Option<Vec<RefReport>>,
    /// Every proxied URL written, in document order, when collected (`rewrite --warm`).
    pub advertised: Option<Vec<String>>,
    /// What probing found, when the document is rewritten after a probe.
    pub probes: Option<Arc<Probes>>,
    /// Probed pictures' dominant colours as the `<img>` background (`--placeholder`).
    pub placeholder: bool,
    /// Attribute edits of the element being handled.
    pub(super) edits: Edits,
}

/// A hint with its raw text, for reports.
pub(crate) type Hint<'a> = Option<(&'a str, SizeHint)>;

impl DocState {
    pub(crate) fn new(ctx: Arc<RewriteContext>, collect_report: bool) -> DocState {
        DocState {
            ctx,
            memo: Memo::default(),
            images_seen: 0,
            counts: Counts::default(),
            report: collect_report.then(Vec::new),
            advertised: None,
            probes: None,
            placeholder: false,
            edits: Edits::default(),
        }
    }

    /// Counts one reference and, when reports are collected, describes it.
    pub(crate) fn record(
        &mut self,
        place: impl FnOnce() -> String,
        original: &str,
        action: Action,
        reason: Cow<'static, str>,
        upstream: Option<&str>,
        hint: Hint<'_>,
    ) {
        self.counts.add(action);
        if let Some(report) = &mut self.report {
            let reason = match hint {
                Some((_, h)) if h.status != SizeStatus::Ok => {
                    Cow::Owned(format!("{reason}; data-size {}", hint_note(h.status)))
                }
                _ => reason,
            };
            let probe = upstream
                .zip(self.probes.as_ref())
                .and_then(|(u, probes)| probes.get(u))
                .cloned();
            let agreement = hint
                .and_then(|(_, h)| h.size)
                .zip(probe.as_ref().and_then(Probe::size))
                .map(|(hinted, real)| HintAgreement::of(hinted, real));
            report.push(RefReport {
                place: place(),
                original: original.to_string(),
                action,
                reason,
                upstream: upstream.map(str::to_string),
                size_hint: hint.map(|(raw, h)| HintReport::new(raw, &h)),
                probe,
                hint: agreement,
            });
        }
    }

    /// What probing found about the picture `raw` names, if it was probed.
    pub(crate) fn probed(&mut self, raw: &str, markup: Markup) -> Option<Probe> {
        let probes = self.probes.as_ref()?;
        let upstream = self.memo.upstream(&self.ctx, raw, markup)?;
        probes.get(self.memo.upstream_text(upstream)).cloned()
    }

    /// Notes a proxied URL that goes into the output.
    pub(crate) fn advertise(&mut self, id: ProxiedId) {
        if let Some(list) = &mut self.advertised {
            list.push(self.memo.proxied(id).to_string());
        }
    }

    /// Judges one raw URL, records it, and returns the proxied URL to write instead (its text
    /// is `self.memo.proxied(id)`).
    pub(crate) fn resolve(
        &mut self,
        place: impl FnOnce() -> String,
        raw: &str,
        markup: Markup,
        options: Options,
        hint: Hint<'_>,
    ) -> Option<ProxiedId> {
        let outcome = self.memo.resolve(&self.ctx, raw, markup, options);
        match outcome {
            Outcome::Rewrite { upstream, proxied } => {
                let reason = "rewritten".into();
                // Copied only for a report, so that an unreported rewrite allocates nothing.
                let upstream = self
                    .report
                    .is_some()
                    .then(|| self.memo.upstream_text(upstream).to_string());
                self.record(
                    place,
                    raw,
                    Action::Rewritten,
                    reason,
                    upstream.as_deref(),
                    hint,
                );
                Some(proxied)
            }
            Outcome::Keep(reason) => {
                self.record(place, raw, Action::Kept, reason.into(), None, hint);
                None
            }
            Outcome::Skip(reason) => {
                let reason = Cow::Owned(reason.to_string());
                self.record(place, raw, Action::Skipped, reason, None, hint);
                None
            }
        }
    }
}

fn hint_note(status: SizeStatus) -> &'static str {
    match status {
        SizeStatus::Ok => "ok",
        SizeStatus::Whitespace => "has whitespace (accepted)",
        SizeStatus::Malformed => "malformed (ignored)",
        SizeStatus::Zero => "is zero (ignored)",
        SizeStatus::OutOfRange => "out of range (ignored)",
    }
}
