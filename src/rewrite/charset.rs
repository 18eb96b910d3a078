//! The document's character encoding from its first bytes: BOM, then the transport's hint,
//! then a `<meta charset>` / `http-equiv` declaration, else UTF-8.

use encoding_rs::{Encoding, UTF_8};

/// Bytes examined for a `<meta>` declaration (the HTML prescan looks at 1024).
pub(crate) const SNIFF_BYTES: usize = 1024;

/// Where the encoding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Bom,
    Hint,
    Meta,
    Default,
}

/// The sniffed encoding and what told it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sniffed {
    pub encoding: &'static Encoding,
    pub source: Source,
}

pub(crate) fn sniff(head: &[u8], hint: Option<&'static Encoding>) -> Sniffed {
    if let Some((encoding, _)) = Encoding::for_bom(head) {
        return Sniffed {
            encoding,
            source: Source::Bom,
        };
    }
    if let Some(encoding) = hint {
        return Sniffed {
            encoding,
            source: Source::Hint,
        };
    }
    if let Some(encoding) = meta_charset(&head[..head.len().min(SNIFF_BYTES)]) {
        return Sniffed {
            encoding,
            source: Source::Meta,
        };
    }
    Sniffed {
        encoding: UTF_8,
        source: Source::Default,
    }
}

/// Where `needle` (ASCII) first occurs in `hay` at or after `from`, ignoring ASCII case.
pub(crate) fn find_ignore_case(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| p + from)
}

/// The first `charset=` label inside a `<meta …>` tag of `head`.
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let mut from = 0;
    while let Some(start) = find_ignore_case(head, b"<meta", from) {
        let end = memchr::memchr(b'>', &head[start..]).map_or(head.len(), |e| start + e);
        let tag = &head[start..end];
        from = end;
        let Some(at) = find_ignore_case(tag, b"charset", 0) else {
            continue;
        };
        let mut rest = &tag[at + 7..];
        rest = rest.trim_ascii_start();
        let Some(after_eq) = rest.strip_prefix(b"=") else {
            continue;
        };
        let value = after_eq.trim_ascii_start();
        let value = value
            .strip_prefix(b"\"")
            .or_else(|| value.strip_prefix(b"'"))
            .unwrap_or(value);
        let len = value
            .iter()
            .position(|&b| {
                matches!(
                    b,
                    b'"' | b'\'' | b';' | b' ' | b'/' | b'>' | b'\t' | b'\n' | b'\r'
                )
            })
            .unwrap_or(value.len());
        let encoding = Encoding::for_label(&value[..len])?;
        // The HTML standard reads a UTF-16 declaration in ASCII bytes as UTF-8.
        if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
            return Some(UTF_8);
        }
        if encoding == encoding_rs::X_USER_DEFINED {
            return Some(encoding_rs::WINDOWS_1252);
        }
        return Some(encoding);
    }
    None
}

/// The encoding named by a `charset=` parameter, if any and known.
pub(crate) fn charset_param<'a>(
    params: impl Iterator<Item = &'a str>,
) -> Option<&'static encoding_rs::Encoding> {
    params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .and_then(|(_, v)| encoding_rs::Encoding::for_label(v.trim().trim_matches('"').as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_in_order() {
        assert_eq!(
            sniff(b"\xEF\xBB\xBF<meta charset=gbk>", None).source,
            Source::Bom
        );
        assert_eq!(sniff(b"\xFF\xFEa\0", None).encoding, encoding_rs::UTF_16LE);
        assert_eq!(
            sniff(b"<meta charset=\"GBK\">", None).encoding,
            encoding_rs::GBK
        );
        let equiv = b"<META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=gb2312\">";
        assert_eq!(sniff(equiv, None).encoding, encoding_rs::GBK);
        assert_eq!(sniff(b"<p>hi", None).encoding, UTF_8);
        assert_eq!(
            sniff(b"<meta charset=gbk>", Some(UTF_8)).source,
            Source::Hint
        );
    }
}
