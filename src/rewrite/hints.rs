//! Size hints (`data-size="W,H"`), the target box they give, and `srcset` lists.

use std::ops::Range;

use serde::Serialize;

use crate::urls::{Options, MAX_DIMENSION};

/// What an element's `data-size` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SizeStatus {
    Ok,
    /// Accepted, but written with whitespace around the numbers.
    Whitespace,
    Malformed,
    Zero,
    OutOfRange,
}

/// A parsed `data-size` hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeHint {
    pub status: SizeStatus,
    /// Present for `Ok` and `Whitespace`.
    pub size: Option<(u32, u32)>,
}

impl SizeHint {
    /// Parses `W,H`: digits only, each 1..=65535; ASCII whitespace around the numbers is
    /// tolerated and reported.
    pub fn parse(raw: &str) -> SizeHint {
        if let Some(size) = plain_pair(raw.as_bytes()) {
            return SizeHint {
                status: SizeStatus::Ok,
                size: Some(size),
            };
        }
        let invalid = |status| SizeHint { status, size: None };
        let Some((w, h)) = raw.split_once(',') else {
            return invalid(SizeStatus::Malformed);
        };
        let (wt, ht) = (
            w.trim_matches(|c: char| c.is_ascii_whitespace()),
            h.trim_matches(|c: char| c.is_ascii_whitespace()),
        );
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (Some(wn), Some(hn)) = (number(wt), number(ht)) else {
            return invalid(SizeStatus::Malformed);
        };
        if wn == 0 || hn == 0 {
            return invalid(SizeStatus::Zero);
        }
        let max = u64::from(MAX_DIMENSION);
        if wn > max || hn > max {
            return invalid(SizeStatus::OutOfRange);
        }
        let status = if wt.len() == w.len() && ht.len() == h.len() {
            SizeStatus::Ok
        } else {
            SizeStatus::Whitespace
        };
        SizeHint {
            status,
            size: Some((wn as u32, hn as u32)),
        }
    }
}

/// The common spelling `W,H` (digits only, each 1..=65535), read without building strings.
fn plain_pair(b: &[u8]) -> Option<(u32, u32)> {
    let comma = b.iter().position(|&c| c == b',')?;
    let number = |digits: &[u8]| -> Option<u32> {
        if digits.is_empty() || digits.len() > 5 {
            return None;
        }
        let mut n = 0u32;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(d - b'0');
        }
        (1..=MAX_DIMENSION).contains(&n).then_some(n)
    };
    Some((number(&b[..comma])?, number(&b[comma + 1..])?))
}

/// The intrinsic size capped to `max_width`, keeping the aspect ratio (height at least 1).
pub(crate) fn target_size((w, h): (u32, u32), max_width: u32) -> (u32, u32) {
    if w <= max_width {
        return (w, h);
    }
    let th = (u64::from(h) * u64::from(max_width) + u64::from(w) / 2) / u64::from(w);
    (max_width, th.max(1) as u32)
}

/// Widths for a generated `srcset`: the configured ones below the target, then the target.
pub(crate) fn srcset_widths(
    configured: &[u32],
    target_width: u32,
) -> impl Iterator<Item = u32> + '_ {
    configured
        .iter()
        .copied()
        .filter(move |&w| w < target_width)
        .chain(std::iter::once(target_width))
}

/// One candidate of a `srcset` value: byte ranges of its URL and descriptor in the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub url: Range<usize>,
    pub descriptor: Range<usize>,
}

impl Candidate {
    /// The width a `Nw` descriptor names.
    pub(crate) fn width(&self, value: &str) -> Option<u32> {
        let d = value[self.descriptor.clone()].trim();
        d.strip_suffix(['w', 'W'])?.parse().ok().filter(|&w| w > 0)
    }

    /// The pixel density an `Nx` descriptor names (`2x`, `1.5x`).
    pub(crate) fn density(&self, value: &str) -> Option<f64> {
        let d = value[self.descriptor.clone()].trim();
        d.strip_suffix(['x', 'X'])?
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d > 0.0)
    }
}

/// `options` for a candidate of density `d`: whole densities up to 4 as `dpr`, others by
/// scaling the box, each within [`MAX_DIMENSION`].
pub(crate) fn at_density(options: Options, d: f64) -> Options {
    if (d - 1.0).abs() < f64::EPSILON {
        return options;
    }
    if d.fract() == 0.0 && (2.0..=4.0).contains(&d) {
        return Options {
            dpr: d as u8,
            ..options
        };
    }
    let scale = |n: u32| (f64::from(n) * d).round().min(f64::from(MAX_DIMENSION)) as u32;
    Options {
        width: scale(options.width),
        height: scale(options.height),
        ..options
    }
}

/// Splits a `srcset` value into candidates following the HTML parsing rules (URLs end at
/// whitespace; a trailing comma on a URL separates candidates; descriptors end at a comma
/// outside parentheses).
pub(crate) fn parse_srcset(value: &str) -> Vec<Candidate> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let is_ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
    while i < b.len() {
        while i < b.len() && (is_ws(b[i]) || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !is_ws(b[i]) {
            i += 1;
        }
        let mut end = i;
        let mut url_ended_with_comma = false;
        while end > start && b[end - 1] == b',' {
            end -= 1;
            url_ended_with_comma = true;
        }
        let d_start = i;
        if !url_ended_with_comma {
            let mut depth = 0u32;
            while i < b.len() {
                match b[i] {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    b',' if depth == 0 => break,
                    _ => {}
                }
                i += 1;
            }
        }
        let d_end = i.max(d_start);
        if end > start {
            out.push(Candidate {
                url: start..end,
                descriptor: d_start..d_end,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_size_grammar() {
        let ok = |s: &str| SizeHint::parse(s);
        assert_eq!(ok("640,422").size, Some((640, 422)));
        assert_eq!(ok("640,422").status, SizeStatus::Ok);
        assert_eq!(ok(" 640 , 422 ").status, SizeStatus::Whitespace);
        assert_eq!(ok(" 640 , 422 ").size, Some((640, 422)));
        for bad in [
            "640,",
            "abc",
            "640x422",
            "640,422,3",
            "-640,422",
            "640.5,422",
            "",
        ] {
            assert_eq!(ok(bad).status, SizeStatus::Malformed, "{bad}");
        }
        assert_eq!(ok("0,0").status, SizeStatus::Zero);
        assert_eq!(ok("99999,99999").status, SizeStatus::OutOfRange);
        assert_eq!(ok("99999999999999999999,1").status, SizeStatus::Malformed);
    }

    #[test]
    fn target_caps_width_keeping_aspect() {
        assert_eq!(target_size((640, 422), 1280), (640, 422));
        assert_eq!(target_size((4000, 3000), 1280), (1280, 960));
        assert_eq!(target_size((10000, 1), 1280), (1280, 1));
        let widths: Vec<u32> = srcset_widths(&[320, 640, 960, 1280], 640).collect();
        assert_eq!(widths, [320, 640]);
    }

    #[test]
    fn srcset_candidates() {
        let v = "a.jpg 1x, b,c.jpg 2x,d.jpg,e.jpg 640w, f.jpg (x, y) 3x";
        let c = parse_srcset(v);
        let urls: Vec<&str> = c.iter().map(|c| &v[c.url.clone()]).collect();
        // A URL runs to whitespace, so an unspaced comma does not split candidates.
        assert_eq!(urls, ["a.jpg", "b,c.jpg", "d.jpg,e.jpg", "f.jpg"]);
        assert_eq!(c[2].width(v), Some(640));
        assert_eq!(&v[c[1].descriptor.clone()], " 2x");
    }
}
