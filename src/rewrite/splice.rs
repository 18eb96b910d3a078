//! lol_html's output, with edited start tags put in by stream offset.
//!
//! While no tag has been edited through lol_html, its output is its input byte for byte, so an
//! edited tag can go out by replacing the tag's input range as the output streams past: lol_html
//! then neither copies the new tag nor serialises it again. The first tag edited through
//! lol_html ends that ([`Output::stop`]): from its start on the output passes as it comes.

use std::collections::VecDeque;
use std::ops::Range;

/// What lol_html has handed over, with the splices still to be made.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Output the caller's sink has not seen yet.
    pub(crate) bytes: Vec<u8>,
    /// In stream order; each holds its range of `texts`.
    splices: VecDeque<Splice>,
    texts: String,
    /// Stream offset of the next byte lol_html hands over.
    offset: usize,
    /// Output stopped lining up with input (a tag was edited through lol_html).
    stopped: bool,
    enabled: bool,
}

#[derive(Debug)]
struct Splice {
    input: Range<usize>,
    text: Range<usize>,
    written: bool,
}

impl Output {
    /// Lets handlers splice (a UTF-8 document whose tags they can read in place).
    pub(crate) fn enable(&mut self) {
        self.enabled = true;
    }

    pub(crate) fn splicing(&self) -> bool {
        self.enabled && !self.stopped
    }

    /// Writes `text` instead of the input bytes `input` (a start tag not yet handed over);
    /// splicing the same tag again replaces its text.
    pub(crate) fn splice(&mut self, input: Range<usize>, text: &str) {
        debug_assert!(
            input.start >= self.offset,
            "a splice for bytes already handed over"
        );
        let from = self.texts.len();
        self.texts.push_str(text);
        let text = from..self.texts.len();
        match self.splices.back_mut() {
            Some(last) if last.input.start == input.start => last.text = text,
            _ => self.splices.push_back(Splice {
                input,
                text,
                written: false,
            }),
        }
    }

    /// The tag starting at `at` is edited through lol_html: its output no longer lines up with
    /// the input from there, so no splice is made there or after (one already made for that
    /// tag is dropped: lol_html is given all of its edits).
    pub(crate) fn stop(&mut self, at: usize) {
        if self.splices.back().is_some_and(|s| s.input.start >= at) {
            self.splices.pop_back();
        }
        self.stopped = true;
    }

    /// Takes a chunk of lol_html's output.
    pub(crate) fn push(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let Some(splice) = self.splices.front_mut() else {
                break;
            };
            if !splice.written && splice.input.start < self.offset {
                // Its tag went out before the splice was made: nothing lines up any more, so
                // the rest passes as lol_html writes it (the tag unedited, never cut).
                self.splices.clear();
                self.texts.clear();
                self.stopped = true;
                break;
            }
            let end = self.offset + chunk.len();
            if splice.input.start >= end {
                break;
            }
            if self.offset < splice.input.start {
                let before = splice.input.start - self.offset;
                self.bytes.extend_from_slice(&chunk[..before]);
                chunk = &chunk[before..];
                self.offset += before;
            }
            if !splice.written {
                self.bytes
                    .extend_from_slice(self.texts[splice.text.clone()].as_bytes());
                splice.written = true;
            }
            let skip = (splice.input.end - self.offset).min(chunk.len());
            chunk = &chunk[skip..];
            self.offset += skip;
            if self.offset == splice.input.end {
                self.splices.pop_front();
                if self.splices.is_empty() {
                    self.texts.clear();
                }
            }
        }
        self.bytes.extend_from_slice(chunk);
        self.offset += chunk.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_land_on_their_ranges_however_the_output_is_cut() {
        let input = b"ab<img x>cd<p y>ef";
        let want = "ab<IMG>cd<P Y=1>ef";
        for cut in 1..input.len() {
            let mut out = Output::default();
            out.enable();
            out.splice(2..9, "<img>");
            out.splice(2..9, "<IMG>");
            out.splice(11..16, "<P Y=1>");
            for piece in input.chunks(cut) {
                out.push(piece);
            }
            assert_eq!(String::from_utf8(out.bytes).unwrap(), want, "cut {cut}");
        }
    }

    #[test]
    fn a_splice_made_too_late_leaves_the_output_as_lol_html_wrote_it() {
        let mut out = Output::default();
        out.enable();
        out.push(b"ab<im");
        out.splices.push_back(Splice {
            input: 2..7,
            text: 0..0,
            written: false,
        });
        out.push(b"g>cd");
        assert!(!out.splicing());
        assert_eq!(String::from_utf8(out.bytes).unwrap(), "ab<img>cd");
    }

    #[test]
    fn a_stop_drops_the_tags_own_splice_and_keeps_earlier_ones() {
        let mut out = Output::default();
        out.enable();
        out.splice(0..3, "<A>");
        out.splice(5..8, "<B>");
        out.stop(5);
        assert!(!out.splicing());
        out.push(b"<a>xx<b>, then lol_html's own edit");
        assert_eq!(
            String::from_utf8(out.bytes).unwrap(),
            "<A>xx<b>, then lol_html's own edit"
        );
    }
}
