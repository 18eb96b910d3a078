//! Identifies a source from its magic bytes and reads its pixel size from the header alone, so
//! oversized images are refused before any decoder allocates.

use std::borrow::Cow;

use super::PipelineError;

/// What the bytes of a source are, whatever the upstream `Content-Type` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
    Avif,
    Svg,
}

impl SourceFormat {
    pub const ALL: [SourceFormat; 6] = [
        SourceFormat::Jpeg,
        SourceFormat::Png,
        SourceFormat::Gif,
        SourceFormat::Webp,
        SourceFormat::Avif,
        SourceFormat::Svg,
    ];

    pub fn mime(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "image/jpeg",
            SourceFormat::Png => "image/png",
            SourceFormat::Gif => "image/gif",
            SourceFormat::Webp => "image/webp",
            SourceFormat::Avif => "image/avif",
            SourceFormat::Svg => "image/svg+xml",
        }
    }
}

/// What the header says, read without decoding any pixel data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: SourceFormat,
    /// Stored size (before EXIF orientation); 0x0 for SVG.
    pub width: u32,
    pub height: u32,
    /// More than one frame (animated GIF, animated WebP, APNG).
    pub animated: bool,
    /// Frames the container declares (1 for a still image).
    pub frames: u32,
    /// Colours from a palette (GIF, indexed PNG): few colours, hard edges, best kept lossless.
    pub palette: bool,
}

impl Header {
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Sniffs the format and reads the header of `src`.
pub fn sniff(src: &[u8]) -> Result<Header, PipelineError> {
    if src.is_empty() {
        return Err(PipelineError::Empty);
    }
    let header = if src.starts_with(&[0xFF, 0xD8, 0xFF]) {
        jpeg_header(src)
    } else if src.starts_with(b"\x89PNG\r\n\x1a\n") {
        png_header(src)
    } else if src.starts_with(b"GIF87a") || src.starts_with(b"GIF89a") {
        gif_header(src)
    } else if src.len() >= 12 && &src[0..4] == b"RIFF" && &src[8..12] == b"WEBP" {
        webp_header(src)
    } else if is_avif(src) {
        avif_header(src)
    } else if is_svg(src) {
        Some(Header {
            format: SourceFormat::Svg,
            width: 0,
            height: 0,
            animated: false,
            frames: 1,
            palette: false,
        })
    } else {
        return Err(PipelineError::NotAnImage);
    };
    match header {
        Some(h) if h.format == SourceFormat::Svg || (h.width > 0 && h.height > 0) => Ok(h),
        _ => Err(PipelineError::Corrupt("unreadable image header")),
    }
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 2)?;
    Some(u32::from(u16::from_be_bytes([s[0], s[1]])))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 2)?;
    Some(u32::from(u16::from_le_bytes([s[0], s[1]])))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}

/// One marker segment of a JPEG header: the marker byte, the payload after the length field, and
/// the offset just past the segment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment<'a> {
    pub marker: u8,
    pub body: &'a [u8],
    pub end: usize,
}

/// The marker segments of a JPEG up to (not including) the first scan; stops early at anything
/// malformed. Fill bytes and stand-alone markers are skipped.
pub(super) fn jpeg_segments(src: &[u8]) -> impl Iterator<Item = Segment<'_>> {
    let mut i = 2;
    std::iter::from_fn(move || loop {
        while *src.get(i)? != 0xFF {
            i += 1;
        }
        while *src.get(i)? == 0xFF {
            i += 1;
        }
        let marker = *src.get(i)?;
        i += 1;
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            continue;
        }
        if matches!(marker, 0xD9 | 0xDA) {
            return None;
        }
        let len = be16(src, i)? as usize;
        let body = src.get(i + 2..i + len.max(2))?;
        i += len.max(2);
        return Some(Segment {
            marker,
            body,
            end: i,
        });
    })
}

/// Where the first scan starts: everything before it is header and metadata.
pub(super) fn jpeg_header_len(src: &[u8]) -> usize {
    jpeg_segments(src).last().map_or(src.len(), |s| s.end)
}

fn jpeg_sof(src: &[u8]) -> Option<Segment<'_>> {
    jpeg_segments(src)
        .find(|s| matches!(s.marker, 0xC0..=0xCF) && !matches!(s.marker, 0xC4 | 0xC8 | 0xCC))
}

/// The JPEG without stray bytes between its header segments (up to the first scan). libjpeg
/// skips such bytes with a warning, as browsers do, but TurboJPEG's header call fails on any
/// warning before decoding starts. Borrowed, with nothing copied, when there are none.
pub(super) fn jpeg_without_stray_bytes(src: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 2;
    while i < src.len() {
        let start = i;
        while src.get(i).is_some_and(|&b| b != 0xFF) {
            i += 1;
        }
        if i > start {
            out.get_or_insert_with(|| Vec::with_capacity(src.len()))
                .extend_from_slice(&src[copied..start]);
            copied = i;
        }
        while src.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = src.get(i) else { break };
        i += 1;
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            continue;
        }
        if marker == 0xD9 {
            break;
        }
        let Some(len) = be16(src, i) else { break };
        i += (len as usize).max(2);
        // Entropy-coded data follows the first scan header: left as it is.
        if marker == 0xDA {
            break;
        }
    }
    match out {
        None => Cow::Borrowed(src),
        Some(mut cleaned) => {
            cleaned.extend_from_slice(src.get(copied..).unwrap_or_default());
            Cow::Owned(cleaned)
        }
    }
}

/// The number of scans (SOS markers) of the first image in a JPEG, without decoding anything:
/// entropy-coded data escapes every 0xFF byte, so after the header each 0xFF 0xDA is a scan,
/// until the EOI marker (data appended after it, such as a second image, is not counted).
pub(super) fn jpeg_scans(src: &[u8]) -> u32 {
    let start = jpeg_header_len(src);
    let data = src.get(start..).unwrap_or_default();
    let mut scans = 0u32;
    for at in memchr::memchr_iter(0xFF, data) {
        match data.get(at + 1) {
            Some(0xDA) => scans = scans.saturating_add(1),
            Some(0xD9) => break,
            _ => {}
        }
    }
    scans
}

/// The first SOFn frame header gives the size.
fn jpeg_header(b: &[u8]) -> Option<Header> {
    let sof = jpeg_sof(b)?;
    Some(Header {
        format: SourceFormat::Jpeg,
        height: be16(sof.body, 1)?,
        width: be16(sof.body, 3)?,
        animated: false,
        frames: 1,
        palette: false,
    })
}

/// IHDR gives the size; an `acTL` chunk before the image data makes it an APNG.
fn png_header(b: &[u8]) -> Option<Header> {
    if b.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = be32(b, 16)?;
    let height = be32(b, 20)?;
    let mut frames = 1;
    let mut i = 8;
    while let (Some(len), Some(kind)) = (be32(b, i), b.get(i + 4..i + 8)) {
        match kind {
            b"acTL" => {
                frames = be32(b, i + 8).unwrap_or(1).max(1);
                break;
            }
            b"IDAT" | b"IEND" => break,
            _ => i = i.checked_add(12 + len as usize)?,
        }
    }
    Some(Header {
        format: SourceFormat::Png,
        width,
        height,
        animated: frames > 1,
        frames,
        palette: b.get(25) == Some(&3),
    })
}

/// The logical screen gives the size; counting image descriptors tells animation and the frame
/// count (walking the sub-block lengths only, no pixel data).
fn gif_header(b: &[u8]) -> Option<Header> {
    let width = le16(b, 6)?;
    let height = le16(b, 8)?;
    let flags = *b.get(10)?;
    let mut i = 13;
    if flags & 0x80 != 0 {
        i += 3 << ((flags & 7) + 1);
    }
    let skip_sub_blocks = |mut i: usize| -> Option<usize> {
        loop {
            let n = *b.get(i)? as usize;
            i += 1 + n;
            if n == 0 {
                return Some(i);
            }
        }
    };
    let mut frames = 0u32;
    loop {
        match b.get(i) {
            Some(0x21) => i = skip_sub_blocks(i + 2)?,
            Some(0x2C) => {
                frames = frames.saturating_add(1);
                let local = *b.get(i + 9)?;
                i += 10;
                if local & 0x80 != 0 {
                    i += 3 << ((local & 7) + 1);
                }
                i = skip_sub_blocks(i + 1)?;
            }
            // Trailer, or a stream cut short: what was seen decides.
            _ => break,
        }
    }
    Some(Header {
        format: SourceFormat::Gif,
        width,
        height,
        animated: frames > 1,
        frames: frames.max(1),
        palette: true,
    })
}

fn webp_header(b: &[u8]) -> Option<Header> {
    let (width, height, animated) = match b.get(12..16)? {
        b"VP8 " => {
            if b.get(23..26)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            (le16(b, 26)? & 0x3FFF, le16(b, 28)? & 0x3FFF, false)
        }
        b"VP8L" => {
            if *b.get(20)? != 0x2F {
                return None;
            }
            let s = b.get(21..25)?;
            let bits = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, false)
        }
        b"VP8X" => {
            let flags = *b.get(20)?;
            (le24(b, 24)? + 1, le24(b, 27)? + 1, flags & 0x02 != 0)
        }
        _ => return None,
    };
    let frames = if animated { webp_frames(b) } else { 1 };
    Some(Header {
        format: SourceFormat::Webp,
        width,
        height,
        animated,
        frames: frames.max(1),
        palette: false,
    })
}

/// ANMF chunks of an animated WebP, counted by walking the RIFF chunk headers.
fn webp_frames(b: &[u8]) -> u32 {
    let mut frames = 0u32;
    let mut i = 12;
    while let (Some(kind), Some(len)) = (b.get(i..i + 4), le32(b, i + 4)) {
        if kind == b"ANMF" {
            frames = frames.saturating_add(1);
        }
        // Chunks are padded to an even length.
        let Some(next) = (len as usize)
            .checked_add(len as usize & 1)
            .and_then(|n| n.checked_add(i + 8))
        else {
            break;
        };
        i = next;
    }
    frames
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn is_avif(b: &[u8]) -> bool {
    let Some(size) = be32(b, 0) else { return false };
    if b.get(4..8) != Some(b"ftyp") {
        return false;
    }
    let end = (size as usize).min(b.len());
    // Major brand, then compatible brands after the minor version.
    b.get(8..end).is_some_and(|brands| {
        brands
            .chunks_exact(4)
            .any(|brand| brand == b"avif" || brand == b"avis")
    })
}

/// The first `ispe` property carries the size of the primary image in the files encoders write.
fn avif_header(b: &[u8]) -> Option<Header> {
    let window = &b[..b.len().min(64 * 1024)];
    let at = memchr::memmem::find(window, b"ispe")?;
    Some(Header {
        format: SourceFormat::Avif,
        width: be32(b, at + 8)?,
        height: be32(b, at + 12)?,
        animated: false,
        frames: 1,
        palette: false,
    })
}

/// An XML document whose root is `<svg`, checked on the first kilobytes only.
fn is_svg(b: &[u8]) -> bool {
    let head = &b[..b.len().min(4096)];
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|c| !c.is_ascii_whitespace());
    let Some(text) = start.map(|s| &text[s..]) else {
        return false;
    };
    let lower: Vec<u8> = text.iter().map(u8::to_ascii_lowercase).collect();
    let xmlish =
        lower.starts_with(b"<?xml") || lower.starts_with(b"<svg") || lower.starts_with(b"<!--");
    let doctype_svg = lower.starts_with(b"<!doctype svg");
    (xmlish || doctype_svg)
        && memchr::memmem::find(&lower, b"<svg").is_some()
        && memchr::memmem::find(&lower, b"<html").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/data/images/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap_or_default()
    }

    #[test]
    fn headers_give_stored_size_without_decoding() {
        for (name, format, w, h, animated) in [
            ("photo-640x422.jpg", SourceFormat::Jpeg, 640, 422, false),
            ("orient-6.jpg", SourceFormat::Jpeg, 240, 360, false),
            (
                "claims-60000x60000.jpg",
                SourceFormat::Jpeg,
                60000,
                60000,
                false,
            ),
            (
                "bomb-20000x20000.png",
                SourceFormat::Png,
                20000,
                20000,
                false,
            ),
            ("interlaced-300x200.png", SourceFormat::Png, 300, 200, false),
            ("static-320x240.gif", SourceFormat::Gif, 320, 240, false),
            ("animated-160x120.gif", SourceFormat::Gif, 160, 120, true),
            ("lossy-640x480.webp", SourceFormat::Webp, 640, 480, false),
            (
                "lossless-alpha-320x240.webp",
                SourceFormat::Webp,
                320,
                240,
                false,
            ),
            ("animated-200x150.webp", SourceFormat::Webp, 200, 150, true),
            ("photo-640x480.avif", SourceFormat::Avif, 640, 480, false),
        ] {
            let h2 = sniff(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (h2.format, h2.width, h2.height, h2.animated),
                (format, w, h, animated),
                "{name}"
            );
        }
    }

    #[test]
    fn non_images_are_told_apart() {
        assert!(matches!(sniff(b""), Err(PipelineError::Empty)));
        assert!(matches!(
            sniff(&read("html-page.jpg")),
            Err(PipelineError::NotAnImage)
        ));
        assert_eq!(
            sniff(&read("script.svg")).map(|h| h.format).ok(),
            Some(SourceFormat::Svg)
        );
        assert!(matches!(
            sniff(b"<!DOCTYPE html><html><body><svg></svg></body></html>"),
            Err(PipelineError::NotAnImage)
        ));
    }
}
