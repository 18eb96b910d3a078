//! The streaming article rewriter: wrapped image URLs in HTML and Hexo posts become signed
//! proxy URLs, with size hints turned into `width`/`height`/`srcset`.
//!
//! Push-based: feed chunks with [`Rewriter::write`], finish with [`Rewriter::end`]; output
//! goes to the sink as soon as it is known. Memory is bounded by `rewrite.max_memory_kb`:
//! beyond it (or on any rewriter error) the rest of the document passes through unchanged,
//! so a document is never cut.

pub(crate) mod charset;
pub(crate) mod context;
pub(crate) mod doc_state;
pub(crate) mod entities;
pub(crate) mod front_matter;
pub(crate) mod hints;
pub(crate) mod html;
pub(crate) mod report;
pub(crate) mod splice;
pub(crate) mod tag;
pub(crate) mod utf16;
pub(crate) mod wrappers;
pub(crate) mod yaml;

use std::sync::{Arc, Mutex};

use encoding_rs::Encoding;
use lol_html::{AsciiCompatibleEncoding, OutputSink};

pub use context::{Decision, ImgAdditions, Policy, RewriteContext, RewriteSettings};
pub use doc_state::Probes;
pub use report::{Action, Counts, HintReport, RefReport};

use doc_state::DocState;
use tag::InputWindow;
use utf16::{Utf16Decoder, Utf16Encoder};

use crate::sync::lock;

/// What the input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Html,
    /// Front matter between `---` lines, then an HTML body.
    HexoPost,
    /// A Hexo post when the first line is `---`, else HTML.
    Auto,
}

/// Why a document (or its remainder) was passed through unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passthrough {
    /// The whole document: its encoding cannot be read (`replacement`, for ISO-2022-KR …).
    UnsupportedEncoding(&'static str),
    /// The whole document: the front matter has no closing `---` line.
    UnterminatedFrontMatter,
    /// The whole document: the front matter exceeds the memory cap.
    FrontMatterTooLarge(usize),
    /// From some point on: the rewriter hit its memory cap or failed.
    BailedOut(String),
}

impl std::fmt::Display for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Passthrough::UnsupportedEncoding(name) => {
                write!(
                    f,
                    "encoding {name} cannot be rewritten; passed through unchanged"
                )
            }
            Passthrough::UnterminatedFrontMatter => {
                f.write_str("front matter has no closing `---` line; passed through unchanged")
            }
            Passthrough::FrontMatterTooLarge(kb) => {
                write!(f, "front matter exceeds {kb} KB; passed through unchanged")
            }
            Passthrough::BailedOut(e) => {
                write!(
                    f,
                    "rewriting stopped ({e}); the rest passed through unchanged"
                )
            }
        }
    }
}

/// The outcome of one document.
#[derive(Debug, Clone)]
pub struct Summary {
    pub counts: Counts,
    /// Entries when collection was enabled with [`Rewriter::collect_report`].
    pub refs: Vec<RefReport>,
    /// Every proxied URL written, in document order, when enabled with
    /// [`Rewriter::collect_advertised`].
    pub advertised: Vec<String>,
    pub passthrough: Option<Passthrough>,
    /// The encoding the document was read and written in.
    pub encoding: &'static Encoding,
}

/// lol_html writes here; the rewriter drains `shared` into the caller's sink after each call,
/// so the caller's sink needs neither `Send` nor `'static`, and everything a chunk of input
/// produced leaves with it (a page whose origin pauses after its `<head>` still gets its head
/// out at once).
struct Pending {
    shared: Arc<Mutex<splice::Output>>,
}

impl OutputSink for Pending {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if !chunk.is_empty() {
            lock(&self.shared).push(chunk);
        }
    }
}

type Lol = lol_html::send::HtmlRewriter<'static, Pending>;

enum Stage {
    /// Collecting the first bytes to learn the kind and the encoding.
    Sniffing(Vec<u8>),
    /// Collecting the front matter up to its closing line.
    FrontMatter(Vec<u8>),
    Html(Box<Lol>),
    Passthrough,
}

/// The caller's sink, behind the UTF-16 encoder when the document is UTF-16.
struct Output<S> {
    sink: S,
    utf16: Option<Utf16Encoder>,
}

impl<S: FnMut(&[u8])> Output<S> {
    fn emit(&mut self, bytes: &[u8]) {
        match &mut self.utf16 {
            Some(encoder) => {
                let out = encoder.encode(bytes);
                if !out.is_empty() {
                    (self.sink)(out);
                }
                encoder.clear();
            }
            None => (self.sink)(bytes),
        }
    }

    fn finish(&mut self) {
        if let Some(encoder) = &mut self.utf16 {
            let out = encoder.finish();
            if !out.is_empty() {
                (self.sink)(out);
            }
            encoder.clear();
        }
    }
}

/// A streaming rewriter for one document. `Send` when the sink is.
pub struct Rewriter<S: FnMut(&[u8])> {
    ctx: Arc<RewriteContext>,
    kind: DocKind,
    charset_hint: Option<&'static Encoding>,
    out: Output<S>,
    /// Set for a UTF-16 document: what comes in is decoded before the stages see it.
    utf16: Option<Utf16Decoder>,
    stage: Stage,
    state: Arc<Mutex<DocState>>,
    /// The input lol_html is working on, for the handlers.
    window: Arc<Mutex<InputWindow>>,
    /// What lol_html has handed over and the caller's sink has not seen yet.
    pending: Arc<Mutex<splice::Output>>,
    passthrough: Option<Passthrough>,
    encoding: &'static Encoding,
    /// Whether handlers may read tags from the window (off only to test the other path).
    use_window: bool,
}

impl<S: FnMut(&[u8])> Rewriter<S> {
    /// `charset_hint` is the transport's charset (HTTP `Content-Type`), if any.
    pub fn new(
        ctx: Arc<RewriteContext>,
        kind: DocKind,
        charset_hint: Option<&'static Encoding>,
        sink: S,
    ) -> Rewriter<S> {
        let state = Arc::new(Mutex::new(DocState::new(ctx.clone(), false)));
        Rewriter {
            ctx,
            kind,
            charset_hint,
            out: Output { sink, utf16: None },
            utf16: None,
            stage: Stage::Sniffing(Vec::new()),
            state,
            window: Arc::default(),
            pending: Arc::default(),
            passthrough: None,
            encoding: encoding_rs::UTF_8,
            use_window: true,
        }
    }

    /// Collects one [`RefReport`] per image reference (memory grows with the document).
    pub fn collect_report(self, collect: bool) -> Self {
        lock(&self.state).report = collect.then(Vec::new);
        self
    }

    /// Rewrites with what probing found: sizes for pictures without a usable hint, srcset up
    /// to each picture's real width, and the probe in each report entry.
    pub fn with_probes(self, probes: Arc<Probes>) -> Self {
        lock(&self.state).probes = Some(probes);
        self
    }

    /// Gives each probed `<img>` without a `style` its picture's dominant colour as background,
    /// so the box is not blank while the picture loads (a strict `style-src` CSP blocks it).
    pub fn placeholder(self, on: bool) -> Self {
        lock(&self.state).placeholder = on;
        self
    }

    /// Collects every proxied URL the output advertises (src and srcset candidates alike).
    pub fn collect_advertised(self, collect: bool) -> Self {
        lock(&self.state).advertised = collect.then(Vec::new);
        self
    }

    fn max_memory(&self) -> usize {
        self.ctx.policy().max_memory_kb.saturating_mul(1024)
    }

    /// Feeds one chunk; whatever goes wrong inside passes the rest through (see [`Passthrough`]),
    /// so writing never fails.
    pub fn write(&mut self, chunk: &[u8]) {
        match self.utf16.take() {
            Some(mut decoder) => {
                decoder.decode(chunk, false, |utf8| self.feed(utf8));
                self.utf16 = Some(decoder);
            }
            None => self.feed(chunk),
        }
    }

    /// One chunk of the document as the stages read it: UTF-8 for a UTF-16 document.
    fn feed(&mut self, chunk: &[u8]) {
        match &mut self.stage {
            Stage::Sniffing(buf) => {
                buf.extend_from_slice(chunk);
                if buf.len() >= charset::SNIFF_BYTES {
                    self.start(false);
                }
            }
            Stage::FrontMatter(buf) => {
                buf.extend_from_slice(chunk);
                self.front_matter(false);
            }
            Stage::Html(lol) => {
                let result = write_lol(lol, &self.window, chunk);
                self.after_lol(result);
            }
            Stage::Passthrough => self.out.emit(chunk),
        }
    }

    pub fn end(mut self) -> Summary {
        if let Stage::Sniffing(_) = self.stage {
            self.start(true);
        }
        if let Some(mut decoder) = self.utf16.take() {
            decoder.decode(&[], true, |utf8| self.feed(utf8));
        }
        if let Stage::FrontMatter(_) = self.stage {
            self.front_matter(true);
        }
        if let Stage::Html(lol) = std::mem::replace(&mut self.stage, Stage::Passthrough) {
            let result = lol.end();
            self.after_lol(result);
        }
        self.out.finish();
        let mut state = lock(&self.state);
        Summary {
            counts: state.counts,
            refs: state.report.take().unwrap_or_default(),
            advertised: state.advertised.take().unwrap_or_default(),
            passthrough: self.passthrough.clone(),
            encoding: self.encoding,
        }
    }

    /// Leaves the sniffing stage: decides kind and encoding from the buffered head.
    fn start(&mut self, at_end: bool) {
        let Stage::Sniffing(raw) = std::mem::replace(&mut self.stage, Stage::Passthrough) else {
            return;
        };
        let sniffed = charset::sniff(&raw, self.charset_hint);
        self.encoding = sniffed.encoding;
        let (head, encoding) = match utf16::byte_order(sniffed.encoding) {
            Some(big_endian) => {
                let mut decoder = Utf16Decoder::new(sniffed.encoding);
                let mut head = Vec::with_capacity(raw.len() * 3 / 2);
                decoder.decode(&raw, false, |utf8| head.extend_from_slice(utf8));
                let bom = sniffed.source == charset::Source::Bom;
                self.out.utf16 = Some(Utf16Encoder::new(big_endian, bom));
                self.utf16 = Some(decoder);
                (head, Some(AsciiCompatibleEncoding::utf_8()))
            }
            None => (raw, AsciiCompatibleEncoding::new(sniffed.encoding)),
        };
        let Some(encoding) = encoding else {
            self.passthrough = Some(Passthrough::UnsupportedEncoding(sniffed.encoding.name()));
            tracing::debug!(
                encoding = sniffed.encoding.name(),
                "passing document through"
            );
            self.out.emit(&head);
            return;
        };
        let hexo = match self.kind {
            DocKind::Html => false,
            DocKind::HexoPost => true,
            DocKind::Auto => matches!(front_matter::opening(&head), front_matter::Opening::At(_)),
        };
        if hexo && matches!(front_matter::opening(&head), front_matter::Opening::At(_)) {
            self.stage = Stage::FrontMatter(head);
            self.front_matter(at_end);
            return;
        }
        // A `<meta charset>` cannot switch a document that is being decoded from UTF-16.
        let adjust_on_meta = sniffed.source == charset::Source::Default;
        self.start_html(encoding, adjust_on_meta, &head);
    }

    fn start_html(
        &mut self,
        encoding: AsciiCompatibleEncoding,
        adjust_on_meta: bool,
        first: &[u8],
    ) {
        if self.use_window && encoding == AsciiCompatibleEncoding::utf_8() {
            lock(&self.window).enable();
            lock(&self.pending).enable();
        }
        let settings = html::settings(
            self.state.clone(),
            self.window.clone(),
            self.pending.clone(),
            encoding,
            adjust_on_meta,
            self.max_memory(),
        );
        let sink = Pending {
            shared: self.pending.clone(),
        };
        let mut lol = Box::new(lol_html::send::HtmlRewriter::new(settings, sink));
        let result = if first.is_empty() {
            Ok(())
        } else {
            write_lol(&mut lol, &self.window, first)
        };
        self.stage = Stage::Html(lol);
        self.after_lol(result);
    }

    /// Handles the front matter buffer once it is complete (or can never be).
    fn front_matter(&mut self, at_end: bool) {
        let Stage::FrontMatter(buf) = &self.stage else {
            return;
        };
        let cap = self.max_memory();
        let Some(close) = front_matter::closing_offset(buf) else {
            if at_end || buf.len() > cap {
                self.passthrough = Some(if at_end {
                    Passthrough::UnterminatedFrontMatter
                } else {
                    Passthrough::FrontMatterTooLarge(self.ctx.policy().max_memory_kb)
                });
                if let Stage::FrontMatter(buf) =
                    std::mem::replace(&mut self.stage, Stage::Passthrough)
                {
                    self.out.emit(&buf);
                }
            }
            return;
        };
        let Stage::FrontMatter(buf) = std::mem::replace(&mut self.stage, Stage::Passthrough) else {
            return;
        };
        let mut out = Vec::with_capacity(close + 256);
        front_matter::rewrite(&buf[..close], &mut lock(&self.state), &mut out);
        self.out.emit(&out);
        // Posts are UTF-8 (a BOM was left in the front matter block), or UTF-16 decoded.
        if self.out.utf16.is_none() {
            self.encoding = encoding_rs::UTF_8;
        }
        self.start_html(AsciiCompatibleEncoding::utf_8(), false, &buf[close..]);
    }

    /// Drains lol_html's output; on an error, lol_html has already flushed every byte it
    /// held, so the rest of the input simply passes through.
    fn after_lol(&mut self, result: Result<(), lol_html::errors::RewritingError>) {
        {
            let shared = self.pending.clone();
            let mut pending = lock(&shared);
            if !pending.bytes.is_empty() {
                self.out.emit(&pending.bytes);
                pending.bytes.clear();
            }
        }
        if let Err(e) = result {
            tracing::debug!(error = %e, "rewriter bailed out; passing the rest through");
            self.passthrough = Some(Passthrough::BailedOut(e.to_string()));
            self.stage = Stage::Passthrough;
        }
    }
}

/// Writes a chunk to lol_html, keeping the window in step.
fn write_lol(
    lol: &mut Lol,
    window: &Mutex<InputWindow>,
    chunk: &[u8],
) -> Result<(), lol_html::errors::RewritingError> {
    lock(window).push(chunk);
    let result = lol.write(chunk);
    lock(window).settle();
    result
}

/// Rewrites a whole in-memory document (tests, small inputs).
pub fn rewrite_bytes(ctx: Arc<RewriteContext>, kind: DocKind, input: &[u8]) -> (Vec<u8>, Summary) {
    let mut out = Vec::with_capacity(input.len() + input.len() / 4);
    let mut rw = Rewriter::new(ctx, kind, None, |b: &[u8]| out.extend_from_slice(b));
    rw.write(input);
    let summary = rw.end();
    (out, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(max_memory_kb: usize) -> Arc<RewriteContext> {
        crate::internals::rewrite_context(&"07".repeat(32), "/img", max_memory_kb)
    }

    const WRAPPED: &str = "https://cors.zfour.workers.dev/?http://static.1sapp.com/a.jpg";

    #[test]
    fn crlf_front_matter_keeps_line_endings_and_comments() {
        let input = format!(
            "---\r\nheadimg: \"{WRAPPED}\" # cover\r\nphotos:\r\n  # first\r\n  - {WRAPPED}\r\n---\r\n<p>x</p>"
        );
        let (out, summary) = rewrite_bytes(ctx(1024), DocKind::Auto, input.as_bytes());
        let out = String::from_utf8(out).unwrap();
        assert_eq!(summary.counts.rewritten, 2);
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert!(lines[1].starts_with("headimg: \"/img/") && lines[1].ends_with("\" # cover"));
        assert_eq!(lines[3], "  # first");
        assert!(lines[4].starts_with("  - /img/"));
        assert_eq!(lines[5], "---");
        assert!(out.ends_with("\r\n<p>x</p>"));
    }

    #[test]
    fn oversized_front_matter_passes_through() {
        let input = format!(
            "---\ntitle: {}\nheadimg: {WRAPPED}\n",
            "x".repeat(40 * 1024)
        );
        let (out, summary) = rewrite_bytes(ctx(16), DocKind::HexoPost, input.as_bytes());
        assert_eq!(out, input.as_bytes());
        assert_eq!(
            summary.passthrough,
            Some(Passthrough::FrontMatterTooLarge(16))
        );
    }

    fn both_paths(input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let run = |use_window: bool| {
            let mut out = Vec::new();
            let mut rw = Rewriter::new(ctx(1024), DocKind::Auto, None, |b: &[u8]| {
                out.extend_from_slice(b)
            });
            rw.use_window = use_window;
            rw.write(input);
            rw.end();
            out
        };
        (run(true), run(false))
    }

    /// Tags read from the window and edited in one replacement come out exactly as
    /// lol_html's own `set_attribute` path writes them.
    #[test]
    fn window_path_matches_lol_html_path() {
        let w = WRAPPED;
        let tricky = format!(
            "<p>x</p><IMG SRC='{w}' ALT='say \"hi\"' data-size=\"640,422\">\n\
             <img src={w} width=10 hidden data-x= >\n\
             <img\n  class=\"a\"\tsrc=\"{w}\"  data-size=\"1280, 960\"\n/>\n\
             <img/src=\"{w}\" data-size=\"40,30\">\n\
             <img src=\"{w}\" src=\"other\" SrcSet=\"{w} 2x\" data-canonical-src=\"\" loading=eager>\n\
             <img style=\"background:url('{w}')\" data-src=\"{w}\" data-srcset=\"{w} 320w, /local.jpg 640w\">\n\
             <div style='background-image: url(&quot;{w}&quot;)'>t</div>\n\
             <a href=\"{w}\" title=\"a<b\">link</a>\n\
             <link rel=\"preload\" as=\"image\" href=\"{w}\" imagesrcset=\"{w} 1x\">\n\
             <meta property=\"og:image\" content=\"{w}\">\n\
             <picture><source srcset=\"{w} 1x, {w} 2x\" type=\"image/webp\"></picture>\n\
             <img alt=\"&quot;&amp;é\" src=\"{w}?a=1&amp;b=2\">"
        );
        // No charset in the first 1024 bytes, then GBK declared: the GBK bytes C3 A9 read as
        // UTF-8 "é" and must not be re-encoded.
        let late_gbk = format!(
            "<p>{}</p><meta charset=\"gbk\"><img alt=\"\u{e9}\" src=\"{w}\" data-size=\"8,8\">",
            "x".repeat(1100)
        );
        // A tag whose bytes are not UTF-8 is edited through lol_html; the tags before it were
        // spliced into lol_html's output, those after it are not.
        let mut not_utf8 = format!("<img src=\"{w}\" data-size=\"8,8\"><img alt=\"").into_bytes();
        not_utf8.extend_from_slice(b"\xff\xfe");
        not_utf8.extend_from_slice(
            format!("\" src=\"{w}\"><p>t</p><img src=\"{w}\" data-size=\"16,16\">").as_bytes(),
        );
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let mut docs = vec![tricky.into_bytes(), late_gbk.into_bytes(), not_utf8];
        for sub in ["articles/posts", "articles/pages", "conformance"] {
            for entry in std::fs::read_dir(data.join(sub)).unwrap() {
                docs.push(std::fs::read(entry.unwrap().path()).unwrap());
            }
        }
        let (out, _) = both_paths(&docs[2]);
        let proxied = memchr::memmem::find_iter(&out, b"src=\"/img/").count();
        assert_eq!(proxied, 3, "{}", String::from_utf8_lossy(&out));
        for doc in &docs {
            let (window, lol) = both_paths(doc);
            assert_eq!(
                String::from_utf8_lossy(&window),
                String::from_utf8_lossy(&lol)
            );
            assert_eq!(window, lol);
        }
        let (out, _) = both_paths(docs[0].as_slice());
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains(&format!(" src=\"{w}")), "{out}");
        assert!(out.contains("<IMG SRC=\"/img/"), "{out}");
        assert!(out.contains("ALT='say \"hi\"'"), "{out}");
        assert!(
            out.contains("data-canonical-src=\"\" loading=eager"),
            "{out}"
        );
    }

    fn attribute() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let names = prop::sample::select(vec![
            "src",
            "SRC",
            "data-src",
            "srcset",
            "data-srcset",
            "data-size",
            "width",
            "Height",
            "alt",
            "style",
            "href",
            "rel",
            "as",
            "content",
            "property",
            "class",
            "loading",
            "data-canonical-src",
        ]);
        let values = prop::sample::select(vec![
            WRAPPED.to_string(),
            format!("{WRAPPED} 320w, /a.jpg 640w"),
            format!("background:url({WRAPPED})"),
            format!("{WRAPPED}?a=1&amp;b=\"2\""),
            "640,422".into(),
            "it's".into(),
            "a<b".into(),
            String::new(),
            "preload".into(),
            "image".into(),
            "og:image".into(),
        ]);
        let gaps = prop::sample::select(vec![" ", "  ", "\n", "\t"]);
        (names, values, 0..4u8, gaps).prop_map(|(name, value, quoting, gap)| {
            let quote = match quoting {
                0 if !value.contains('"') => "\"",
                1 if !value.contains('\'') => "'",
                2 if !value.is_empty() && !value.contains(|c: char| " \t\n\"'=<>`".contains(c)) => {
                    ""
                }
                3 => return format!("{gap}{name}"),
                _ if value.contains('"') => "'",
                _ => "\"",
            };
            format!("{gap}{name}={quote}{value}{quote}")
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Random tags (names, quoting, spacing, duplicates, self-closing) come out the same
        /// through the window as through lol_html's own attribute edits.
        #[test]
        fn window_path_matches_lol_html_path_on_random_tags(
            tags in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["img", "IMG", "a", "div", "source", "link", "meta", "p"]),
                    proptest::collection::vec(attribute(), 0..7),
                    proptest::bool::ANY,
                ),
                1..12,
            )
        ) {
            let mut doc = String::from("<!doctype html><meta charset=utf-8><body>");
            for (name, attrs, self_closing) in &tags {
                doc.push('<');
                doc.push_str(name);
                for attr in attrs {
                    doc.push_str(attr);
                }
                doc.push_str(if *self_closing { "/>" } else { ">" });
                doc.push_str("text\n");
            }
            let (window, lol) = both_paths(doc.as_bytes());
            proptest::prop_assert_eq!(String::from_utf8_lossy(&window), String::from_utf8_lossy(&lol));
        }
    }

    #[test]
    fn empty_input_gives_empty_output() {
        let (out, summary) = rewrite_bytes(ctx(1024), DocKind::Auto, b"");
        assert!(out.is_empty());
        assert_eq!(summary.counts, Counts::default());
    }
}
