//! lol_html element handlers: which attributes hold image URLs and how each is rewritten.
//!
//! Handlers only see elements, so text, comments, `<script>`, `<style>` and `<pre>` content
//! can never be touched. Attribute values arrive raw (entities intact): URLs are decoded
//! before they are judged, and untouched parts of a value are written back raw.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use lol_html::send::{Element, ElementContentHandlers, Settings};
use lol_html::{AsciiCompatibleEncoding, HandlerResult, MemorySettings, Selector};

use super::charset::find_ignore_case;
use super::context::{Markup, Outcome, RewriteContext};
use super::doc_state::{DocState, Hint};
use super::hints::{at_density, parse_srcset, srcset_widths, target_size, SizeHint};
use super::splice::Output;
use super::tag::{InputWindow, Tag};
use crate::probe::{HintAgreement, Probe};
use crate::sync::lock;
use crate::urls::Options;

fn place(el: &Element<'_, '_>, attr: &str) -> String {
    format!("{}[{attr}]", el.tag_name())
}

/// lol_html settings wired to `state`; `window` holds the input lol_html is working on.
///
/// Only element handlers that edit start tags through [`Edits`](super::tag::Edits): edited tags
/// are spliced into `output` by input offset, which holds only while lol_html changes nothing
/// else. A handler that removes, inserts or rewrites text would have to end splicing first
/// (`Output::stop`).
pub(crate) fn settings(
    state: Arc<Mutex<DocState>>,
    window: Arc<Mutex<InputWindow>>,
    output: Arc<Mutex<Output>>,
    encoding: AsciiCompatibleEncoding,
    adjust_charset_on_meta: bool,
    max_memory: usize,
) -> Settings<'static, 'static> {
    let mut settings = Settings::new_send()
        .with_encoding(encoding)
        .with_strict(false)
        .with_adjust_charset_on_meta_tag(adjust_charset_on_meta)
        .with_memory_settings(
            MemorySettings::new()
                .with_max_allowed_memory_usage(max_memory)
                .with_graceful_bail_out_on_memory_limit_exceeded(true),
        );
    type Handler = fn(&mut DocState, &Element<'_, '_>, &Tag<'_>);
    let handlers: [(&str, Handler); 6] = [
        ("img", on_img),
        ("source", on_source),
        ("a[href]", on_a),
        ("link[href]", on_link),
        ("meta[content]", on_meta),
        ("[style]", on_style),
    ];
    if adjust_charset_on_meta {
        // lol_html may switch to the encoding a `<meta>` names; raw bytes are then no longer
        // UTF-8 text, so the window stops at any tag that could declare one.
        if let Ok(selector) = "meta".parse::<Selector>() {
            let window = window.clone();
            let element = move |el: &mut Element<'_, '_>| -> HandlerResult {
                if el.has_attribute("charset") || el.has_attribute("http-equiv") {
                    lock(&window).disable();
                }
                Ok(())
            };
            settings = settings.append_element_content_handler((
                Cow::Owned(selector),
                ElementContentHandlers::default().element(element),
            ));
        }
    }
    for (selector, handler) in handlers {
        let Ok(selector) = selector.parse::<Selector>() else {
            continue;
        };
        let state = state.clone();
        let window = window.clone();
        let output = output.clone();
        let element = move |el: &mut Element<'_, '_>| -> HandlerResult {
            let window = lock(&window);
            let tag = Tag::new(el, &window);
            let mut st = lock(&state);
            st.memo.settle();
            st.edits.begin(el);
            handler(&mut st, el, &tag);
            st.edits.apply(el, &tag, &mut lock(&output));
            Ok(())
        };
        settings = settings.append_element_content_handler((
            Cow::Owned(selector),
            ElementContentHandlers::default().element(element),
        ));
    }
    settings
}

/// How an attribute holds its image URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Url,
    /// A URL that must stay absolute (`og:image` and the like).
    AbsoluteUrl,
    /// Candidates of a srcset-like list, each rewritten in place.
    Srcset,
}

/// Rewrites the URLs of an attribute whose raw value is `raw`; returns whether it changed.
fn rewrite_attr(
    st: &mut DocState,
    el: &Element<'_, '_>,
    (attr, holds): (&'static str, Holds),
    raw: &str,
    options: Options,
    hint: Hint<'_>,
) -> bool {
    if holds != Holds::Srcset {
        let Some(proxied) = st.resolve(|| place(el, attr), raw, Markup::Html, options, hint) else {
            return false;
        };
        st.advertise(proxied);
        let DocState {
            ctx, memo, edits, ..
        } = st;
        let proxied = memo.proxied(proxied);
        if holds == Holds::AbsoluteUrl {
            edits.set_with(attr, |value| ctx.absolute(value, proxied));
        } else {
            edits.set(attr, proxied);
        }
        return true;
    }
    let max_width = st.ctx.policy().max_width;
    let mut out = String::new();
    let mut last = 0;
    for c in parse_srcset(raw) {
        let opts = match (c.width(raw), c.density(raw)) {
            (Some(w), _) => Options::sized(w.min(max_width), 0),
            (None, Some(d)) => at_density(options, d),
            (None, None) => options,
        };
        let url = &raw[c.url.clone()];
        if let Some(proxied) = st.resolve(|| place(el, attr), url, Markup::Html, opts, hint) {
            st.advertise(proxied);
            out.push_str(&raw[last..c.url.start]);
            out.push_str(st.memo.proxied(proxied));
            last = c.url.end;
        }
    }
    if last == 0 {
        return false;
    }
    out.push_str(&raw[last..]);
    st.edits.set(attr, &out);
    true
}

/// The attributes of an `<img>` that matter here, read in one pass (the first of duplicates
/// wins, as in browsers).
#[derive(Default)]
struct ImgAttrs<'w> {
    /// `src`, `data-src`, `data-original`.
    urls: [Option<Cow<'w, str>>; 3],
    /// `srcset`, `data-srcset`.
    srcsets: [Option<Cow<'w, str>>; 2],
    data_size: Option<Cow<'w, str>>,
    has_size_attr: bool,
    has_loading: bool,
    has_decoding: bool,
    has_fetchpriority: bool,
    has_canonical: bool,
    has_sizes: bool,
    has_style: bool,
    /// `class` names `lazyload`: lazysizes, which wants `data-sizes="auto"`.
    lazysizes: bool,
}

const IMG_URL_ATTRS: [&str; 3] = ["src", "data-src", "data-original"];
/// Where the original URL is kept. Not `data-canonical-src`: scanners such as Hexo's
/// `open_graph()` take the last `src=` of a tag as the picture, and would pick the original.
const CANONICAL_ATTR: &str = "data-canonical-url";
const SRCSET_ATTRS: [&str; 2] = ["srcset", "data-srcset"];

impl<'w> ImgAttrs<'w> {
    fn read(el: &Element<'_, '_>, tag: &Tag<'w>) -> ImgAttrs<'w> {
        let mut a = ImgAttrs::default();
        for attr in el.attributes() {
            let name = tag.name(attr);
            let is = |n: &str| name.eq_ignore_ascii_case(n);
            let slot = if is("src") {
                &mut a.urls[0]
            } else if is("data-src") {
                &mut a.urls[1]
            } else if is("data-original") {
                &mut a.urls[2]
            } else if is("srcset") {
                &mut a.srcsets[0]
            } else if is("data-srcset") {
                &mut a.srcsets[1]
            } else if is("data-size") {
                &mut a.data_size
            } else {
                a.has_size_attr |= is("width") || is("height");
                a.has_loading |= is("loading");
                a.has_decoding |= is("decoding");
                a.has_fetchpriority |= is("fetchpriority");
                a.has_canonical |= is(CANONICAL_ATTR) || is("data-canonical-src");
                a.has_sizes |= is("sizes") || is("data-sizes");
                a.has_style |= is("style");
                if is("class") {
                    let class = tag.value(attr);
                    a.lazysizes |= class
                        .split_ascii_whitespace()
                        .any(|c| c.eq_ignore_ascii_case("lazyload"));
                }
                continue;
            };
            if slot.is_none() {
                *slot = Some(tag.value(attr));
            }
        }
        a
    }
}

fn on_img(st: &mut DocState, el: &Element<'_, '_>, tag: &Tag<'_>) {
    let first = st.images_seen == 0;
    st.images_seen += 1;
    let ctx = st.ctx.clone();
    let policy = ctx.policy();
    let attrs = ImgAttrs::read(el, tag);
    let hint = attrs
        .data_size
        .as_deref()
        .map(|raw| (raw, SizeHint::parse(raw)));
    // A probed picture sizes what has no usable hint, and lets srcset reach its real width.
    let probe = attrs
        .urls
        .iter()
        .flatten()
        .find_map(|raw| st.probed(raw, Markup::Html));
    let probed = probe.as_ref().and_then(Probe::size);
    // A hint of another shape than the picture would reserve the wrong box: the picture wins.
    let hinted = hint.and_then(|(_, h)| h.size).filter(|&hinted| {
        probed.is_none_or(|real| HintAgreement::of(hinted, real) != HintAgreement::Mismatch)
    });
    let size = hinted.or(probed).map(|s| target_size(s, policy.max_width));
    let options = size.map_or_else(|| ctx.unsized_options(), |(w, h)| Options::sized(w, h));

    let mut rewritten = [false; 3];
    let mut canonical: Option<&str> = None;
    for (i, (attr, raw)) in IMG_URL_ATTRS.iter().zip(&attrs.urls).enumerate() {
        let Some(raw) = raw else { continue };
        if rewrite_attr(st, el, (attr, Holds::Url), raw, options, hint) {
            rewritten[i] = true;
            canonical = canonical.or(Some(raw));
        }
    }
    let mut any = rewritten.contains(&true);
    for (attr, raw) in SRCSET_ATTRS.iter().zip(&attrs.srcsets) {
        if let Some(raw) = raw {
            any |= rewrite_attr(st, el, (attr, Holds::Srcset), raw, options, hint);
        }
    }
    if !any {
        return;
    }
    let mut aspect = None;
    if let Some((w, h)) = size {
        // The widest srcset candidate: the target, or the probed picture's own width (never
        // beyond it, and never beyond max_width).
        let top = probed.map_or(w, |(pw, _)| pw.min(policy.max_width));
        if policy.img.dimensions && !attrs.has_size_attr {
            st.edits.set("width", Decimal::new(w).as_str());
            st.edits.set("height", Decimal::new(h).as_str());
        }
        let mut generated = false;
        if let (true, None, Some(src)) = (rewritten[0], &attrs.srcsets[0], &attrs.urls[0]) {
            generated |= generated_srcset(st, &ctx, src, options, (w, top, "srcset"));
        }
        // Lazy loaders copy data-srcset into srcset when the picture comes into view.
        let lazy = (1..3).find(|&i| rewritten[i]);
        if let (Some(i), None) = (lazy, &attrs.srcsets[1]) {
            if let Some(src) = &attrs.urls[i] {
                generated |= generated_srcset(st, &ctx, src, options, (w, top, "data-srcset"));
            }
        }
        if generated && !attrs.has_sizes {
            if attrs.lazysizes && lazy.is_some() {
                st.edits.set("data-sizes", "auto");
            } else {
                st.edits.set_with("sizes", |sizes| {
                    let w = Decimal::new(w);
                    sizes.push_str("(max-width: ");
                    sizes.push_str(w.as_str());
                    sizes.push_str("px) 100vw, ");
                    sizes.push_str(w.as_str());
                    sizes.push_str("px");
                });
            }
        }
        // A placeholder src (a 1x1 GIF, a data: URI) has the wrong shape until the loader
        // swaps the picture in, and themes' `height: auto` voids width and height.
        if policy.img.dimensions && lazy.is_some() && !rewritten[0] {
            aspect = Some((w, h));
        }
    }
    let colour = probe
        .as_ref()
        .and_then(|p| p.colour.as_deref())
        .filter(|_| st.placeholder);
    if !attrs.has_style && (aspect.is_some() || colour.is_some()) {
        st.edits.set_with("style", |style| {
            if let Some((w, h)) = aspect {
                style.push_str("aspect-ratio: ");
                style.push_str(Decimal::new(w).as_str());
                style.push_str(" / ");
                style.push_str(Decimal::new(h).as_str());
            }
            if let Some(colour) = colour {
                if aspect.is_some() {
                    style.push_str("; ");
                }
                style.push_str("background-color: ");
                style.push_str(colour);
            }
        });
    }
    if first {
        if policy.img.fetchpriority && !attrs.has_fetchpriority {
            st.edits.set("fetchpriority", "high");
        }
    } else if policy.img.lazy {
        if !attrs.has_loading {
            st.edits.set("loading", "lazy");
        }
        if !attrs.has_decoding {
            st.edits.set("decoding", "async");
        }
    }
    if let Some(original) = canonical.filter(|_| policy.img.canonical_attr && !attrs.has_canonical)
    {
        // The raw value is already escaped for an attribute; only quotes get escaped again.
        st.edits.set(CANONICAL_ATTR, original);
    }
}

/// Sets `attr` (`srcset`, `data-srcset`) to the srcset generated for a rewritten `src` whose
/// target width is `w`: the configured widths below `top` (`w`, or the probed picture's width),
/// then `top` itself; the candidate at `w` has the image's own `options`. The source is judged
/// once and only signed per width. Returns whether it was set.
fn generated_srcset(
    st: &mut DocState,
    ctx: &RewriteContext,
    src: &str,
    options: Options,
    (w, top, attr): (u32, u32, &'static str),
) -> bool {
    let policy = ctx.policy();
    // A single width needs no srcset.
    if srcset_widths(&policy.srcset_widths, top).nth(1).is_none() {
        return false;
    }
    let Some(upstream) = st.memo.upstream(ctx, src, Markup::Html) else {
        return false;
    };
    let DocState {
        memo,
        edits,
        advertised,
        ..
    } = st;
    edits.set_with(attr, |srcset| {
        for (i, cw) in srcset_widths(&policy.srcset_widths, top).enumerate() {
            let opts = if cw == w {
                options
            } else {
                Options::sized(cw, 0)
            };
            let proxied = memo.sign(ctx, upstream, opts);
            if let Some(list) = advertised.as_mut() {
                list.push(memo.proxied(proxied).to_string());
            }
            if i > 0 {
                srcset.push_str(", ");
            }
            srcset.push_str(memo.proxied(proxied));
            srcset.push(' ');
            srcset.push_str(Decimal::new(cw).as_str());
            srcset.push('w');
        }
    });
    true
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

fn on_source(st: &mut DocState, el: &Element<'_, '_>, tag: &Tag<'_>) {
    let options = st.ctx.unsized_options();
    for attr in SRCSET_ATTRS {
        if let Some(raw) = tag.get(el, attr) {
            rewrite_attr(st, el, (attr, Holds::Srcset), &raw, options, None);
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

fn on_a(st: &mut DocState, el: &Element<'_, '_>, tag: &Tag<'_>) {
    let Some(raw) = tag.get(el, "href") else {
        return;
    };
    // Only links to images are image references; other links are not judged or reported.
    let options = st.ctx.unsized_options();
    let ctx = st.ctx.clone();
    match st.memo.resolve(&ctx, &raw, Markup::Html, options) {
        Outcome::Rewrite { upstream, .. }
            if is_image_path(url_path(st.memo.upstream_text(upstream))) =>
        {
            rewrite_attr(st, el, ("href", Holds::Url), &raw, options, None);
        }
        _ => {}
    }
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split_ascii_whitespace()
        .any(|t| t.eq_ignore_ascii_case(token))
}

fn on_link(st: &mut DocState, el: &Element<'_, '_>, tag: &Tag<'_>) {
    let preload_image = tag.get(el, "rel").is_some_and(|r| has_token(&r, "preload"))
        && tag
            .get(el, "as")
            .is_some_and(|a| a.trim().eq_ignore_ascii_case("image"));
    if !preload_image {
        return;
    }
    let options = st.ctx.unsized_options();
    if let Some(raw) = tag.get(el, "href") {
        rewrite_attr(st, el, ("href", Holds::Url), &raw, options, None);
    }
    if let Some(raw) = tag.get(el, "imagesrcset") {
        rewrite_attr(st, el, ("imagesrcset", Holds::Srcset), &raw, options, None);
    }
}

fn on_meta(st: &mut DocState, el: &Element<'_, '_>, tag: &Tag<'_>) {
    let is = |attr: &str, names: &[&str]| {
        tag.get(el, attr)
            .is_some_and(|v| names.iter().any(|n| v.trim().eq_ignore_ascii_case(n)))
    };
    let image = is(
        "property",
        &["og:image", "og:image:url", "og:image:secure_url"],
    ) || is("name", &["twitter:image", "twitter:image:src"])
        || is("itemprop", &["image"]);
    if let Some(raw) = tag.get(el, "content").filter(|_| image) {
        let options = st.ctx.unsized_options();
        rewrite_attr(st, el, ("content", Holds::AbsoluteUrl), &raw, options, None);
    }
}

/// Quote spellings a `url(…)` may use inside a raw attribute value.
const CSS_QUOTES: [&str; 6] = ["&quot;", "&#34;", "&#39;", "&apos;", "\"", "'"];

fn on_style(st: &mut DocState, el: &Element<'_, '_>, tag: &Tag<'_>) {
    let Some(raw) = tag.get(el, "style") else {
        return;
    };
    let options = st.ctx.unsized_options();
    let mut out = String::new();
    let mut last = 0;
    let mut from = 0;
    while let Some(i) = find_ignore_case(raw.as_bytes(), b"url(", from) {
        let mut start = i + 4;
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
            st.advertise(proxied);
            out.push_str(&raw[last..start]);
            out.push_str(st.memo.proxied(proxied));
            last = end;
        }
    }
    if last > 0 {
        out.push_str(&raw[last..]);
        st.edits.set("style", &out);
    }
}
