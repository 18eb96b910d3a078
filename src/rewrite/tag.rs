//! The start tag a handler is looking at: its attributes, and the edits made to it.
//!
//! Through lol_html alone every attribute name and value read is a fresh copy, and every
//! `set_attribute` copies again and makes lol_html write the tag out piece by piece; a
//! rewritten `<img>` gets up to seven. While the tag's raw bytes are still in the
//! [`InputWindow`], names and values are read in place and the edits go out as one
//! replacement, written exactly as lol_html writes an edited start tag. Which path a tag
//! takes depends only on where the input happened to be split, so it never shows in the
//! output (the chunking property tests compare both).

use std::borrow::Cow;
use std::ops::Range;

use lol_html::html_content::{Attribute, ContentType, SourceLocation};
use lol_html::send::Element;

use super::splice::Output;

/// Longest stretch kept for a tag that may still be open at the end of a chunk; a longer
/// tag (a huge `data:` URL) takes the lol_html path.
const WINDOW_CAP: usize = 64 * 1024;

/// The input recently fed to lol_html, addressed by stream offset.
///
/// Only a UTF-8 document uses it: lol_html re-encodes replacement text into the document's
/// encoding, so raw bytes of another encoding could come out changed.
#[derive(Debug, Default)]
pub(crate) struct InputWindow {
    bytes: Vec<u8>,
    /// Stream offset of `bytes[0]`.
    start: usize,
    enabled: bool,
}

impl InputWindow {
    pub(crate) fn enable(&mut self) {
        self.enabled = true;
    }

    /// For good: the document may be switching encodings (a late `<meta charset>`).
    pub(crate) fn disable(&mut self) {
        self.enabled = false;
        self.bytes = Vec::new();
    }

    /// Records a chunk about to be written to lol_html.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.enabled {
            self.bytes.extend_from_slice(chunk);
        } else {
            self.start += chunk.len();
        }
    }

    /// Forgets what lol_html is done with once it has taken a chunk: a tag still open can
    /// only start at the last `<` (or earlier, when a `<` inside one of its values hides its
    /// start, which merely sends that tag down the lol_html path).
    pub(crate) fn settle(&mut self) {
        let keep_from = match memchr::memrchr(b'<', &self.bytes) {
            Some(at) if self.bytes.len() - at <= WINDOW_CAP => at,
            _ => self.bytes.len(),
        };
        self.bytes.drain(..keep_from);
        self.start += keep_from;
    }

    fn get(&self, range: Range<usize>) -> Option<&[u8]> {
        let from = range.start.checked_sub(self.start)?;
        let to = range.end.checked_sub(self.start)?;
        self.bytes.get(from..to)
    }
}

/// The raw text of the start tag being handled, when the window holds it as UTF-8.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tag<'w> {
    raw: Option<RawTag<'w>>,
}

#[derive(Debug, Clone, Copy)]
struct RawTag<'w> {
    text: &'w str,
    /// Stream offset of `text`.
    offset: usize,
}

impl<'w> RawTag<'w> {
    fn range(&self, loc: SourceLocation) -> Option<Range<usize>> {
        let range = loc.bytes();
        let from = range.start.checked_sub(self.offset)?;
        let to = range.end.checked_sub(self.offset)?;
        (to <= self.text.len()).then_some(from..to)
    }

    fn slice(&self, loc: SourceLocation) -> Option<&'w str> {
        self.text.get(self.range(loc)?)
    }
}

impl<'w> Tag<'w> {
    pub(crate) fn new(el: &Element<'_, '_>, window: &'w InputWindow) -> Tag<'w> {
        let range = el.source_location().bytes();
        let raw = window
            .get(range.clone())
            .and_then(|b| simdutf8::basic::from_utf8(b).ok())
            .map(|text| RawTag {
                text,
                offset: range.start,
            });
        Tag { raw }
    }

    /// The stream offset where the tag starts (it tells the handlers of one element apart).
    fn start(el: &Element<'_, '_>) -> usize {
        el.source_location().bytes().start
    }

    /// An attribute's name as written (compare it ignoring ASCII case).
    pub(crate) fn name(&self, attr: &Attribute<'_>) -> Cow<'w, str> {
        let raw = self
            .raw
            .zip(attr.name_source_location())
            .and_then(|(raw, loc)| raw.slice(loc));
        raw.map_or_else(|| Cow::Owned(attr.name()), Cow::Borrowed)
    }

    /// An attribute's value as written (entities intact); empty when it has none.
    pub(crate) fn value(&self, attr: &Attribute<'_>) -> Cow<'w, str> {
        let Some(raw) = self.raw else {
            return Cow::Owned(attr.value());
        };
        match attr.value_source_location() {
            Some(loc) => raw
                .slice(loc)
                .map_or_else(|| Cow::Owned(attr.value()), Cow::Borrowed),
            None => Cow::Borrowed(""),
        }
    }

    /// The value of the first attribute called `name` (ASCII lowercase).
    pub(crate) fn get(&self, el: &Element<'_, '_>, name: &str) -> Option<Cow<'w, str>> {
        el.attributes()
            .iter()
            .find(|a| self.name(a).eq_ignore_ascii_case(name))
            .map(|a| self.value(a))
    }
}

/// Attribute values set on the element being handled, meaning what `set_attribute` means:
/// the first attribute of that name (any case) takes the value, else it is appended; for a
/// name set twice the last value wins. Every handler of one element adds to the same edits.
#[derive(Debug, Default)]
pub(crate) struct Edits {
    /// One entry per name, in the order first set.
    list: Vec<(&'static str, Range<usize>)>,
    values: String,
    /// The element the edits belong to (its stream offset).
    element: Option<usize>,
    /// Edits already handed to `set_attribute`.
    applied: usize,
    out: String,
}

impl Edits {
    /// Starts the edits of `el`, keeping those of earlier handlers of the same element.
    pub(crate) fn begin(&mut self, el: &Element<'_, '_>) {
        let start = Tag::start(el);
        if self.element != Some(start) {
            self.list.clear();
            self.values.clear();
            self.element = Some(start);
            self.applied = 0;
        }
    }

    /// `name` must be ASCII lowercase.
    pub(crate) fn set(&mut self, name: &'static str, value: &str) {
        self.set_with(name, |buf| buf.push_str(value));
    }

    /// Sets `name` to what `write` appends to the buffer it is given.
    pub(crate) fn set_with(&mut self, name: &'static str, write: impl FnOnce(&mut String)) {
        let from = self.values.len();
        write(&mut self.values);
        let range = from..self.values.len();
        match self.list.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                self.list[i].1 = range;
                // A value lol_html already has must be handed over again.
                self.applied = self.applied.min(i);
            }
            None => self.list.push((name, range)),
        }
    }

    /// Puts the edits into the output: spliced in for the raw tag when `tag` has its bytes and
    /// `output` still lines up with the input, else as one replacement of the raw tag, else
    /// through lol_html.
    pub(crate) fn apply(&mut self, el: &mut Element<'_, '_>, tag: &Tag<'_>, output: &mut Output) {
        if self.applied == self.list.len() {
            return;
        }
        let written = tag.raw.is_some_and(|raw| self.write_tag(el, raw).is_some());
        if written && output.splicing() {
            output.splice(el.source_location().bytes(), &self.out);
            self.applied = self.list.len();
            return;
        }
        if written {
            el.start_tag().replace(&self.out, ContentType::Html);
            self.applied = self.list.len();
            return;
        }
        if output.splicing() {
            // lol_html writes this tag: every edit of it goes to lol_html.
            output.stop(Tag::start(el));
            self.applied = 0;
        }
        for (name, range) in &self.list[self.applied..] {
            // The names are fixed and valid.
            let _ = el.set_attribute(name, &self.values[range.clone()]);
        }
        self.applied = self.list.len();
    }

    /// The edit for an attribute written `name`, if any.
    fn find(&self, name: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Writes the edited tag into `out` as lol_html serialises an edited start tag: the
    /// name as written, then each attribute after one space (untouched ones byte for byte,
    /// edited ones `name="value"` with `"` escaped), new ones appended in the order first
    /// set, and ` />` or `>`. `None` when the raw text does not line up.
    fn write_tag(&mut self, el: &Element<'_, '_>, raw: RawTag<'_>) -> Option<()> {
        if self.list.len() > 64 {
            return None;
        }
        let list = &self.list;
        let values = &self.values;
        let text = raw.text;
        let bytes = text.as_bytes();
        let name_end = 1 + bytes
            .get(1..)?
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C' | b'/' | b'>'))?;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.push_str(&text[..name_end]);
        let mut done = 0u64;
        let mut ok = true;
        for attr in el.attributes() {
            let Some(name) = attr.name_source_location().and_then(|l| raw.range(l)) else {
                ok = false;
                break;
            };
            let Some(name_text) = text.get(name.clone()) else {
                ok = false;
                break;
            };
            out.push(' ');
            match self.find(name_text) {
                Some(i) if done & (1 << i) == 0 => {
                    done |= 1 << i;
                    out.push_str(name_text);
                    push_quoted(&mut out, &values[list[i].1.clone()]);
                }
                _ => {
                    let end = match attr.value_source_location().map(|l| raw.range(l)) {
                        // lol_html keeps a closing quote with the raw attribute.
                        Some(Some(v)) => {
                            let quote = v.start.checked_sub(1).and_then(|q| bytes.get(q));
                            match quote {
                                Some(q @ (b'"' | b'\'')) if bytes.get(v.end) == Some(q) => {
                                    v.end + 1
                                }
                                _ => v.end,
                            }
                        }
                        Some(None) => {
                            ok = false;
                            break;
                        }
                        None => name.end,
                    };
                    let Some(attr_text) = text.get(name.start..end) else {
                        ok = false;
                        break;
                    };
                    out.push_str(attr_text);
                }
            }
        }
        for (i, (name, range)) in list.iter().enumerate() {
            if ok && done & (1 << i) == 0 {
                out.push(' ');
                out.push_str(name);
                push_quoted(&mut out, &values[range.clone()]);
            }
        }
        out.push_str(if el.is_self_closing() { " />" } else { ">" });
        self.out = out;
        ok.then_some(())
    }
}

/// `="value"` with double quotes escaped, as lol_html writes a set attribute.
fn push_quoted(out: &mut String, value: &str) {
    out.push_str("=\"");
    let mut rest = value;
    while let Some(at) = memchr::memchr(b'"', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        out.push_str("&quot;");
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// How a test document's tags are edited.
    #[derive(Clone, Copy, Debug)]
    enum Path {
        /// Spliced into lol_html's untouched output.
        Splice,
        /// One replacement of the raw tag through lol_html.
        Replace,
        /// Attribute by attribute through lol_html.
        Attributes,
    }

    /// Two handlers of one element edit it in turn: `class` set by both (the second wins) and
    /// `id` set by the first only, along `path`.
    fn rewrite(input: &str, path: Path) -> String {
        let window = Arc::new(Mutex::new(InputWindow::default()));
        let output = Arc::new(Mutex::new(Output::default()));
        if !matches!(path, Path::Attributes) {
            window.lock().unwrap().enable();
        }
        if matches!(path, Path::Splice) {
            output.lock().unwrap().enable();
        }
        let edits = Arc::new(Mutex::new(Edits::default()));
        let handler = |values: &'static [(&'static str, &'static str)]| {
            let (window, edits, output) = (window.clone(), edits.clone(), output.clone());
            lol_html::element!("p", move |el| {
                let window = window.lock().unwrap();
                let tag = Tag::new(el, &window);
                let mut edits = edits.lock().unwrap();
                edits.begin(el);
                for (name, value) in values {
                    edits.set(name, value);
                }
                edits.apply(el, &tag, &mut output.lock().unwrap());
                Ok(())
            })
        };
        let settings = lol_html::send::Settings::new_send()
            .append_element_content_handler(handler(&[("class", "first"), ("id", "one")]))
            .append_element_content_handler(handler(&[("class", "second")]));
        let sink = output.clone();
        let mut rw = lol_html::send::HtmlRewriter::new(settings, move |c: &[u8]| {
            sink.lock().unwrap().push(c)
        });
        window.lock().unwrap().push(input.as_bytes());
        rw.write(input.as_bytes()).unwrap();
        rw.end().unwrap();
        let bytes = std::mem::take(&mut output.lock().unwrap().bytes);
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn later_handlers_of_an_element_add_to_its_edits() {
        let input = "<p CLASS='x' title=t>a</p><p>b</p>";
        let want =
            "<p CLASS=\"second\" title=t id=\"one\">a</p><p class=\"second\" id=\"one\">b</p>";
        for path in [Path::Splice, Path::Replace, Path::Attributes] {
            assert_eq!(rewrite(input, path), want, "{path:?}");
        }
    }
}
