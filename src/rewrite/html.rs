//! lol_html element handlers: which attributes hold image URLs and how each is rewritten.
//!
//! Handlers only see elements, so text, comments, `<script>`, `<style>` and `<pre>` content
//! can never be touched. Attribute values arrive raw (entities intact): URLs are decoded
//! before they are judged, and untouched parts of a value are written back raw.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lol_html::errors::RewritingError;
use lol_html::html_content::BailOut;
use lol_html::send::{Element, ElementContentHandlers, Settings};
use lol_html::{AsciiCompatibleEncoding, HandlerResult, MemorySettings, Selector};

use super::context::{Markup, Memo, Outcome, RewriteContext};
use super::hints::{parse_srcset, srcset_widths, target_size, SizeHint, SizeStatus};
use super::report::{Action, Counts, HintReport, RefReport};
use crate::urls::Options;

/// Per-document state shared by the handlers.
#[derive(Debug)]
pub struct DocState {
    pub ctx: Arc<RewriteContext>,
    pub memo: Memo,
    pub images_seen: usize,
    pub counts: Counts,
    pub report: Option<Vec<RefReport>>,
}

/// A hint with its raw text, for reports.
type Hint<'a> = Option<(&'a str, SizeHint)>;

impl DocState {
    pub fn new(ctx: Arc<RewriteContext>, collect_report: bool) -> DocState {
        DocState {
            ctx,
            memo: Memo::default(),
            images_seen: 0,
            counts: Counts::default(),
            report: collect_report.then(Vec::new),
        }
    }

    /// Counts one reference and, when reports are collected, describes it.
    pub fn record(
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
            report.push(RefReport {
                place: place(),
                original: original.to_string(),
                action,
                reason,
                upstream: upstream.map(str::to_string),
                size_hint: hint.map(|(raw, h)| HintReport::new(raw, &h)),
            });
        }
    }

    /// Judges one raw URL, records it, and returns the proxied URL to write instead.
    pub fn resolve(
        &mut self,
        place: impl FnOnce() -> String,
        raw: &str,
        markup: Markup,
        options: Options,
        hint: Hint<'_>,
    ) -> Option<Arc<str>> {
        let outcome = self.memo.resolve(&self.ctx, raw, markup, options);
        match outcome {
            Outcome::Rewrite { upstream, proxied } => {
                let reason = "rewritten".into();
                self.record(place, raw, Action::Rewritten, reason, Some(&upstream), hint);
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

fn lock(state: &Mutex<DocState>) -> MutexGuard<'_, DocState> {
    // A panic cannot happen inside the handlers, but a poisoned lock must not become one.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn place(el: &Element<'_, '_>, attr: &str) -> String {
    format!("{}[{attr}]", el.tag_name())
}

/// lol_html settings wired to `state`. `bail_out` is raised before lol_html flushes its
/// buffered input on a bail-out, so the output sink hands everything over at once.
pub fn settings(
    state: Arc<Mutex<DocState>>,
    encoding: AsciiCompatibleEncoding,
    adjust_charset_on_meta: bool,
    max_memory: usize,
    bail_out: Arc<AtomicBool>,
) -> Settings<'static, 'static> {
    let mut settings = Settings::new_send()
        .with_encoding(encoding)
        .with_strict(false)
        .with_adjust_charset_on_meta_tag(adjust_charset_on_meta)
        .with_memory_settings(
            MemorySettings::new()
                .with_max_allowed_memory_usage(max_memory)
                .with_graceful_bail_out_on_memory_limit_exceeded(true),
        )
        .append_bail_out_handler(move |_: &RewritingError, _: &mut BailOut<'_>| {
            bail_out.store(true, Ordering::Release);
        });
    type Handler = fn(&mut DocState, &mut Element<'_, '_>);
    let handlers: [(&str, Handler); 6] = [
        ("img", on_img),
        ("source", on_source),
        ("a[href]", on_a),
        ("link[href]", on_link),
        ("meta[content]", on_meta),
        ("[style]", on_style),
    ];
    for (selector, handler) in handlers {
        let Ok(selector) = selector.parse::<Selector>() else {
            continue;
        };
        let state = state.clone();
        let element = move |el: &mut Element<'_, '_>| -> HandlerResult {
            handler(&mut lock(&state), el);
            Ok(())
        };
        settings = settings.append_element_content_handler((
            Cow::Owned(selector),
            ElementContentHandlers::default().element(element),
        ));
    }
    settings
}

/// Rewrites a single-URL attribute whose raw value is `raw`; returns whether it changed.
fn url_attr(
    st: &mut DocState,
    el: &mut Element<'_, '_>,
    attr: &str,
    raw: &str,
    options: Options,
    hint: Hint<'_>,
    absolute: bool,
) -> bool {
    let Some(proxied) = st.resolve(|| place(el, attr), raw, Markup::Html, options, hint) else {
        return false;
    };
    let value = if absolute {
        Cow::Owned(st.ctx.absolute(proxied.to_string()))
    } else {
        Cow::Borrowed(&*proxied)
    };
    el.set_attribute(attr, &value).is_ok()
}

/// Rewrites the candidates of a srcset-like attribute in place; returns whether any changed.
fn srcset_attr(
    st: &mut DocState,
    el: &mut Element<'_, '_>,
    attr: &str,
    raw: &str,
    options: Options,
    hint: Hint<'_>,
) -> bool {
    let max_width = st.ctx.config().max_width;
    let mut out = String::new();
    let mut last = 0;
    for c in parse_srcset(raw) {
        let opts = c
            .width(raw)
            .map_or(options, |w| Options::sized(w.min(max_width), 0));
        let url = &raw[c.url.clone()];
        if let Some(proxied) = st.resolve(|| place(el, attr), url, Markup::Html, opts, hint) {
            out.push_str(&raw[last..c.url.start]);
            out.push_str(&proxied);
            last = c.url.end;
        }
    }
    if last == 0 {
        return false;
    }
    out.push_str(&raw[last..]);
    el.set_attribute(attr, &out).is_ok()
}

/// The attributes of an `<img>` that matter here, read in one pass (the first of duplicates
/// wins, as in browsers).
#[derive(Default)]
struct ImgAttrs {
    /// `src`, `data-src`, `data-original`.
    urls: [Option<String>; 3],
    /// `srcset`, `data-srcset`.
    srcsets: [Option<String>; 2],
    data_size: Option<String>,
    has_size_attr: bool,
    has_loading: bool,
    has_decoding: bool,
    has_fetchpriority: bool,
    has_canonical: bool,
}

const IMG_URL_ATTRS: [&str; 3] = ["src", "data-src", "data-original"];
const SRCSET_ATTRS: [&str; 2] = ["srcset", "data-srcset"];
/// Lengths of the attribute names [`ImgAttrs::read`] looks at.
const IMG_NAME_LENGTHS: [usize; 9] = [3, 5, 6, 7, 8, 9, 11, 13, 18];

impl ImgAttrs {
    fn read(el: &Element<'_, '_>) -> ImgAttrs {
        let mut a = ImgAttrs::default();
        for attr in el.attributes() {
            // Every name lol_html returns is a fresh string; the source span tells the
            // length without one, which already rules out most attributes (`alt`, `class`,
            // `referrerpolicy` …).
            let len = attr.name_source_location().map(|l| l.bytes().len());
            if len.is_some_and(|len| !IMG_NAME_LENGTHS.contains(&len)) {
                continue;
            }
            let name = attr.name();
            let slot = match name.as_str() {
                "src" => &mut a.urls[0],
                "data-src" => &mut a.urls[1],
                "data-original" => &mut a.urls[2],
                "srcset" => &mut a.srcsets[0],
                "data-srcset" => &mut a.srcsets[1],
                "data-size" => &mut a.data_size,
                "width" | "height" => {
                    a.has_size_attr = true;
                    continue;
                }
                "loading" => {
                    a.has_loading = true;
                    continue;
                }
                "decoding" => {
                    a.has_decoding = true;
                    continue;
                }
                "fetchpriority" => {
                    a.has_fetchpriority = true;
                    continue;
                }
                "data-canonical-src" => {
                    a.has_canonical = true;
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(attr.value());
            }
        }
        a
    }
}

fn on_img(st: &mut DocState, el: &mut Element<'_, '_>) {
    let first = st.images_seen == 0;
    st.images_seen += 1;
    let ctx = st.ctx.clone();
    let cfg = ctx.config();
    let attrs = ImgAttrs::read(el);
    let hint = attrs
        .data_size
        .as_deref()
        .map(|raw| (raw, SizeHint::parse(raw)));
    let size = hint
        .and_then(|(_, h)| h.size)
        .map(|s| target_size(s, cfg.max_width));
    let options = size.map_or_else(|| ctx.unsized_options(), |(w, h)| Options::sized(w, h));

    let mut rewritten = false;
    let mut canonical: Option<&str> = None;
    let mut src_rewritten = false;
    for (attr, raw) in IMG_URL_ATTRS.iter().zip(&attrs.urls) {
        let Some(raw) = raw else { continue };
        if url_attr(st, el, attr, raw, options, hint, false) {
            rewritten = true;
            src_rewritten |= *attr == "src";
            canonical = canonical.or(Some(raw));
        }
    }
    for (attr, raw) in SRCSET_ATTRS.iter().zip(&attrs.srcsets) {
        if let Some(raw) = raw {
            rewritten |= srcset_attr(st, el, attr, raw, options, hint);
        }
    }
    if !rewritten {
        return;
    }
    if let Some((w, h)) = size {
        if cfg.dimensions && !attrs.has_size_attr {
            let _ = el.set_attribute("width", Decimal::new(w).as_str());
            let _ = el.set_attribute("height", Decimal::new(h).as_str());
        }
        if let (true, None, Some(src)) = (src_rewritten, &attrs.srcsets[0], &attrs.urls[0]) {
            if let Some(srcset) = generated_srcset(st, &ctx, src, options, w) {
                let _ = el.set_attribute("srcset", &srcset);
            }
        }
    }
    if first {
        if cfg.fetchpriority && !attrs.has_fetchpriority {
            let _ = el.set_attribute("fetchpriority", "high");
        }
    } else if cfg.lazy {
        if !attrs.has_loading {
            let _ = el.set_attribute("loading", "lazy");
        }
        if !attrs.has_decoding {
            let _ = el.set_attribute("decoding", "async");
        }
    }
    if let Some(original) = canonical.filter(|_| cfg.canonical_attr && !attrs.has_canonical) {
        // The raw value is already escaped for an attribute; lol_html only escapes quotes.
        let _ = el.set_attribute("data-canonical-src", original);
    }
}

/// The `srcset` generated for a rewritten `src` whose target width is `w`: the configured
/// widths below it, then the target itself with the image's own `options`. The source is
/// judged once and only signed per width.
fn generated_srcset(
    st: &mut DocState,
    ctx: &RewriteContext,
    src: &str,
    options: Options,
    w: u32,
) -> Option<String> {
    let cfg = ctx.config();
    // A single width needs no srcset.
    srcset_widths(&cfg.srcset_widths, w).nth(1)?;
    let (url, upstream) = st.memo.upstream(ctx, src, Markup::Html)?;
    let mut srcset = String::with_capacity(4 * (upstream.len() + 96));
    for cw in srcset_widths(&cfg.srcset_widths, w) {
        let opts = if cw == w {
            options
        } else {
            Options::sized(cw, 0)
        };
        let proxied = st.memo.sign(ctx, &url, &upstream, opts);
        if !srcset.is_empty() {
            srcset.push_str(", ");
        }
        srcset.push_str(&proxied);
        srcset.push(' ');
        srcset.push_str(Decimal::new(cw).as_str());
        srcset.push('w');
    }
    Some(srcset)
}

/// A `u32` in decimal without a heap allocation.
struct Decimal {
    buf: [u8; 10],
    start: usize,
}

impl Decimal {
    fn new(mut n: u32) -> Decimal {
        let mut buf = [0u8; 10];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { buf, start }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or_default()
    }
}

fn on_source(st: &mut DocState, el: &mut Element<'_, '_>) {
    let options = st.ctx.unsized_options();
    for attr in SRCSET_ATTRS {
        if let Some(raw) = el.get_attribute(attr) {
            srcset_attr(st, el, attr, &raw, options, None);
        }
    }
}

/// Path extensions that make an `<a href>` a link to an image.
fn is_image_path(path: &str) -> bool {
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e);
    ext.is_some_and(|e| {
        ["jpg", "jpeg", "png", "gif", "webp", "avif", "bmp", "jfif"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// The path of an absolute URL string.
fn url_path(url: &str) -> &str {
    let after = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after.find('/').map_or("", |p| &after[p..]);
    path.split(['?', '#']).next().unwrap_or(path)
}

fn on_a(st: &mut DocState, el: &mut Element<'_, '_>) {
    let Some(raw) = el.get_attribute("href") else {
        return;
    };
    // Only links to images are image references; other links are not judged or reported.
    let options = st.ctx.unsized_options();
    let ctx = st.ctx.clone();
    match st.memo.resolve(&ctx, &raw, Markup::Html, options) {
        Outcome::Rewrite { upstream, .. } if is_image_path(url_path(&upstream)) => {
            url_attr(st, el, "href", &raw, options, None, false);
        }
        _ => {}
    }
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split_ascii_whitespace()
        .any(|t| t.eq_ignore_ascii_case(token))
}

fn on_link(st: &mut DocState, el: &mut Element<'_, '_>) {
    let preload_image = el
        .get_attribute("rel")
        .is_some_and(|r| has_token(&r, "preload"))
        && el
            .get_attribute("as")
            .is_some_and(|a| a.trim().eq_ignore_ascii_case("image"));
    if !preload_image {
        return;
    }
    let options = st.ctx.unsized_options();
    if let Some(raw) = el.get_attribute("href") {
        url_attr(st, el, "href", &raw, options, None, false);
    }
    if let Some(raw) = el.get_attribute("imagesrcset") {
        srcset_attr(st, el, "imagesrcset", &raw, options, None);
    }
}

fn on_meta(st: &mut DocState, el: &mut Element<'_, '_>) {
    let is = |attr: &str, names: &[&str]| {
        el.get_attribute(attr)
            .is_some_and(|v| names.iter().any(|n| v.trim().eq_ignore_ascii_case(n)))
    };
    let image = is(
        "property",
        &["og:image", "og:image:url", "og:image:secure_url"],
    ) || is("name", &["twitter:image", "twitter:image:src"])
        || is("itemprop", &["image"]);
    if let Some(raw) = el.get_attribute("content").filter(|_| image) {
        let options = st.ctx.unsized_options();
        url_attr(st, el, "content", &raw, options, None, true);
    }
}

/// Quote spellings a `url(…)` may use inside a raw attribute value.
const CSS_QUOTES: [&str; 6] = ["&quot;", "&#34;", "&#39;", "&apos;", "\"", "'"];

fn on_style(st: &mut DocState, el: &mut Element<'_, '_>) {
    let Some(raw) = el.get_attribute("style") else {
        return;
    };
    let lower = raw.to_ascii_lowercase();
    if !lower.contains("url(") {
        return;
    }
    let options = st.ctx.unsized_options();
    let mut out = String::new();
    let mut last = 0;
    let mut from = 0;
    while let Some(i) = lower[from..].find("url(") {
        let mut start = from + i + 4;
        while raw[start..].starts_with(|c: char| c.is_ascii_whitespace()) {
            start += 1;
        }
        let quote = CSS_QUOTES.iter().find(|q| raw[start..].starts_with(**q));
        let end = match quote {
            Some(q) => {
                start += q.len();
                raw[start..].find(*q).map(|e| start + e)
            }
            None => raw[start..]
                .find(')')
                .map(|e| start + raw[start..start + e].trim_end().len()),
        };
        let Some(end) = end else {
            break;
        };
        from = end;
        let url = &raw[start..end];
        if let Some(proxied) = st.resolve(|| place(el, "style"), url, Markup::Html, options, None) {
            out.push_str(&raw[last..start]);
            out.push_str(&proxied);
            last = end;
        }
    }
    if last > 0 {
        out.push_str(&raw[last..]);
        let _ = el.set_attribute("style", &out);
    }
}
