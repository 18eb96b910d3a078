//! Recognising CORS-proxy wrapper URLs and extracting the upstream URL inside them.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// One configured wrapper, split once so matching a candidate allocates nothing.
#[derive(Debug, Clone)]
pub struct Wrapper {
    scheme: String,
    host: String,
    /// The port the prefix names, or the scheme's default.
    port: u16,
    /// Everything after the authority (`/?`, `/raw`, `/`), compared case-sensitively.
    rest: String,
    param: Option<String>,
}

/// Why a wrapped URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwrapError {
    MissingParam,
    NotUtf8,
    Empty,
}

impl UnwrapError {
    pub fn reason(&self) -> &'static str {
        match self {
            UnwrapError::MissingParam => "wrapper URL lacks its url parameter",
            UnwrapError::NotUtf8 => "inner URL is not UTF-8 after percent-decoding",
            UnwrapError::Empty => "wrapper URL has an empty inner URL",
        }
    }
}

/// The configured wrappers (`rewrite.wrappers`).
#[derive(Debug, Clone, Default)]
pub struct WrapperSet(Vec<Wrapper>);

fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        443
    }
}

/// Splits `scheme://authority rest` without allocating; `None` when `s` has no authority.
fn split_authority(s: &str) -> Option<(&str, &str, &str)> {
    let colon = s.find("://")?;
    let scheme = &s[..colon];
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let after = &s[colon + 3..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

/// `host[:port]` → (host, port); `None` for credentials or a bad port.
fn split_host_port<'a>(authority: &'a str, scheme: &str) -> Option<(&'a str, u16)> {
    if authority.contains('@') {
        return None;
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || port.is_empty() => {
            let port = if port.is_empty() {
                default_port(scheme)
            } else {
                port.parse().ok()?
            };
            Some((host, port))
        }
        _ => Some((authority, default_port(scheme))),
    }
}

impl Wrapper {
    /// One wrapper from its prefix (an absolute http(s) URL) and the query parameter that
    /// carries the inner URL, if any.
    pub fn new(prefix: &str, param: Option<&str>) -> Result<Wrapper, String> {
        let (scheme, authority, rest) =
            split_authority(prefix).ok_or_else(|| "not an absolute URL".to_string())?;
        let (host, port) =
            split_host_port(authority, scheme).ok_or_else(|| "bad authority".to_string())?;
        Ok(Wrapper {
            scheme: scheme.to_ascii_lowercase(),
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
            rest: if rest.is_empty() {
                "/".into()
            } else {
                rest.into()
            },
            param: param.map(str::to_string),
        })
    }
}

impl WrapperSet {
    pub fn new(wrappers: Vec<Wrapper>) -> WrapperSet {
        WrapperSet(wrappers)
    }

    /// The inner URL of `url` when it starts with a wrapper prefix, decoded per the wrapper's
    /// style; `None` when `url` is not wrapped.
    pub fn unwrap<'a>(&self, url: &'a str) -> Option<Result<Cow<'a, str>, UnwrapError>> {
        let (scheme, authority, rest) = split_authority(url)?;
        let (host, port) = split_host_port(authority, scheme)?;
        let host = host.strip_suffix('.').unwrap_or(host);
        let w = self.0.iter().find(|w| {
            w.scheme.eq_ignore_ascii_case(scheme)
                && w.host.eq_ignore_ascii_case(host)
                && w.port == port
                && rest.starts_with(w.rest.as_str())
                && (w.param.is_none()
                    || matches!(rest.as_bytes().get(w.rest.len()), None | Some(b'?')))
        })?;
        let after = &rest[w.rest.len()..];
        Some(match &w.param {
            Some(param) => param_value(after, param),
            None => decode_if_encoded(after),
        })
    }
}

/// The value of query parameter `param` in `after` (which must start the query with `?`),
/// percent-decoded once.
fn param_value<'a>(after: &'a str, param: &str) -> Result<Cow<'a, str>, UnwrapError> {
    let query = after.strip_prefix('?').ok_or(UnwrapError::MissingParam)?;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let value = query
        .split('&')
        .find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name == param).then_some(value)
        })
        .ok_or(UnwrapError::MissingParam)?;
    if value.is_empty() {
        return Err(UnwrapError::Empty);
    }
    percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| UnwrapError::NotUtf8)
}

/// The rest after a prefix, percent-decoded once only when the inner URL itself is encoded
/// (`http%3A…`, `%2F%2F…`), so a raw inner URL keeps its own `%XX` escapes.
fn decode_if_encoded(after: &str) -> Result<Cow<'_, str>, UnwrapError> {
    if after.is_empty() {
        return Err(UnwrapError::Empty);
    }
    let head = after.as_bytes();
    let starts =
        |p: &str| head.len() >= p.len() && head[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    if starts("http%3a") || starts("https%3a") || starts("%2f%2f") {
        percent_decode_str(after)
            .decode_utf8()
            .map_err(|_| UnwrapError::NotUtf8)
    } else {
        Ok(Cow::Borrowed(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Settings};

    fn set() -> WrapperSet {
        Settings::from_config(&Config::default())
            .unwrap()
            .rewrite
            .wrappers
    }

    #[test]
    fn four_default_styles() {
        let s = set();
        let inner = |u: &str| s.unwrap(u).map(|r| r.unwrap().into_owned());
        assert_eq!(
            inner("https://cors.zfour.workers.dev/?http://a.example/%E5%9B%BE.jpg").as_deref(),
            Some("http://a.example/%E5%9B%BE.jpg")
        );
        assert_eq!(
            inner("https://api.allorigins.win/raw?url=http%3A%2F%2Fa.example%2Fx.jpg").as_deref(),
            Some("http://a.example/x.jpg")
        );
        assert_eq!(
            inner("https://corsproxy.io/?http%3A%2F%2Fa.example%2F%25E5.jpg").as_deref(),
            Some("http://a.example/%E5.jpg")
        );
        assert_eq!(
            inner("https://cors-anywhere.herokuapp.com/https://a.example/x.jpg").as_deref(),
            Some("https://a.example/x.jpg")
        );
        assert_eq!(
            inner("HTTPS://CORS.zfour.workers.dev:443/?//a.example/x.jpg").as_deref(),
            Some("//a.example/x.jpg")
        );
    }

    #[test]
    fn look_alikes_are_not_wrappers() {
        let s = set();
        for u in [
            "https://cors.zfour.workers.dev.evil.example/?http://a.example/x.jpg",
            "https://evilcors.zfour.workers.dev/?http://a.example/x.jpg",
            "http://cors.zfour.workers.dev/?http://a.example/x.jpg",
            "https://cors.zfour.workers.dev:8443/?http://a.example/x.jpg",
            "https://user@cors.zfour.workers.dev/?http://a.example/x.jpg",
            "https://api.allorigins.win/rawx?url=http://a",
            "data:image/png;base64,AAAA",
            "/relative/x.jpg",
        ] {
            assert!(s.unwrap(u).is_none(), "{u}");
        }
        assert_eq!(
            s.unwrap("https://api.allorigins.win/raw?x=1").unwrap(),
            Err(UnwrapError::MissingParam)
        );
    }
}
