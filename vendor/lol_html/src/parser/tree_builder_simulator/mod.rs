//! HTML parser has 6 different state machines for text parsing
//! purposes in different contexts. Switch between these state machines
//! usually performed by the tree construction stage depending on the
//! state of the stack of open elements (HTML is a context-sensitive grammar).
//!
//! Luckily, in the majority of cases this tree construction stage feedback
//! can be simulated without the stack of open elements and complicated rules
//! required to maintain its state.
//!
//! This module implements such feedback simulation. However, there are few
//! cases where we can't unambiguously determine parsing context and prefer
//! to bail out from the tokenization in such a case
//! (see `AmbiguityGuard` for the details).
mod ambiguity_guard;

use self::ambiguity_guard::AmbiguityGuard;
use crate::base::eq_case_insensitive;
use crate::html::{LocalNameHash, Namespace, Tag, TextType};
use crate::parser::{TagLexeme, TagTokenOutline};
use TagTokenOutline::{EndTag, StartTag};

pub use self::ambiguity_guard::ParsingAmbiguityError;

#[must_use]
pub(crate) enum TreeBuilderFeedback {
    SwitchTextType(TextType),
    SetAllowCdata(bool),
    #[allow(clippy::type_complexity)]
    RequestLexeme(Box<dyn FnMut(&mut TreeBuilderSimulator, &TagLexeme<'_>) -> Self + Send>),
    None,
}

impl From<TextType> for TreeBuilderFeedback {
    #[inline]
    fn from(text_type: TextType) -> Self {
        Self::SwitchTextType(text_type)
    }
}

#[inline]
fn request_lexeme(
    callback: impl FnMut(&mut TreeBuilderSimulator, &TagLexeme<'_>) -> TreeBuilderFeedback
    + 'static
    + Send,
) -> TreeBuilderFeedback {
    TreeBuilderFeedback::RequestLexeme(Box::new(callback))
}

macro_rules! expect_tag {
    ($lexeme:expr, $tag_pat:pat => $action:expr) => {
        match *$lexeme.token_outline() {
            $tag_pat => $action,
            _ => {
                debug_assert!(false, "Got unexpected tag type");
                return TreeBuilderFeedback::None;
            }
        }
    };
}

#[inline]
fn get_text_type_adjustment(tag_name: LocalNameHash) -> TreeBuilderFeedback {
    use TextType::*;

    if tag_is_one_of!(tag_name, [Textarea, Title]) {
        RCData.into()
    } else if tag_name == Tag::Plaintext {
        PlainText.into()
    } else if tag_name == Tag::Script {
        ScriptData.into()
    } else if tag_is_one_of!(tag_name, [Style, Iframe, Xmp, Noembed, Noframes, Noscript]) {
        RawText.into()
    } else {
        TreeBuilderFeedback::None
    }
}

#[inline]
fn causes_foreign_content_exit(tag_name: LocalNameHash) -> bool {
    tag_is_one_of!(
        tag_name,
        [
            B, Big, Blockquote, Body, Br, Center, Code, Dd, Div, Dl, Dt, Em, Embed, H1, H2, H3, H4,
            H5, H6, Head, Hr, I, Img, Li, Listing, Menu, Meta, Nobr, Ol, P, Pre, Ruby, S, Small,
            Span, Strong, Strike, Sub, Sup, Table, Tt, U, Ul, Var
        ]
    )
}

#[inline]
fn is_text_integration_point_in_math_ml(tag_name: LocalNameHash) -> bool {
    tag_is_one_of!(tag_name, [Mi, Mo, Mn, Ms, Mtext])
}

#[inline]
fn is_html_integration_point_in_svg(tag_name: LocalNameHash) -> bool {
    tag_is_one_of!(tag_name, [Desc, Title, ForeignObject])
}

/// Open elements tracked inside a foreign subtree (and the HTML inside its integration points)
/// before the stack is given up and the document treated as HTML again.
const MAX_TRACKED_ELEMENTS: usize = 1024;

/// One open element from the outermost `<svg>`/`<math>` inwards.
struct OpenElement {
    /// The element's own namespace.
    ns: Namespace,
    /// Its name, ASCII-lowercased.
    name: Box<[u8]>,
    /// The namespace of its children: HTML for integration points.
    content_ns: Namespace,
}

impl OpenElement {
    /// In the "special" category of the HTML tree builder, which stops the search for the
    /// element an end tag closes.
    fn is_special(&self) -> bool {
        if self.ns == Namespace::Html {
            is_special_html(&self.name)
        } else {
            // Integration points: SVG desc, title, foreignObject; MathML mi … annotation-xml.
            self.content_ns == Namespace::Html || &*self.name == b"annotation-xml"
        }
    }
}

fn lowercase(name: &[u8]) -> Box<[u8]> {
    name.iter().map(u8::to_ascii_lowercase).collect()
}

fn is_special_html(name: &[u8]) -> bool {
    const SPECIAL: &[&[u8]] = &[
        b"address",
        b"applet",
        b"area",
        b"article",
        b"aside",
        b"base",
        b"basefont",
        b"bgsound",
        b"blockquote",
        b"body",
        b"br",
        b"button",
        b"caption",
        b"center",
        b"col",
        b"colgroup",
        b"dd",
        b"details",
        b"dir",
        b"div",
        b"dl",
        b"dt",
        b"embed",
        b"fieldset",
        b"figcaption",
        b"figure",
        b"footer",
        b"form",
        b"frame",
        b"frameset",
        b"h1",
        b"h2",
        b"h3",
        b"h4",
        b"h5",
        b"h6",
        b"head",
        b"header",
        b"hgroup",
        b"hr",
        b"html",
        b"iframe",
        b"img",
        b"input",
        b"keygen",
        b"li",
        b"link",
        b"listing",
        b"main",
        b"marquee",
        b"menu",
        b"meta",
        b"nav",
        b"noembed",
        b"noframes",
        b"noscript",
        b"object",
        b"ol",
        b"p",
        b"param",
        b"plaintext",
        b"pre",
        b"script",
        b"search",
        b"section",
        b"select",
        b"source",
        b"style",
        b"summary",
        b"table",
        b"tbody",
        b"td",
        b"template",
        b"textarea",
        b"tfoot",
        b"th",
        b"thead",
        b"title",
        b"tr",
        b"track",
        b"ul",
        b"wbr",
        b"xmp",
    ];
    SPECIAL.contains(&name)
}

fn is_void_html(name: &[u8]) -> bool {
    const VOID: &[&[u8]] = &[
        b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"keygen", b"link",
        b"meta", b"param", b"source", b"track", b"wbr",
    ];
    VOID.contains(&name)
}

/// Elements of HTML an end tag may close from inside a foreign subtree, taking the subtree
/// with it (`<div><svg></div>`). Foreign names (`g`, `path`, …) are not among them.
fn is_html_element(name: &[u8]) -> bool {
    const OTHER_HTML: &[&[u8]] = &[
        b"a",
        b"abbr",
        b"audio",
        b"b",
        b"bdi",
        b"bdo",
        b"big",
        b"canvas",
        b"cite",
        b"code",
        b"data",
        b"datalist",
        b"del",
        b"dfn",
        b"dialog",
        b"em",
        b"font",
        b"i",
        b"ins",
        b"kbd",
        b"label",
        b"legend",
        b"map",
        b"mark",
        b"meter",
        b"nobr",
        b"optgroup",
        b"option",
        b"output",
        b"picture",
        b"progress",
        b"q",
        b"rb",
        b"rp",
        b"rt",
        b"rtc",
        b"ruby",
        b"s",
        b"samp",
        b"slot",
        b"small",
        b"span",
        b"strike",
        b"strong",
        b"sub",
        b"sup",
        b"time",
        b"tt",
        b"u",
        b"var",
        b"video",
    ];
    is_special_html(name) || OTHER_HTML.contains(&name)
}

pub(crate) struct TreeBuilderSimulator {
    /// Empty outside foreign content: plain HTML needs no element tracking.
    open: Vec<OpenElement>,
    current_ns: Namespace,
    ambiguity_guard: AmbiguityGuard,
    strict: bool,
}

impl TreeBuilderSimulator {
    #[inline]
    #[must_use]
    pub fn new(strict: bool) -> Self {
        Self {
            open: Vec::new(),
            current_ns: Namespace::Html,
            ambiguity_guard: AmbiguityGuard::default(),
            strict,
        }
    }

    pub fn get_feedback_for_start_tag(
        &mut self,
        tag_name: LocalNameHash,
    ) -> Result<TreeBuilderFeedback, ParsingAmbiguityError> {
        if self.strict {
            self.ambiguity_guard.track_start_tag(tag_name)?;
        }

        Ok(
            if self.open.is_empty() && tag_name != Tag::Svg && tag_name != Tag::Math {
                get_text_type_adjustment(tag_name)
            } else {
                request_lexeme(move |this, lexeme| {
                    expect_tag!(lexeme, StartTag { name, ref attributes, self_closing, .. } => {
                        let name = lowercase(&lexeme.part(name));
                        let html_encoding = attributes.iter().any(|attr| {
                            eq_case_insensitive(&lexeme.part(attr.name), b"encoding")
                                && lexeme.opt_part(attr.value).is_some_and(|v| {
                                    eq_case_insensitive(&v, b"text/html")
                                        || eq_case_insensitive(&v, b"application/xhtml+xml")
                                })
                        });
                        let font_breakout = tag_name == Tag::Font
                            && attributes.iter().any(|attr| {
                                let n = lexeme.part(attr.name);
                                eq_case_insensitive(&n, b"color")
                                    || eq_case_insensitive(&n, b"size")
                                    || eq_case_insensitive(&n, b"face")
                            });
                        let before = this.current_ns;
                        let feedback = this.start_tag(
                            tag_name,
                            name,
                            self_closing,
                            html_encoding,
                            font_breakout,
                        );
                        this.ns_feedback(before, feedback)
                    })
                })
            },
        )
    }

    pub fn get_feedback_for_end_tag(&mut self, tag_name: LocalNameHash) -> TreeBuilderFeedback {
        if self.strict {
            self.ambiguity_guard.track_end_tag(tag_name);
        }

        if self.open.is_empty() {
            return TreeBuilderFeedback::None;
        }
        request_lexeme(|this, lexeme| {
            expect_tag!(lexeme, EndTag { name, .. } => {
                let before = this.current_ns;
                this.end_tag(&lowercase(&lexeme.part(name)));
                this.ns_feedback(before, TreeBuilderFeedback::None)
            })
        })
    }

    #[inline]
    pub const fn current_ns(&self) -> Namespace {
        self.current_ns
    }

    /// `feedback`, or the CDATA switch when the tag moved in or out of foreign content.
    fn ns_feedback(
        &mut self,
        before: Namespace,
        feedback: TreeBuilderFeedback,
    ) -> TreeBuilderFeedback {
        self.current_ns = self.open.last().map_or(Namespace::Html, |e| e.content_ns);
        if (before == Namespace::Html) != (self.current_ns == Namespace::Html) {
            TreeBuilderFeedback::SetAllowCdata(self.current_ns != Namespace::Html)
        } else {
            feedback
        }
    }

    fn push(&mut self, element: OpenElement) {
        if self.open.len() >= MAX_TRACKED_ELEMENTS {
            // Deeper than any real document: give up tracking rather than grow without bound.
            self.open.clear();
        } else {
            self.open.push(element);
        }
    }

    fn content_ns(&self) -> Namespace {
        self.open.last().map_or(Namespace::Html, |e| e.content_ns)
    }

    fn start_tag(
        &mut self,
        tag_name: LocalNameHash,
        name: Box<[u8]>,
        self_closing: bool,
        html_encoding: bool,
        font_breakout: bool,
    ) -> TreeBuilderFeedback {
        let ns = self.content_ns();
        if ns != Namespace::Html && (causes_foreign_content_exit(tag_name) || font_breakout) {
            // 13.2.6.5: pop until the current node is HTML or an integration point, then
            // handle the tag there.
            while self
                .open
                .last()
                .is_some_and(|e| e.content_ns != Namespace::Html)
            {
                self.open.pop();
            }
            return self.start_tag(tag_name, name, self_closing, false, false);
        }
        if &*name == b"svg" || &*name == b"math" {
            if !self_closing {
                let ns = if &*name == b"svg" {
                    Namespace::Svg
                } else {
                    Namespace::MathML
                };
                self.push(OpenElement {
                    ns,
                    name,
                    content_ns: ns,
                });
            }
            return TreeBuilderFeedback::None;
        }
        if ns == Namespace::Html {
            if self.open.is_empty() {
                return get_text_type_adjustment(tag_name);
            }
            if !is_void_html(&name) {
                self.push(OpenElement {
                    ns,
                    name,
                    content_ns: ns,
                });
            }
            return get_text_type_adjustment(tag_name);
        }
        if self_closing {
            return TreeBuilderFeedback::None;
        }
        let integration_point = match ns {
            Namespace::Svg => {
                is_html_integration_point_in_svg(tag_name)
                    || &*name == b"foreignobject"
                    || &*name == b"desc"
                    || &*name == b"title"
            }
            _ => {
                is_text_integration_point_in_math_ml(tag_name)
                    || (&*name == b"annotation-xml" && html_encoding)
            }
        };
        let content_ns = if integration_point {
            Namespace::Html
        } else {
            ns
        };
        self.push(OpenElement {
            ns,
            name,
            content_ns,
        });
        TreeBuilderFeedback::None
    }

    fn end_tag(&mut self, name: &[u8]) {
        let Some(current) = self.open.last() else {
            return;
        };
        if current.ns == Namespace::Html {
            self.html_end_tag(name);
            return;
        }
        if name == b"p" || name == b"br" {
            // 13.2.6.5: such end tags leave foreign content up to HTML or an integration point.
            while self
                .open
                .last()
                .is_some_and(|e| e.content_ns != Namespace::Html)
            {
                self.open.pop();
            }
            self.html_end_tag(name);
            return;
        }
        // 13.2.6.5, any other end tag: close the nearest foreign element of that name; at the
        // first HTML element below, the HTML rules decide.
        for i in (0..self.open.len()).rev() {
            if &*self.open[i].name == name {
                self.open.truncate(i);
                return;
            }
            match i.checked_sub(1).map(|below| self.open[below].ns) {
                Some(Namespace::Html) => {
                    self.html_end_tag(name);
                    return;
                }
                Some(_) => {}
                None => {
                    // The elements below the outermost foreign one are not tracked: an HTML
                    // end tag there may close an ancestor and the whole subtree with it.
                    // Erring towards HTML keeps raw-text elements raw.
                    if is_html_element(name) {
                        self.open.clear();
                    }
                    return;
                }
            }
        }
    }

    /// "Any other end tag" of the in-body rules, over the tracked elements: close the nearest
    /// HTML element of that name unless a special element stands in between.
    fn html_end_tag(&mut self, name: &[u8]) {
        for i in (0..self.open.len()).rev() {
            let element = &self.open[i];
            if element.ns == Namespace::Html && &*element.name == name {
                self.open.truncate(i);
                return;
            }
            if element.is_special() {
                return;
            }
        }
        // Past the outermost foreign element, as in `end_tag`.
        if is_html_element(name) {
            self.open.clear();
        }
    }
}
