//! An exact scanner for the YAML that front matter is written in. It finds the scalars of
//! chosen top-level keys with the byte span each was written in, decodes them as a YAML loader
//! would, and encodes a new value in the same style. It reads every value of every key, so a
//! multi-line string of another key can never be mistaken for a key line; it changes nothing,
//! so comments, key order and the author's quoting survive a rewrite.
//!
//! Covered: plain, single- and double-quoted scalars (multi-line, with line folding and every
//! escape), literal and folded block scalars, block sequences and flow sequences spanning
//! lines, tags and anchors before a value. Nested mappings and aliases are read past, not into.

use std::ops::Range;

/// How a scalar is written, which is how its new value is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Unquoted; `in_flow` inside `[…]`, where `,[]{}` end it.
    Plain {
        in_flow: bool,
    },
    Single,
    /// `escaped_slash`: the author wrote `\/` (JSON encoders do), so the new value does too.
    Double {
        escaped_slash: bool,
    },
    /// `|`, `|-`, `|+` …
    Literal,
    /// `>`, `>-`, `>+` …
    Folded,
}

impl Style {
    /// The text that replaces the scalar's span. A plain value that would not read back as
    /// the same string unquoted is single-quoted instead; a block scalar cannot take a value
    /// with a line break.
    pub(crate) fn encode(self, value: &str) -> Option<String> {
        match self {
            Style::Plain { in_flow } if plain_safe(value, in_flow) => Some(value.to_string()),
            Style::Plain { .. } | Style::Single => Some(single_quoted(value)),
            Style::Double { escaped_slash } => Some(double_quoted(value, escaped_slash)),
            Style::Literal | Style::Folded => {
                let safe = !value.is_empty()
                    && !value.starts_with([' ', '\t'])
                    && !value.contains(['\n', '\r']);
                safe.then(|| value.to_string())
            }
        }
    }
}

fn plain_safe(value: &str, in_flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    !"-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !value.starts_with(char::is_whitespace)
        && !value.ends_with(char::is_whitespace)
        && !value.ends_with(':')
        && !value.contains(": ")
        && !value.contains(" #")
        && !value.chars().any(char::is_control)
        && !(in_flow && value.contains([',', '[', ']', '{', '}']))
}

fn single_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn double_quoted(value: &str, escaped_slash: bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if escaped_slash => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One scalar of a wanted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar {
    pub(crate) key: String,
    /// Its position when it is an item of a sequence.
    pub(crate) index: Option<usize>,
    pub(crate) style: Style,
    /// The decoded value.
    pub(crate) value: String,
    /// The bytes a new value replaces: quotes included; a block scalar's content without the
    /// final line break (the header and the chomping stay).
    pub(crate) span: Range<usize>,
    /// The value as written, for reports: inside the quotes.
    pub(crate) written: Range<usize>,
}

/// Where the YAML stops making sense; the scalars before it were found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub(crate) struct Malformed {
    pub(crate) line: usize,
    pub(crate) what: &'static str,
}

#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) scalars: Vec<Scalar>,
    pub(crate) malformed: Option<Malformed>,
}

/// Scans the mapping in `block[body]` (between the `---` lines) for the scalars of the keys
/// `wanted` accepts. Offsets are into `block`.
pub(crate) fn scan(block: &[u8], body: Range<usize>, wanted: &dyn Fn(&str) -> bool) -> Scan {
    let mut scanner = Scanner {
        b: &block[..body.end],
        wanted,
        scalars: Vec::new(),
    };
    let malformed = scanner
        .mapping(body.start)
        .err()
        .map(|(at, what)| Malformed {
            line: 1 + memchr::memchr_iter(b'\n', &block[..at.min(block.len())]).count(),
            what,
        });
    Scan {
        scalars: scanner.scalars,
        malformed,
    }
}

type Fail = (usize, &'static str);

/// Whose value a node is: it decides where a block sequence may start and whether the node's
/// scalars are collected.
#[derive(Clone, Copy)]
struct Owner<'k> {
    /// The wanted key, or `None` for a value that is only read past.
    key: Option<&'k str>,
    index: Option<usize>,
    /// The indentation of the key or `-` the node belongs to.
    indent: usize,
    /// A mapping value (a block sequence may then sit at the key's own indentation).
    in_mapping: bool,
}

/// A scalar before it is known to be a value rather than a key.
struct Found {
    style: Style,
    value: Vec<u8>,
    span: Range<usize>,
    written: Range<usize>,
}

struct Scanner<'a> {
    b: &'a [u8],
    wanted: &'a dyn Fn(&str) -> bool,
    scalars: Vec<Scalar>,
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_break(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

impl Scanner<'_> {
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(b'\n')
    }

    fn eol(&self, i: usize) -> bool {
        i >= self.b.len() || is_break(self.b[i])
    }

    /// Start of the line after the one holding `i`.
    fn next_line(&self, i: usize) -> usize {
        memchr::memchr(b'\n', self.b.get(i..).unwrap_or_default())
            .map_or(self.b.len(), |n| i + n + 1)
    }

    /// End of the line holding `i`, before its line break.
    fn line_end(&self, i: usize) -> usize {
        let end = memchr::memchr(b'\n', self.b.get(i..).unwrap_or_default())
            .map_or(self.b.len(), |n| i + n);
        if end > i && self.b[end - 1] == b'\r' {
            end - 1
        } else {
            end
        }
    }

    fn indent(&self, line: usize) -> usize {
        self.b[line..].iter().take_while(|&&c| c == b' ').count()
    }

    fn skip_blanks(&self, mut i: usize) -> usize {
        while i < self.b.len() && is_blank(self.b[i]) {
            i += 1;
        }
        i
    }

    /// Whether the line at `line` holds nothing but blanks and maybe a comment.
    fn empty_line(&self, line: usize) -> bool {
        let i = self.skip_blanks(line);
        self.eol(i) || self.b[i] == b'#'
    }

    /// The first line from `line` on that holds content.
    fn content_line(&self, mut line: usize) -> usize {
        while line < self.b.len() && self.empty_line(line) {
            line = self.next_line(line);
        }
        line
    }

    fn dash(&self, i: usize) -> bool {
        self.at(i) == b'-' && (is_blank(self.at(i + 1)) || self.eol(i + 1))
    }

    fn mapping(&mut self, mut line: usize) -> Result<(), Fail> {
        while line < self.b.len() {
            if self.empty_line(line) || self.indent(line) > 0 {
                line = self.next_line(line);
                continue;
            }
            let Some((key, after)) = self.key(line)? else {
                line = self.next_line(line);
                continue;
            };
            let owner = Owner {
                key: (self.wanted)(&key).then_some(key.as_str()),
                index: None,
                indent: 0,
                in_mapping: true,
            };
            line = self.node(after, owner)?;
        }
        Ok(())
    }

    /// A mapping key at `i`: its text and the offset after its `:`.
    fn key(&self, i: usize) -> Result<Option<(String, usize)>, Fail> {
        let (text, mut j) = match self.at(i) {
            b'\'' | b'"' => {
                let found = self.quoted(i)?;
                let text = String::from_utf8(found.value).unwrap_or_default();
                (text, self.skip_blanks(found.span.end))
            }
            _ => {
                let mut j = i;
                loop {
                    if self.eol(j) || (self.b[j] == b'#' && j > i && is_blank(self.b[j - 1])) {
                        return Ok(None);
                    }
                    if self.b[j] == b':' && (self.eol(j + 1) || is_blank(self.b[j + 1])) {
                        break;
                    }
                    j += 1;
                }
                let text = String::from_utf8_lossy(self.b[i..j].trim_ascii_end()).into_owned();
                (text, j)
            }
        };
        if self.at(j) != b':' || !(self.eol(j + 1) || is_blank(self.at(j + 1))) {
            return Ok(None);
        }
        j += 1;
        Ok(Some((text, j)))
    }

    /// The node that starts after `: ` or `- ` at `i`; returns the line after it.
    fn node(&mut self, i: usize, owner: Owner<'_>) -> Result<usize, Fail> {
        let mut p = self.skip_blanks(i);
        // Tags and anchors say nothing about the value's text.
        while matches!(self.at(p), b'!' | b'&') {
            while !self.eol(p) && !is_blank(self.b[p]) {
                p += 1;
            }
            p = self.skip_blanks(p);
        }
        if !self.eol(p) && self.b[p] != b'#' {
            return self.node_at(p, owner);
        }
        // The value is on the lines below, or absent.
        let after = self.next_line(p);
        let line = self.content_line(after);
        if line >= self.b.len() {
            return Ok(line);
        }
        let indent = self.indent(line);
        let c = line + indent;
        let deeper = indent > owner.indent;
        if self.dash(c) && (deeper || (indent == owner.indent && owner.in_mapping)) {
            return self.block_sequence(line, indent, owner);
        }
        if !deeper {
            return Ok(after);
        }
        if self.key(c)?.is_some() {
            return Ok(self.past_deeper(line, owner.indent));
        }
        self.node_at(c, owner)
    }

    /// Lines indented deeper than `indent` (a nested mapping nobody asked for).
    fn past_deeper(&self, mut line: usize, indent: usize) -> usize {
        while line < self.b.len() && (self.empty_line(line) || self.indent(line) > indent) {
            line = self.next_line(line);
        }
        line
    }

    fn node_at(&mut self, p: usize, owner: Owner<'_>) -> Result<usize, Fail> {
        match self.b[p] {
            b'\'' | b'"' => {
                let found = self.quoted(p)?;
                let q = self.skip_blanks(found.span.end);
                if self.at(q) == b':' {
                    // A key of a nested mapping, not a scalar value.
                    return Ok(self.past_deeper(self.next_line(q), owner.indent));
                }
                if !self.eol(q) && self.b[q] != b'#' {
                    return Err((q, "text after a quoted scalar"));
                }
                self.push(found, owner);
                Ok(self.next_line(q))
            }
            b'|' | b'>' => self.block_scalar(p, owner),
            b'[' => {
                let end = self.flow_sequence(p, owner)?;
                Ok(self.next_line(end))
            }
            b'{' => {
                let end = self.past_flow(p)?;
                Ok(self.next_line(end))
            }
            b'*' => Ok(self.next_line(p)),
            _ => self.plain(p, owner),
        }
    }

    fn push(&mut self, found: Found, owner: Owner<'_>) {
        let Some(key) = owner.key else {
            return;
        };
        // A value that is not UTF-8 is no URL.
        let Ok(value) = String::from_utf8(found.value) else {
            return;
        };
        self.scalars.push(Scalar {
            key: key.to_string(),
            index: owner.index,
            style: found.style,
            value,
            span: found.span,
            written: found.written,
        });
    }

    fn block_sequence(
        &mut self,
        mut line: usize,
        indent: usize,
        owner: Owner<'_>,
    ) -> Result<usize, Fail> {
        let mut index = 0;
        loop {
            line = self.content_line(line);
            if line >= self.b.len() || self.indent(line) != indent || !self.dash(line + indent) {
                return Ok(line);
            }
            let item = Owner {
                key: owner.key,
                index: Some(index),
                indent,
                in_mapping: false,
            };
            line = self.node(line + indent + 1, item)?;
            index += 1;
        }
    }

    /// A plain scalar in block context: its first line, then lines indented deeper than its
    /// owner, folded.
    fn plain(&mut self, p: usize, owner: Owner<'_>) -> Result<usize, Fail> {
        let mut value = Vec::new();
        let mut end;
        let mut line_start = p;
        let mut breaks = 0;
        loop {
            let (text_end, stop) = self.plain_line(line_start);
            if stop == PlainStop::Mapping {
                if value.is_empty() {
                    // `key: value` inside a sequence item: a nested mapping.
                    return Ok(self.past_deeper(self.next_line(p), owner.indent));
                }
                return Err((text_end, "a mapping inside a plain scalar"));
            }
            if text_end > line_start {
                if !value.is_empty() {
                    if breaks == 1 {
                        value.push(b' ');
                    } else {
                        value.extend(std::iter::repeat_n(b'\n', breaks - 1));
                    }
                }
                value.extend_from_slice(&self.b[line_start..text_end]);
            }
            end = text_end;
            if stop == PlainStop::Comment {
                break;
            }
            // Continuation lines: deeper than the owner, not a comment.
            let mut next = self.next_line(end);
            breaks = 1;
            while next < self.b.len() && self.eol(self.skip_blanks(next)) {
                breaks += 1;
                next = self.next_line(next);
            }
            let indent = self.indent(next.min(self.b.len()));
            let c = self.skip_blanks(next);
            if next >= self.b.len() || indent <= owner.indent || self.at(c) == b'#' {
                break;
            }
            line_start = c;
        }
        self.push(
            Found {
                style: Style::Plain { in_flow: false },
                value,
                span: p..end,
                written: p..end,
            },
            owner,
        );
        Ok(self.next_line(end))
    }

    /// Where the plain text on the line from `i` ends (trailing blanks dropped), and why.
    fn plain_line(&self, i: usize) -> (usize, PlainStop) {
        let mut j = i;
        let stop = loop {
            if self.eol(j) {
                break PlainStop::Line;
            }
            let c = self.b[j];
            if c == b'#' && j > i && is_blank(self.b[j - 1]) {
                break PlainStop::Comment;
            }
            if c == b':' && (self.eol(j + 1) || is_blank(self.b[j + 1])) {
                break PlainStop::Mapping;
            }
            j += 1;
        };
        let text = self.b[i..j].trim_ascii_end();
        (i + text.len(), stop)
    }

    /// A single- or double-quoted scalar at `p`, possibly over several lines.
    fn quoted(&self, p: usize) -> Result<Found, Fail> {
        let quote = self.b[p];
        let mut value = Vec::new();
        // Bytes up to here came from escapes or text and survive the trimming before a fold.
        let mut hard = 0;
        let mut escaped_slash = false;
        let mut i = p + 1;
        loop {
            let Some(&c) = self.b.get(i) else {
                return Err((p, "a quoted scalar that never closes"));
            };
            match c {
                b'\'' if quote == b'\'' => {
                    if self.at(i + 1) == b'\'' {
                        value.push(b'\'');
                        i += 2;
                    } else {
                        break;
                    }
                }
                b'"' if quote == b'"' => break,
                b'\\' if quote == b'"' => {
                    let e = self.at(i + 1);
                    if is_break(e) {
                        i = self
                            .fold(i + 1, &mut value, true)
                            .map_err(|(_, what)| (p, what))?;
                    } else {
                        escaped_slash |= e == b'/';
                        i = self.escape(i, &mut value)?;
                    }
                    hard = value.len();
                    continue;
                }
                b'\n' | b'\r' => {
                    let keep = value[hard..].trim_ascii_end().len();
                    value.truncate(hard + keep);
                    i = self
                        .fold(i, &mut value, false)
                        .map_err(|(_, what)| (p, what))?;
                    hard = value.len();
                    continue;
                }
                c => {
                    value.push(c);
                    if !is_blank(c) {
                        hard = value.len();
                    }
                    i += 1;
                }
            }
        }
        let style = if quote == b'\'' {
            Style::Single
        } else {
            Style::Double { escaped_slash }
        };
        Ok(Found {
            style,
            value,
            span: p..i + 1,
            written: p + 1..i,
        })
    }

    /// A line break inside a quoted scalar at `i`: one break reads as a space, each further
    /// empty line as a newline; an escaped break (`\` at the end of the line) as nothing.
    fn fold(&self, mut i: usize, value: &mut Vec<u8>, escaped: bool) -> Result<usize, Fail> {
        let mut breaks = 0;
        loop {
            if self.at(i) == b'\r' {
                i += 1;
            }
            if self.at(i) == b'\n' {
                i += 1;
            }
            breaks += 1;
            if i >= self.b.len() {
                return Err((i, "a quoted scalar that never closes"));
            }
            let j = self.skip_blanks(i);
            if !is_break(self.at(j)) || j >= self.b.len() {
                i = j;
                break;
            }
            i = j;
        }
        if breaks == 1 && !escaped {
            value.push(b' ');
        } else {
            value.extend(std::iter::repeat_n(b'\n', breaks - 1));
        }
        Ok(i)
    }

    /// The escape sequence at `i` (the backslash) of a double-quoted scalar.
    fn escape(&self, i: usize, value: &mut Vec<u8>) -> Result<usize, Fail> {
        let unit = match self.at(i + 1) {
            b'0' => '\0',
            b'a' => '\u{7}',
            b'b' => '\u{8}',
            b't' | b'\t' => '\t',
            b'n' => '\n',
            b'v' => '\u{b}',
            b'f' => '\u{c}',
            b'r' => '\r',
            b'e' => '\u{1b}',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' | b'u' | b'U' => {
                let (c, next) = self.code_point(i)?;
                let mut buf = [0; 4];
                value.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                return Ok(next);
            }
            _ => return Err((i, "an unknown escape in a double-quoted scalar")),
        };
        let mut buf = [0; 4];
        value.extend_from_slice(unit.encode_utf8(&mut buf).as_bytes());
        Ok(i + 2)
    }

    /// `\xXX`, `\uXXXX` or `\UXXXXXXXX` at `i`; a UTF-16 surrogate pair written as two `\u`
    /// escapes (as JSON encoders write them) is one character, as JavaScript loaders read it.
    fn code_point(&self, i: usize) -> Result<(char, usize), Fail> {
        let bad = (i, "a bad \\x, \\u or \\U escape");
        let hex = |at: usize, n: usize| -> Option<u32> {
            let digits = std::str::from_utf8(self.b.get(at..at + n)?).ok()?;
            if !digits.bytes().all(|d| d.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(digits, 16).ok()
        };
        let n = match self.at(i + 1) {
            b'x' => 2,
            b'u' => 4,
            _ => 8,
        };
        let unit = hex(i + 2, n).ok_or(bad)?;
        let next = i + 2 + n;
        if (0xD800..0xDC00).contains(&unit)
            && n == 4
            && self.b.get(next..next + 2) == Some(&b"\\u"[..])
        {
            let low = hex(next + 2, 4).ok_or(bad)?;
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return Ok((char::from_u32(c).ok_or(bad)?, next + 6));
            }
        }
        Ok((char::from_u32(unit).ok_or(bad)?, next))
    }

    /// A literal or folded block scalar whose header is at `p`.
    fn block_scalar(&mut self, p: usize, owner: Owner<'_>) -> Result<usize, Fail> {
        let literal = self.b[p] == b'|';
        let mut h = p + 1;
        let mut explicit = None;
        for _ in 0..2 {
            match self.at(h) {
                d @ b'1'..=b'9' if explicit.is_none() => explicit = Some(usize::from(d - b'0')),
                b'+' | b'-' => {}
                _ => break,
            }
            h += 1;
        }
        let rest = self.skip_blanks(h);
        let comment = rest > h && self.at(rest) == b'#';
        if !(self.eol(rest) || comment) {
            return Err((h, "a bad block scalar header"));
        }
        let first = self.next_line(rest);
        // Content indentation: explicit, or that of the first line with text.
        let mut line = first;
        while line < self.b.len() && self.eol(self.skip_blanks(line)) {
            line = self.next_line(line);
        }
        let indent = match explicit {
            Some(d) => owner.indent + d,
            None if line < self.b.len() => self.indent(line),
            None => 0,
        };
        if indent <= owner.indent && explicit.is_none() {
            return Ok(first);
        }
        let mut lines: Vec<Range<usize>> = Vec::new();
        let mut line = first;
        let mut after = first;
        while line < self.b.len() {
            let end = self.line_end(line);
            let text = self.skip_blanks(line);
            if text >= end {
                lines.push(end..end);
            } else if self.indent(line) < indent {
                break;
            } else {
                lines.push(line + indent..end);
                after = self.next_line(line);
            }
            line = self.next_line(line);
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let (Some(head), Some(tail)) = (lines.iter().find(|l| !l.is_empty()), lines.last()) else {
            return Ok(after);
        };
        let span = head.start..tail.end;
        let value = if literal {
            let parts: Vec<&[u8]> = lines.iter().map(|l| &self.b[l.clone()]).collect();
            parts.join(&b'\n')
        } else {
            self.folded(&lines)
        };
        let style = if literal {
            Style::Literal
        } else {
            Style::Folded
        };
        self.push(
            Found {
                style,
                value,
                span: span.clone(),
                written: span,
            },
            owner,
        );
        Ok(after)
    }

    /// Folded content: lines joined by spaces, except around empty and more-indented lines.
    fn folded(&self, lines: &[Range<usize>]) -> Vec<u8> {
        let mut value = Vec::new();
        let mut previous: Option<bool> = None;
        let mut empties = 0;
        for line in lines {
            let text = &self.b[line.clone()];
            if text.is_empty() {
                empties += 1;
                continue;
            }
            let normal = !is_blank(text[0]);
            match previous {
                Some(true) if normal && empties == 0 => value.push(b' '),
                Some(true) if normal => value.extend(std::iter::repeat_n(b'\n', empties)),
                Some(_) => value.extend(std::iter::repeat_n(b'\n', empties + 1)),
                None => value.extend(std::iter::repeat_n(b'\n', empties)),
            }
            value.extend_from_slice(text);
            previous = Some(normal);
            empties = 0;
        }
        value
    }

    /// A flow sequence at `p`; its scalar items are collected for a wanted key. Returns the
    /// offset after its `]`.
    fn flow_sequence(&mut self, p: usize, owner: Owner<'_>) -> Result<usize, Fail> {
        let mut i = p + 1;
        let mut index = 0;
        // The item read last: pushed at `,` or `]`, dropped at `:` (it was a key).
        let mut pending: Option<Found> = None;
        // Inside a `key: value` pair, whose value is no item.
        let mut pair = false;
        loop {
            i = self.flow_space(i);
            let Some(&c) = self.b.get(i) else {
                return Err((p, "a flow sequence that never closes"));
            };
            match c {
                b']' | b',' => {
                    if let Some(found) = pending.take().filter(|_| !pair) {
                        let item = Owner {
                            index: Some(index),
                            ..owner
                        };
                        self.push(found, item);
                    }
                    if c == b']' {
                        return Ok(i + 1);
                    }
                    index += 1;
                    pair = false;
                    i += 1;
                }
                b':' => {
                    pending = None;
                    pair = true;
                    i += 1;
                }
                b'\'' | b'"' => {
                    let found = self.quoted(i)?;
                    i = found.span.end;
                    pending = Some(found);
                }
                b'[' | b'{' => {
                    pending = None;
                    i = self.past_flow(i)?;
                }
                b'}' => return Err((i, "a `}` closing a `[`")),
                _ => {
                    let found = self.flow_plain(i);
                    i = found.span.end.max(i + 1);
                    pending = Some(found);
                }
            }
        }
    }

    /// Blanks, line breaks and comments between flow items.
    fn flow_space(&self, mut i: usize) -> usize {
        loop {
            match self.b.get(i) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
                Some(b'#') => i = self.next_line(i),
                _ => return i,
            }
        }
    }

    /// A plain scalar inside `[…]`: up to a flow indicator, a `: ` or a comment, folded.
    fn flow_plain(&self, p: usize) -> Found {
        let mut j = p;
        while let Some(&c) = self.b.get(j) {
            let next = self.at(j + 1);
            let ends = matches!(c, b',' | b'[' | b']' | b'{' | b'}')
                || (c == b':' && (is_blank(next) || is_break(next) || b",[]{}".contains(&next)))
                || (c == b'#' && j > p && (is_blank(self.b[j - 1]) || is_break(self.b[j - 1])));
            if ends {
                break;
            }
            j += 1;
        }
        let raw = self.b[p..j].trim_ascii_end();
        let end = p + raw.len();
        let mut value = Vec::new();
        let mut breaks = 0;
        for line in raw.split(|&c| c == b'\n') {
            let text = line.trim_ascii();
            if text.is_empty() {
                breaks += 1;
                continue;
            }
            if !value.is_empty() {
                if breaks == 0 {
                    value.push(b' ');
                } else {
                    value.extend(std::iter::repeat_n(b'\n', breaks));
                }
            }
            value.extend_from_slice(text);
            breaks = 0;
        }
        Found {
            style: Style::Plain { in_flow: true },
            value,
            span: p..end,
            written: p..end,
        }
    }

    /// Past a nested flow collection at `p`, quotes respected; the offset after its close.
    fn past_flow(&self, p: usize) -> Result<usize, Fail> {
        let mut depth = 0usize;
        let mut i = p;
        while let Some(&c) = self.b.get(i) {
            match c {
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                }
                b'\'' | b'"' => {
                    i = self.quoted(i)?.span.end;
                    continue;
                }
                b'#' if is_blank(self.b[i - 1]) || is_break(self.b[i - 1]) => {
                    i = self.next_line(i);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        Err((p, "a flow collection that never closes"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlainStop {
    Line,
    Comment,
    Mapping,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(yaml: &str) -> Scan {
        scan(yaml.as_bytes(), 0..yaml.len(), &|k| {
            matches!(k, "cover" | "photos" | "banner" | "headimg")
        })
    }

    fn values(yaml: &str) -> Vec<(String, Option<usize>, Style, String, String)> {
        let scan = scan_all(yaml);
        assert_eq!(scan.malformed, None, "{yaml}");
        scan.scalars
            .into_iter()
            .map(|s| (s.key, s.index, s.style, s.value, yaml[s.span].to_string()))
            .collect()
    }

    const PLAIN: Style = Style::Plain { in_flow: false };

    #[test]
    fn scalars_of_every_style_decode_with_their_spans() {
        let got = values(
            "title: 'it''s: [a]'\ncover: 'http://x/it''s.jpg' # c\nbanner: \"a\\\"b\\u0041\\/c\"\n\
             headimg: http://x/y.jpg # note\n",
        );
        assert_eq!(
            got,
            [
                (
                    "cover".into(),
                    None,
                    Style::Single,
                    "http://x/it's.jpg".into(),
                    "'http://x/it''s.jpg'".into()
                ),
                (
                    "banner".into(),
                    None,
                    Style::Double {
                        escaped_slash: true
                    },
                    "a\"bA/c".into(),
                    "\"a\\\"b\\u0041\\/c\"".into()
                ),
                (
                    "headimg".into(),
                    None,
                    PLAIN,
                    "http://x/y.jpg".into(),
                    "http://x/y.jpg".into()
                ),
            ]
        );
    }

    #[test]
    fn block_scalars_keep_their_header() {
        let got =
            values("cover: >-\n  http://x/a.jpg\nbanner: |\n    http://x/b.jpg\n\n  \ntitle: t\n");
        assert_eq!(got[0].2, Style::Folded);
        assert_eq!(
            (got[0].3.as_str(), got[0].4.as_str()),
            ("http://x/a.jpg", "http://x/a.jpg")
        );
        assert_eq!(got[1].2, Style::Literal);
        assert_eq!(got[1].3, "http://x/b.jpg");
        let folded = values("cover: >\n  a\n  b\n\n  c\n   d\n");
        assert_eq!(folded[0].3, "a b\nc\n d");
    }

    #[test]
    fn sequences_in_block_and_flow_over_lines() {
        let got = values(
            "photos:\n- http://x/1.jpg\n  # c\n-   'http://x/2.jpg'\ntags: [a, b]\n\
             cover: ['http://x/3.jpg', \"http://x/4.jpg\",\n  http://x/5.jpg,\n  x: y ]\n",
        );
        let items: Vec<(Option<usize>, &str)> = got.iter().map(|g| (g.1, g.3.as_str())).collect();
        assert_eq!(
            items,
            [
                (Some(0), "http://x/1.jpg"),
                (Some(1), "http://x/2.jpg"),
                (Some(0), "http://x/3.jpg"),
                (Some(1), "http://x/4.jpg"),
                (Some(2), "http://x/5.jpg"),
            ]
        );
        assert_eq!(got[4].2, Style::Plain { in_flow: true });
    }

    #[test]
    fn multi_line_strings_of_other_keys_are_read_past() {
        let got = values(
            "excerpt: \"one\n  cover: http://x/no.jpg\n  end\"\nsummary: |\n  cover: http://x/no2.jpg\n\
             cover: http://x/yes.jpg\n",
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].3, "http://x/yes.jpg");
    }

    #[test]
    fn quoted_scalars_fold_and_escape() {
        let got =
            values("cover: \"a\n   b\n\n  c\\\n  d\\x41\\ud83d\\ude00\"\nbanner: '  x  \n  y'\n");
        assert_eq!(got[0].3, "a b\ncdA\u{1F600}");
        assert_eq!(got[1].3, "  x y");
    }

    #[test]
    fn nested_values_tags_and_aliases() {
        let got = values(
            "cover:\n  url: http://x/no.jpg\nbanner: !!str &a http://x/t.jpg\nheadimg: *a\n\
             photos:\n  - src: http://x/no.jpg\n  - http://x/p.jpg\n",
        );
        let v: Vec<&str> = got.iter().map(|g| g.3.as_str()).collect();
        assert_eq!(v, ["http://x/t.jpg", "http://x/p.jpg"]);
    }

    #[test]
    fn malformed_yaml_is_located_and_what_came_before_is_kept() {
        let scan = scan_all("cover: http://x/a.jpg\nbanner: 'open\nx: y\n");
        assert_eq!(scan.scalars.len(), 1);
        assert_eq!(
            scan.malformed,
            Some(Malformed {
                line: 2,
                what: "a quoted scalar that never closes"
            })
        );
        assert!(scan_all("cover: \"\\q\"\n").malformed.is_some());
        assert!(scan_all("cover: [a, b\n").malformed.is_some());
        assert!(scan_all("cover: 'a' b\n").malformed.is_some());
    }

    #[test]
    fn values_are_encoded_back_in_their_style() {
        assert_eq!(PLAIN.encode("/img/a,b").unwrap(), "/img/a,b");
        assert_eq!(
            Style::Plain { in_flow: true }.encode("/img/a,b").unwrap(),
            "'/img/a,b'"
        );
        assert_eq!(PLAIN.encode("a: b").unwrap(), "'a: b'");
        assert_eq!(Style::Single.encode("it's").unwrap(), "'it''s'");
        assert_eq!(
            Style::Double {
                escaped_slash: true
            }
            .encode("/a\"\\")
            .unwrap(),
            "\"\\/a\\\"\\\\\""
        );
        assert_eq!(
            Style::Double {
                escaped_slash: false
            }
            .encode("/a")
            .unwrap(),
            "\"/a\""
        );
        assert_eq!(Style::Folded.encode("/img/x").unwrap(), "/img/x");
        assert_eq!(Style::Literal.encode("a\nb"), None);
    }

    #[test]
    fn hostile_input_never_panics() {
        let pieces = [
            "cover:", " ", "'", "\"", "\\", "\n", "-", "[", "]", "{", "}", "#", ":", "|", ">", "x",
            "\r", "  ", "\\u", "d8",
        ];
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..20_000 {
            let mut doc = String::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                doc.push_str(pieces[seed as usize % pieces.len()]);
            }
            let scan = scan_all(&doc);
            for s in scan.scalars {
                assert!(s.span.end <= doc.len() && s.written.start >= s.span.start);
            }
        }
    }
}
