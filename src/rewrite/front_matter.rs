//! Hexo front matter: image keys rewritten in place, every other byte kept.
//!
//! Only the scalars of configured keys (a value, or the items of a sequence) are replaced, in
//! the style each was written in; comments, spacing and line endings stay as they were.

use std::borrow::Cow;

use super::context::{Markup, Outcome};
use super::doc_state::DocState;
use super::report::Action;
use super::yaml;

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

/// Rewrites the front matter block (from the opening `---` through the closing line): the
/// scalars of the image keys are replaced in their own style, every other byte is copied.
pub(crate) fn rewrite(block: &[u8], st: &mut DocState, out: &mut Vec<u8>) {
    let Opening::At(body) = opening(block) else {
        out.extend_from_slice(block);
        return;
    };
    // The block ends with its closing line.
    let closing = block[..block.len().saturating_sub(1)]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(body, |n| n + 1)
        .max(body);
    let ctx = st.ctx.clone();
    let keys = &ctx.policy().front_matter_keys;
    let scan = yaml::scan(block, body..closing, &|key| keys.iter().any(|k| k == key));
    let options = ctx.unsized_options();
    let mut copied = 0;
    for scalar in &scan.scalars {
        let written = String::from_utf8_lossy(&block[scalar.written.clone()]);
        st.memo.settle();
        // The memo is keyed by the decoded value; the report shows the value as written.
        let outcome = st
            .memo
            .resolve(&ctx, &scalar.value, Markup::Decoded, options);
        let (action, reason, upstream, proxied) = match outcome {
            Outcome::Rewrite { upstream, proxied } => {
                st.advertise(proxied);
                (
                    Action::Rewritten,
                    Cow::Borrowed("rewritten"),
                    Some(st.memo.upstream_text(upstream).to_string()),
                    Some(st.memo.proxied(proxied).to_string()),
                )
            }
            Outcome::Keep(reason) => (Action::Kept, Cow::Borrowed(reason), None, None),
            Outcome::Skip(reason) => (Action::Skipped, Cow::Owned(reason.to_string()), None, None),
        };
        let place = || match scalar.index {
            Some(i) => format!("front-matter:{}[{i}]", scalar.key),
            None => format!("front-matter:{}", scalar.key),
        };
        st.record(place, &written, action, reason, upstream.as_deref(), None);
        if let Some(text) = proxied.and_then(|p| scalar.style.encode(&p)) {
            out.extend_from_slice(&block[copied..scalar.span.start]);
            out.extend_from_slice(text.as_bytes());
            copied = scalar.span.end;
        }
    }
    out.extend_from_slice(&block[copied..]);
    if let Some(malformed) = scan.malformed {
        st.record(
            || "front-matter".to_string(),
            "",
            Action::Skipped,
            Cow::Owned(format!(
                "front matter is not valid YAML at {malformed}; from there on it is left as written"
            )),
            None,
            None,
        );
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
}
