//! What a client may ask of an image: the box, quality, cover, a forced format and the device
//! pixel ratio, with exactly one canonical spelling per option set (the proxy URL's `options`).

use std::fmt;
use std::str::FromStr;

/// Largest width or height an options string may name.
pub const MAX_DIMENSION: u32 = 65535;

/// An options string that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("bad options {options:?}: {reason}")]
    Bad { options: String, reason: String },
    #[error("options are not in canonical form; the canonical spelling is {canonical:?}")]
    NonCanonical { canonical: String },
}

/// An output format that can be forced in the options or negotiated from `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Avif,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Jpeg, Format::Png, Format::Webp, Format::Avif];

    /// The format of this name (`jpeg`, `png`, `webp`, `avif`); without the error text that
    /// `parse` builds, since every image request's options are read with it.
    pub fn named(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Avif => "avif",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Format::named(s).ok_or_else(|| format!("unknown format {s:?} (jpeg, png, webp, avif)"))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the client asked for. `0` in a dimension means unconstrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    pub width: u32,
    pub height: u32,
    pub quality: Option<u8>,
    pub cover: bool,
    pub format: Option<Format>,
    /// Device pixel ratio 1..=4; the box is multiplied by it.
    pub dpr: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: 0,
            height: 0,
            quality: None,
            cover: false,
            format: None,
            dpr: 1,
        }
    }
}

impl Options {
    pub fn sized(width: u32, height: u32) -> Options {
        Options {
            width,
            height,
            ..Options::default()
        }
    }

    /// The box in pixels after applying `dpr` (0 = unconstrained).
    pub fn target_box(&self) -> (u32, u32) {
        let dpr = u32::from(self.dpr.max(1));
        (
            self.width.saturating_mul(dpr),
            self.height.saturating_mul(dpr),
        )
    }

    /// Parses an options string strictly: unknown flags, duplicates, out-of-range values and
    /// non-canonical spellings are all errors.
    pub fn parse(s: &str) -> Result<Options, OptionsError> {
        let bad = |reason: &str| OptionsError::Bad {
            options: s.chars().take(64).collect(),
            reason: reason.to_string(),
        };
        let mut parts = s.split(',');
        let size = parts.next().unwrap_or_default();
        let (w, h) = size.split_once('x').ok_or_else(|| bad("expected WxH"))?;
        let dim = |v: &str| -> Result<u32, OptionsError> {
            if v.is_empty() || v.len() > 5 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("dimensions must be decimal numbers"));
            }
            let n: u32 = v.parse().map_err(|_| bad("dimension out of range"))?;
            if n > MAX_DIMENSION {
                return Err(bad("dimension out of range"));
            }
            Ok(n)
        };
        let mut opts = Options::sized(dim(w)?, dim(h)?);
        let mut seen_dpr = false;
        for flag in parts {
            let number = |prefix: &str, lo: u32, hi: u32| -> Option<Result<u32, OptionsError>> {
                let digits = flag.strip_prefix(prefix)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(match digits.parse::<u32>() {
                    Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                    _ => Err(bad("flag value out of range")),
                })
            };
            if flag == "cover" {
                if opts.cover {
                    return Err(bad("duplicate flag"));
                }
                opts.cover = true;
            } else if let Some(format) = Format::named(flag) {
                if opts.format.is_some() {
                    return Err(bad("more than one format"));
                }
                opts.format = Some(format);
            } else if let Some(q) = number("q", 1, 100) {
                if opts.quality.is_some() {
                    return Err(bad("duplicate flag"));
                }
                opts.quality = Some(q? as u8);
            } else if let Some(d) = number("dpr", 1, 4) {
                if seen_dpr {
                    return Err(bad("duplicate flag"));
                }
                seen_dpr = true;
                opts.dpr = d? as u8;
            } else {
                return Err(bad("unknown flag"));
            }
        }
        if !opts.displays_as(s) {
            return Err(OptionsError::NonCanonical {
                canonical: opts.to_string(),
            });
        }
        Ok(opts)
    }

    /// Whether these options are written exactly `s`, checked without building the string (every
    /// image request parses its options).
    fn displays_as(&self, s: &str) -> bool {
        struct Compare<'a> {
            rest: &'a str,
            same: bool,
        }
        impl fmt::Write for Compare<'_> {
            fn write_str(&mut self, part: &str) -> fmt::Result {
                match self.rest.strip_prefix(part) {
                    Some(rest) => self.rest = rest,
                    None => self.same = false,
                }
                Ok(())
            }
        }
        let mut compare = Compare {
            rest: s,
            same: true,
        };
        let _ = fmt::Write::write_fmt(&mut compare, format_args!("{self}"));
        compare.same && compare.rest.is_empty()
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)?;
        if let Some(q) = self.quality {
            write!(f, ",q{q}")?;
        }
        if self.cover {
            f.write_str(",cover")?;
        }
        if let Some(format) = self.format {
            write!(f, ",{format}")?;
        }
        if self.dpr > 1 {
            write!(f, ",dpr{}", self.dpr)?;
        }
        Ok(())
    }
}
