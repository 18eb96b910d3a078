//! The bytes of one shared-cache entry: a small header, a tag, the payload.
//!
//! Redis is outside this process: whatever sits under a key may be stale, truncated, written by
//! another program or by someone who reached the Redis port. An entry is used only when its tag,
//! made with the signing key over the Redis key, the header and the payload, checks out; anything
//! else reads as a miss. Binding the Redis key into the tag stops a valid entry from being copied
//! under another key (one image served for another).

use bytes::Bytes;

use crate::pipeline::SourceFormat;
use crate::signing::{KeyRing, SIGNATURE_BYTES};

/// Format marker and version: an entry of another layout is foreign.
const MAGIC: &[u8; 4] = b"IRS1";
/// Begins every tagged message; its NUL keeps tags apart from URL signatures.
const DOMAIN: &[u8] = b"imgrelay shared cache\0";

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A transformed image, served as it is.
    Variant = 1,
    /// Upstream bytes, transformed after reading.
    Source = 2,
}

/// A checked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// One of the image types this service produces.
    pub mime: &'static str,
    pub etag: String,
    pub body: Bytes,
}

/// Why a stored value was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Corrupt {
    #[error("truncated or not an entry")]
    Shape,
    #[error("entry of another kind")]
    Kind,
    #[error("content type this service does not serve")]
    Mime,
    #[error("tag does not check out")]
    Tag,
}

/// The stored form of `body` under `redis_key`.
pub(crate) fn seal(
    keys: &KeyRing,
    redis_key: &str,
    kind: Kind,
    mime: &str,
    etag: &str,
    body: &[u8],
) -> Option<Vec<u8>> {
    let mime_len = u8::try_from(mime.len()).ok()?;
    let etag_len = u8::try_from(etag.len()).ok()?;
    let mut out = Vec::with_capacity(7 + mime.len() + etag.len() + SIGNATURE_BYTES + body.len());
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.push(mime_len);
    out.extend_from_slice(mime.as_bytes());
    out.push(etag_len);
    out.extend_from_slice(etag.as_bytes());
    let tag = keys.seal(&message(redis_key, &out, body));
    out.extend_from_slice(&tag);
    out.extend_from_slice(body);
    Some(out)
}

/// The entry stored as `value` under `redis_key`, if it is one of ours of `kind`. The body
/// shares `value`'s bytes.
pub(crate) fn open(
    keys: &KeyRing,
    redis_key: &str,
    kind: Kind,
    value: Bytes,
    allow_svg: bool,
) -> Result<Entry, Corrupt> {
    let mut at = 0;
    let mut take = |n: usize| {
        let part = value.get(at..at + n).ok_or(Corrupt::Shape)?;
        at += n;
        Ok::<_, Corrupt>((part, at))
    };
    if take(MAGIC.len())?.0 != MAGIC {
        return Err(Corrupt::Shape);
    }
    if take(1)?.0 != [kind as u8] {
        return Err(Corrupt::Kind);
    }
    let mime_len = usize::from(take(1)?.0[0]);
    let mime = take(mime_len)?.0;
    let etag_len = usize::from(take(1)?.0[0]);
    let (etag, header_end) = take(etag_len)?;
    let (tag, body_start) = take(SIGNATURE_BYTES)?;
    let body = value.slice(body_start..);
    if !keys.opens(&message(redis_key, &value[..header_end], &body), tag) {
        return Err(Corrupt::Tag);
    }
    let mime = served_mime(mime, kind, allow_svg).ok_or(Corrupt::Mime)?;
    let etag = std::str::from_utf8(etag)
        .map_err(|_| Corrupt::Shape)?
        .to_owned();
    Ok(Entry { mime, etag, body })
}

fn message<'a>(redis_key: &'a str, header: &'a [u8], body: &'a [u8]) -> [&'a [u8]; 4] {
    [DOMAIN, redis_key.as_bytes(), header, body]
}

/// The static name of a type a variant may have; sources carry none.
fn served_mime(mime: &[u8], kind: Kind, allow_svg: bool) -> Option<&'static str> {
    if kind == Kind::Source {
        return mime.is_empty().then_some("");
    }
    SourceFormat::ALL
        .iter()
        .filter(|f| allow_svg || **f != SourceFormat::Svg)
        .map(|f| f.mime())
        .find(|m| m.as_bytes() == mime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Key;

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(
            Key::from_hex(&format!("{byte:02x}").repeat(32)).unwrap(),
            vec![],
        )
    }

    #[test]
    fn an_entry_reads_back_only_under_its_key_kind_and_keys() {
        let keys = ring(1);
        let sealed = seal(&keys, "k", Kind::Variant, "image/webp", "\"e\"", b"RIFF").unwrap();
        let value = Bytes::from(sealed);
        let entry = open(&keys, "k", Kind::Variant, value.clone(), false).unwrap();
        assert_eq!(
            entry,
            Entry {
                mime: "image/webp",
                etag: "\"e\"".into(),
                body: Bytes::from_static(b"RIFF"),
            }
        );
        assert_eq!(
            open(&keys, "other", Kind::Variant, value.clone(), false),
            Err(Corrupt::Tag)
        );
        assert_eq!(
            open(&ring(2), "k", Kind::Variant, value.clone(), false),
            Err(Corrupt::Tag)
        );
        assert_eq!(
            open(&keys, "k", Kind::Source, value.clone(), false),
            Err(Corrupt::Kind)
        );
        // Every truncation and every flipped byte is refused, never a panic.
        for end in 0..value.len() {
            assert!(open(&keys, "k", Kind::Variant, value.slice(..end), false).is_err());
        }
        for i in 0..value.len() {
            let mut bad = value.to_vec();
            bad[i] ^= 0x20;
            assert!(open(&keys, "k", Kind::Variant, Bytes::from(bad), false).is_err());
        }
    }

    #[test]
    fn only_served_types_are_accepted() {
        let keys = ring(1);
        let svg =
            Bytes::from(seal(&keys, "k", Kind::Variant, "image/svg+xml", "", b"<svg/>").unwrap());
        assert_eq!(
            open(&keys, "k", Kind::Variant, svg.clone(), false),
            Err(Corrupt::Mime)
        );
        assert!(open(&keys, "k", Kind::Variant, svg, true).is_ok());
        let html = Bytes::from(seal(&keys, "k", Kind::Variant, "text/html", "", b"<p>").unwrap());
        assert_eq!(
            open(&keys, "k", Kind::Variant, html, true),
            Err(Corrupt::Mime)
        );
        let source = Bytes::from(seal(&keys, "s", Kind::Source, "", "", b"\xff\xd8").unwrap());
        assert_eq!(
            open(&keys, "s", Kind::Source, source, false).unwrap().body,
            Bytes::from_static(b"\xff\xd8")
        );
    }
}
