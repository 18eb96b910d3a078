//! HTML character references in attribute values: the tokenizer hands values over raw.

use std::borrow::Cow;

/// Named references worth knowing inside URLs and CSS; anything else is left as written.
const NAMED: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{a0}'),
    ("sol", '/'),
    ("colon", ':'),
    ("quest", '?'),
    ("equals", '='),
    ("percnt", '%'),
    ("num", '#'),
    ("lpar", '('),
    ("rpar", ')'),
    ("comma", ','),
    ("period", '.'),
    ("excl", '!'),
    ("plus", '+'),
    ("semi", ';'),
    ("lowbar", '_'),
    ("dollar", '$'),
    ("ast", '*'),
    ("bsol", '\\'),
    ("Tab", '\t'),
    ("NewLine", '\n'),
];

/// Legacy references the HTML spec also accepts without `;` (outside attribute-value
/// ambiguity, which [`decode`] checks).
const LEGACY: &[&str] = &["amp", "lt", "gt", "quot"];

/// Decodes character references in a raw attribute value, as a browser would.
pub(crate) fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('&') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_one(after) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One reference after its `&`: the character and the bytes consumed.
fn decode_one(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (digits_start, radix) = match b.get(1) {
            Some(b'x' | b'X') => (2, 16),
            _ => (1, 10),
        };
        let len = b[digits_start..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit() && (radix == 16 || c.is_ascii_digit()))
            .count();
        if len == 0 {
            return None;
        }
        let end = digits_start + len;
        let n = u32::from_str_radix(&s[digits_start..end], radix).unwrap_or(0x110000);
        let c = match n {
            0 | 0xD800..=0xDFFF => '\u{fffd}',
            _ => char::from_u32(n).unwrap_or('\u{fffd}'),
        };
        let used = if b.get(end) == Some(&b';') {
            end + 1
        } else {
            end
        };
        return Some((c, used));
    }
    let len = b.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
    let name = &s[..len];
    if b.get(len) == Some(&b';') {
        return NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, c)| (c, len + 1));
    }
    // Without `;`, an attribute keeps `&name` when `=` or an alphanumeric follows.
    LEGACY.iter().find_map(|legacy| {
        let next = b.get(legacy.len());
        (name.starts_with(legacy) && name.len() == legacy.len() && !matches!(next, Some(b'=')))
            .then(|| {
                let c = NAMED
                    .iter()
                    .find(|(n, _)| n == legacy)
                    .map_or('&', |&(_, c)| c);
                (c, legacy.len())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_references() {
        assert_eq!(decode("a?b=1&amp;c=2"), "a?b=1&c=2");
        assert_eq!(decode("&#x2F;&#47;&quot;"), "//\"");
        assert_eq!(decode("x&copy=1&unknown;&amp"), "x&copy=1&unknown;&");
        assert_eq!(decode("&ampx"), "&ampx");
        assert_eq!(decode("&#xD800;"), "\u{fffd}");
        assert_eq!(decode("&#99999999999;"), "\u{fffd}");
    }
}
