//! UTF-16 documents are rewritten through UTF-8: decoded as they stream in, rewritten like any
//! UTF-8 page, and encoded back in the byte order (and with the BOM) they came in. The
//! Encoding Standard, and so encoding_rs, has no UTF-16 encoder, hence the one here.

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_16BE, UTF_16LE};

/// Decoded text is handed on in pieces of at most this many bytes, so a large chunk of input
/// never needs a buffer of its own size.
const PIECE: usize = 8 * 1024;

/// Whether `encoding` is one of the two UTF-16s; `Some(big_endian)`.
pub(crate) fn byte_order(encoding: &'static Encoding) -> Option<bool> {
    if encoding == UTF_16LE {
        Some(false)
    } else if encoding == UTF_16BE {
        Some(true)
    } else {
        None
    }
}

/// UTF-16 in, UTF-8 out. A code unit or surrogate pair split across chunks is carried over;
/// a lone surrogate becomes U+FFFD, as browsers show it.
pub(crate) struct Utf16Decoder {
    decoder: Decoder,
    piece: Vec<u8>,
}

impl Utf16Decoder {
    /// The BOM, if any, is dropped here and written again by [`Utf16Encoder::new`].
    pub(crate) fn new(encoding: &'static Encoding) -> Utf16Decoder {
        Utf16Decoder {
            decoder: encoding.new_decoder_with_bom_removal(),
            piece: vec![0; PIECE],
        }
    }

    /// Decodes `chunk`, handing the UTF-8 to `out` piece by piece; `last` flushes what is
    /// carried (a dangling byte becomes U+FFFD).
    pub(crate) fn decode(&mut self, mut chunk: &[u8], last: bool, mut out: impl FnMut(&[u8])) {
        loop {
            let (result, read, written, _) =
                self.decoder.decode_to_utf8(chunk, &mut self.piece, last);
            if written > 0 {
                out(&self.piece[..written]);
            }
            chunk = &chunk[read..];
            if result == CoderResult::InputEmpty {
                return;
            }
        }
    }
}

/// UTF-8 in, UTF-16 out in one byte order. A UTF-8 sequence split across chunks is carried.
pub(crate) struct Utf16Encoder {
    big_endian: bool,
    carry: Vec<u8>,
    out: Vec<u8>,
}

impl Utf16Encoder {
    /// `bom`: the document began with one, so its output does too.
    pub(crate) fn new(big_endian: bool, bom: bool) -> Utf16Encoder {
        let mut encoder = Utf16Encoder {
            big_endian,
            carry: Vec::new(),
            out: Vec::new(),
        };
        if bom {
            encoder.push_str("\u{feff}");
        }
        encoder
    }

    fn push_str(&mut self, s: &str) {
        for unit in s.encode_utf16() {
            let bytes = if self.big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            };
            self.out.extend_from_slice(&bytes);
        }
    }

    /// Encodes `utf8`; the bytes returned are the UTF-16 of everything complete so far.
    pub(crate) fn encode(&mut self, utf8: &[u8]) -> &[u8] {
        let mut rest = utf8;
        // Complete the sequence carried from the last chunk first.
        while !self.carry.is_empty() && !rest.is_empty() {
            self.carry.push(rest[0]);
            rest = &rest[1..];
            match std::str::from_utf8(&self.carry) {
                Ok(s) => {
                    let s = s.to_owned();
                    self.push_str(&s);
                    self.carry.clear();
                }
                Err(e) if e.error_len().is_some() => {
                    self.push_str("\u{fffd}");
                    self.carry.clear();
                }
                Err(_) => {}
            }
        }
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.push_str(s);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    if let Ok(s) = std::str::from_utf8(valid) {
                        self.push_str(s);
                    }
                    match e.error_len() {
                        Some(n) => {
                            self.push_str("\u{fffd}");
                            rest = &after[n..];
                        }
                        None => {
                            self.carry.extend_from_slice(after);
                            break;
                        }
                    }
                }
            }
        }
        &self.out
    }

    /// Empties the output buffer once its bytes have been written.
    pub(crate) fn clear(&mut self) {
        self.out.clear();
    }

    /// At the end of the document, a sequence left incomplete becomes U+FFFD.
    pub(crate) fn finish(&mut self) -> &[u8] {
        if !self.carry.is_empty() {
            self.carry.clear();
            self.push_str("\u{fffd}");
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str, big_endian: bool) -> Vec<u8> {
        s.encode_utf16()
            .flat_map(|u| {
                if big_endian {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_at_every_split() {
        let text = "\u{feff}<p>配图 😀 é</p>";
        for big_endian in [false, true] {
            let encoding = if big_endian { UTF_16BE } else { UTF_16LE };
            let input = utf16(text, big_endian);
            for cut in 0..input.len() {
                let mut decoder = Utf16Decoder::new(encoding);
                let mut utf8 = Vec::new();
                decoder.decode(&input[..cut], false, |b| utf8.extend_from_slice(b));
                decoder.decode(&input[cut..], true, |b| utf8.extend_from_slice(b));
                assert_eq!(std::str::from_utf8(&utf8).unwrap(), &text[3..]);
                for split in 0..utf8.len() {
                    let mut encoder = Utf16Encoder::new(big_endian, true);
                    let mut back = encoder.encode(&utf8[..split]).to_vec();
                    encoder.clear();
                    back.extend_from_slice(encoder.encode(&utf8[split..]));
                    encoder.clear();
                    back.extend_from_slice(encoder.finish());
                    assert_eq!(back, input, "cut {cut}, split {split}");
                }
            }
        }
    }

    #[test]
    fn broken_input_becomes_replacement_characters() {
        let mut decoder = Utf16Decoder::new(UTF_16LE);
        let mut utf8 = Vec::new();
        // A lone high surrogate, then a dangling byte.
        decoder.decode(b"a\0\x00\xD8b\0c", true, |b| utf8.extend_from_slice(b));
        assert_eq!(String::from_utf8(utf8).unwrap(), "a\u{fffd}b\u{fffd}");
        let mut encoder = Utf16Encoder::new(false, false);
        let out = encoder.encode(b"a\xFFb\xE9").to_vec();
        assert_eq!(out, utf16("a\u{fffd}b", false));
        assert_eq!(encoder.finish(), utf16("a\u{fffd}b\u{fffd}", false));
    }
}
