//! Hexo front matter: image keys rewritten in place, every other byte kept.
//!
//! Only the scalar of a configured key (or an item of its block list) is replaced, in the
//! quoting style it was written in; comments, spacing and line endings stay as they were.

use std::borrow::Cow;

use super::context::{Markup, Outcome};
use super::doc_state::DocState;
use super::report::Action;

/// Whether a buffer opens with a front matter line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Yes; the opening `---` line ends at this offset.
    At(usize),
    No,
    /// Cannot tell yet.
    NeedMore,
}

/// Looks for the opening `---` line: after an optional UTF-8 BOM and blank lines (scraped
/// posts often start with an empty line).
pub(crate) fn opening(buf: &[u8]) -> Opening {
    let mut pos = if buf.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            let rest = &buf[pos..];
            let blank = rest.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'));
            return if blank || b"---\r".starts_with(rest) {
                Opening::NeedMore
            } else {
                Opening::No
            };
        };
        let end = pos + nl + 1;
        let line = &buf[pos..end];
        if trim_eol(line).is_empty() {
            pos = end;
            continue;
        }
        return if trim_eol(line) == b"---" && line.starts_with(b"---") {
            Opening::At(end)
        } else {
            Opening::No
        };
    }
}

/// Where the front matter ends: the offset just past the closing `---` line. `None` means
/// not found (yet).
pub(crate) fn closing_offset(buf: &[u8]) -> Option<usize> {
    let Opening::At(mut pos) = opening(buf) else {
        return None;
    };
    while pos < buf.len() {
        let end = memchr::memchr(b'\n', &buf[pos..]).map(|e| pos + e + 1)?;
        if trim_eol(&buf[pos..end]) == b"---" {
            return Some(end);
        }
        pos = end;
    }
    None
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Trailing spaces after the marker are tolerated by Hexo.
    let end = line
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    &line[..end]
}

/// Rewrites the front matter block (from the opening `---` through the closing line).
pub(crate) fn rewrite(block: &[u8], st: &mut DocState, out: &mut Vec<u8>) {
    let ctx = st.ctx.clone();
    let keys = &ctx.policy().front_matter_keys;
    let mut list_key: Option<(String, usize)> = None;
    let mut pos = 0;
    while pos < block.len() {
        let end = memchr::memchr(b'\n', &block[pos..]).map_or(block.len(), |e| pos + e + 1);
        let line = &block[pos..end];
        pos = end;
        let Ok(text) = std::str::from_utf8(line) else {
            list_key = None;
            out.extend_from_slice(line);
            continue;
        };
        let rewritten = rewrite_line(text, keys, &mut list_key, st);
        out.extend_from_slice(rewritten.as_bytes());
    }
}

fn rewrite_line<'a>(
    line: &'a str,
    keys: &[String],
    list_key: &mut Option<(String, usize)>,
    st: &mut DocState,
) -> Cow<'a, str> {
    let indented = line.starts_with([' ', '\t']);
    let trimmed = line.trim_start_matches([' ', '\t']);
    if let Some((key, index)) = list_key.as_mut() {
        if let Some(item) = trimmed
            .strip_prefix('-')
            .filter(|r| r.starts_with([' ', '\t']))
        {
            let start = line.len() - item.len();
            let place = format!("front-matter:{key}[{index}]");
            *index += 1;
            return rewrite_scalar(line, start, place, st);
        }
        if indented || trimmed.trim_end().is_empty() || trimmed.starts_with('#') {
            return Cow::Borrowed(line);
        }
        *list_key = None;
    }
    if indented {
        return Cow::Borrowed(line);
    }
    let Some(colon) = line.find(':') else {
        return Cow::Borrowed(line);
    };
    let key = &line[..colon];
    if !keys.iter().any(|k| k == key) {
        return Cow::Borrowed(line);
    }
    let value = &line[colon + 1..];
    let body = value.trim_end_matches(['\n', '\r']);
    let content = body.trim();
    if content.is_empty() || content.starts_with('#') {
        *list_key = Some((key.to_string(), 0));
        return Cow::Borrowed(line);
    }
    if !value.starts_with([' ', '\t']) {
        return Cow::Borrowed(line);
    }
    rewrite_scalar(line, colon + 1, format!("front-matter:{key}"), st)
}

/// Rewrites the scalar that starts (after blanks) at `from` in `line`.
fn rewrite_scalar<'a>(
    line: &'a str,
    from: usize,
    place: String,
    st: &mut DocState,
) -> Cow<'a, str> {
    let rest = &line[from..];
    let start = from + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
    let Some(scalar) = Scalar::parse(&line[start..]) else {
        return Cow::Borrowed(line);
    };
    let raw = &line[start + scalar.inner.start..start + scalar.inner.end];
    let options = st.ctx.unsized_options();
    // The memo is keyed by the decoded value; the report shows the value as written.
    let ctx = st.ctx.clone();
    let outcome = st
        .memo
        .resolve(&ctx, &scalar.value, Markup::Decoded, options);
    let (action, reason, upstream, proxied) = match outcome {
        Outcome::Rewrite { upstream, proxied } => (
            Action::Rewritten,
            Cow::Borrowed("rewritten"),
            Some(upstream),
            Some(proxied),
        ),
        Outcome::Keep(reason) => (Action::Kept, Cow::Borrowed(reason), None, None),
        Outcome::Skip(reason) => (Action::Skipped, Cow::Owned(reason.to_string()), None, None),
    };
    st.record(|| place, raw, action, reason, upstream.as_deref(), None);
    let Some(proxied) = proxied else {
        return Cow::Borrowed(line);
    };
    let mut out = String::with_capacity(line.len() + proxied.len());
    out.push_str(&line[..start + scalar.inner.start]);
    out.push_str(&scalar.style.escape(&proxied));
    out.push_str(&line[start + scalar.inner.end..]);
    Cow::Owned(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Single,
    Double,
    Plain,
}

impl Style {
    fn escape<'s>(self, s: &'s str) -> Cow<'s, str> {
        match self {
            Style::Single if s.contains('\'') => Cow::Owned(s.replace('\'', "''")),
            Style::Double if s.contains(['"', '\\']) => {
                Cow::Owned(s.replace('\\', "\\\\").replace('"', "\\\""))
            }
            _ => Cow::Borrowed(s),
        }
    }
}

/// A one-line YAML scalar: its decoded value and the byte range of its content (inside the
/// quotes) relative to where it starts.
struct Scalar {
    style: Style,
    value: String,
    inner: std::ops::Range<usize>,
}

impl Scalar {
    fn parse(s: &str) -> Option<Scalar> {
        let line = s.trim_end_matches(['\n', '\r']);
        match line.as_bytes().first()? {
            b'\'' => {
                let mut value = String::new();
                let mut i = 1;
                let b = line.as_bytes();
                loop {
                    let rel = line[i..].find('\'')?;
                    value.push_str(&line[i..i + rel]);
                    i += rel;
                    if b.get(i + 1) == Some(&b'\'') {
                        value.push('\'');
                        i += 2;
                    } else {
                        return Some(Scalar {
                            style: Style::Single,
                            value,
                            inner: 1..i,
                        });
                    }
                }
            }
            b'"' => {
                let mut value = String::new();
                let mut chars = line[1..].char_indices();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            return Some(Scalar {
                                style: Style::Double,
                                value,
                                inner: 1..1 + i,
                            });
                        }
                        '\\' => {
                            let (_, e) = chars.next()?;
                            match e {
                                'x' | 'u' | 'U' => {
                                    let n = match e {
                                        'x' => 2,
                                        'u' => 4,
                                        _ => 8,
                                    };
                                    let mut hex = String::new();
                                    for _ in 0..n {
                                        hex.push(chars.next()?.1);
                                    }
                                    value
                                        .push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                                }
                                _ => value.push(match e {
                                    'n' => '\n',
                                    't' | '\t' => '\t',
                                    'r' => '\r',
                                    '0' => '\0',
                                    ' ' => ' ',
                                    '/' => '/',
                                    '"' => '"',
                                    '\\' => '\\',
                                    '_' => '\u{a0}',
                                    'N' => '\u{85}',
                                    _ => return None,
                                }),
                            }
                        }
                        c => value.push(c),
                    }
                }
                None
            }
            b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' => None,
            _ => {
                let end = line
                    .find(" #")
                    .or_else(|| line.find("\t#"))
                    .unwrap_or(line.len());
                let value = line[..end].trim_end();
                Some(Scalar {
                    style: Style::Plain,
                    value: value.to_string(),
                    inner: 0..value.len(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_closing_line() {
        assert_eq!(closing_offset(b"---\na: 1\n---\nbody"), Some(13));
        assert_eq!(closing_offset(b"---\r\na: 1\r\n--- \r\nbody"), Some(17));
        assert_eq!(closing_offset(b"---\na: 1\n----\n"), None);
        assert_eq!(closing_offset(b"\n---\na: 1\n---\n"), Some(14));
        assert_eq!(opening(b"--"), Opening::NeedMore);
        assert_eq!(opening(b"\n \n"), Opening::NeedMore);
        assert_eq!(opening(b"---\r\n"), Opening::At(5));
        assert_eq!(opening(b"<html>"), Opening::No);
        assert_eq!(opening(b"----\n"), Opening::No);
    }

    #[test]
    fn scalars_decode_per_style() {
        let s = Scalar::parse("'it''s' # c\n").unwrap();
        assert_eq!((s.value.as_str(), s.inner), ("it's", 1..6));
        let s = Scalar::parse("\"a\\\"b\\u0041\"\n").unwrap();
        assert_eq!(s.value, "a\"bA");
        let s = Scalar::parse("http://x/y.jpg # note\n").unwrap();
        assert_eq!(s.value, "http://x/y.jpg");
        assert!(Scalar::parse("'unterminated\n").is_none());
    }
}
