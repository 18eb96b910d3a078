//! Output format negotiation from the `Accept` header.

use super::options::Format;

/// Output formats a client accepts, as a small Copy set (part of the cache key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FormatSet(u8);

impl FormatSet {
    fn bit(f: Format) -> u8 {
        match f {
            Format::Jpeg => 1,
            Format::Png => 2,
            Format::Webp => 4,
            Format::Avif => 8,
        }
    }

    /// One bit per format: a stable name for the set (cache keys).
    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, f: Format) -> bool {
        self.0 & Self::bit(f) != 0
    }

    pub fn insert(&mut self, f: Format) {
        self.0 |= Self::bit(f);
    }
}

impl FromIterator<Format> for FormatSet {
    fn from_iter<I: IntoIterator<Item = Format>>(iter: I) -> FormatSet {
        let mut set = FormatSet::default();
        for f in iter {
            set.insert(f);
        }
        set
    }
}

/// The formats worth producing for one request.
///
/// A forced format is the whole answer. Otherwise JPEG and PNG are always accepted (every browser
/// renders them, whatever it sends), and WebP/AVIF only when they are in `configured` and the
/// client names them explicitly with a non-zero quality: `image/*` and `*/*` do not count, since
/// browsers without WebP support send them too. Formats that are not configured never enter the
/// set, which keeps the number of cached variants per image small.
pub fn negotiate(accept: Option<&str>, configured: &[Format], forced: Option<Format>) -> FormatSet {
    if let Some(f) = forced {
        return [f].into_iter().collect();
    }
    let mut set: FormatSet = [Format::Jpeg, Format::Png].into_iter().collect();
    let Some(accept) = accept else { return set };
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        // Compared in place: every image request negotiates, and lowering a copy would allocate.
        let format = if media.eq_ignore_ascii_case("image/webp") {
            Format::Webp
        } else if media.eq_ignore_ascii_case("image/avif") {
            Format::Avif
        } else {
            continue;
        };
        let refused = parts.any(|p| {
            let p = p.trim();
            p.get(..2).is_some_and(|k| k.eq_ignore_ascii_case("q="))
                && p[2..].trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
        });
        if !refused && configured.contains(&format) {
            set.insert(format);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIGURED: [Format; 4] = [Format::Avif, Format::Webp, Format::Jpeg, Format::Png];

    #[test]
    fn browsers_get_what_they_name() {
        let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
        let set = negotiate(Some(chrome), &CONFIGURED, None);
        assert!(set.contains(Format::Avif) && set.contains(Format::Webp));
        let old = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";
        let set = negotiate(Some(old), &CONFIGURED, None);
        assert!(!set.contains(Format::Webp) && set.contains(Format::Jpeg));
        assert!(negotiate(None, &CONFIGURED, None).contains(Format::Png));
    }

    #[test]
    fn zero_quality_and_unconfigured_formats_are_left_out() {
        let set = negotiate(Some("image/webp;q=0, image/avif"), &[Format::Webp], None);
        assert!(!set.contains(Format::Webp));
        assert!(!set.contains(Format::Avif));
        let set = negotiate(Some("IMAGE/WEBP ; Q=0.5"), &[Format::Webp], None);
        assert!(set.contains(Format::Webp));
    }

    #[test]
    fn forced_format_is_the_whole_set() {
        let set = negotiate(Some("image/webp"), &CONFIGURED, Some(Format::Png));
        assert_eq!(set, [Format::Png].into_iter().collect());
    }
}
