//! Recognising CORS-proxy wrapper URLs and extracting the upstream URL inside them.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// How a wrapper carries the inner URL after its prefix (the `param` form is always
/// percent-decoded once, as any query value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerDecoding {
    /// Percent-decoded once only when the inner URL itself is encoded (`http%3A…`), so a raw
    /// inner URL keeps its own `%XX` escapes.
    Auto,
    /// Always percent-decoded once (corsproxy.io: `?http://h/a.jpg%3Fx%3D1` is `a.jpg?x=1`).
    Percent,
    /// Taken as it stands.
    Raw,
}

impl std::str::FromStr for InnerDecoding {
    type Err = String;
    fn from_str(s: &str) -> Result<InnerDecoding, String> {
        match s {
            "auto" => Ok(InnerDecoding::Auto),
            "percent" => Ok(InnerDecoding::Percent),
            "raw" => Ok(InnerDecoding::Raw),
            _ => Err(format!("{s:?} is not auto, percent or raw")),
        }
    }
}

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
    decoding: InnerDecoding,
    /// As configured, for messages.
    prefix: String,
}

/// Why a wrapped URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwrapError {
    MissingParam,
    NotUtf8,
    Empty,
}

impl UnwrapError {
    /// What to fix, naming the wrapper.
    pub fn reason(&self, wrapper: &Wrapper) -> String {
        match self {
            UnwrapError::MissingParam => format!(
                "{} carries the image URL in its ?{}= parameter, which is missing",
                wrapper.prefix,
                wrapper.param.as_deref().unwrap_or("url")
            ),
            UnwrapError::NotUtf8 => format!(
                "the URL inside {} is not UTF-8 once percent-decoded",
                wrapper.prefix
            ),
            UnwrapError::Empty => format!("no image URL follows {}", wrapper.prefix),
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
    pub fn new(
        prefix: &str,
        param: Option<&str>,
        decoding: InnerDecoding,
    ) -> Result<Wrapper, String> {
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
            decoding,
            prefix: prefix.to_string(),
        })
    }
}

impl WrapperSet {
    pub fn new(wrappers: Vec<Wrapper>) -> WrapperSet {
        WrapperSet(wrappers)
    }

    /// The inner URL of `url` under each wrapper whose prefix it starts with, in the
    /// configured order, decoded per the wrapper's style; empty when `url` is not wrapped.
    pub fn candidates<'s, 'a>(
        &'s self,
        url: &'a str,
    ) -> impl Iterator<Item = (&'s Wrapper, Result<Cow<'a, str>, UnwrapError>)> + use<'s, 'a> {
        let parts = split_authority(url).and_then(|(scheme, authority, rest)| {
            let (host, port) = split_host_port(authority, scheme)?;
            Some((scheme, host.strip_suffix('.').unwrap_or(host), port, rest))
        });
        self.0.iter().filter_map(move |w| {
            let (scheme, host, port, rest) = parts?;
            let matches = w.scheme.eq_ignore_ascii_case(scheme)
                && w.host.eq_ignore_ascii_case(host)
                && w.port == port
                && rest.starts_with(w.rest.as_str())
                && (w.param.is_none()
                    || matches!(rest.as_bytes().get(w.rest.len()), None | Some(b'?')));
            if !matches {
                return None;
            }
            let after = &rest[w.rest.len()..];
            let inner = match (&w.param, w.decoding) {
                (Some(param), _) => param_value(after, param),
                (None, InnerDecoding::Auto) => decode_if_encoded(after),
                (None, InnerDecoding::Percent) => percent_decoded(after),
                (None, InnerDecoding::Raw) => non_empty(after).map(Cow::Borrowed),
            };
            Some((w, inner))
        })
    }
}

fn non_empty(s: &str) -> Result<&str, UnwrapError> {
    if s.is_empty() {
        Err(UnwrapError::Empty)
    } else {
        Ok(s)
    }
}

fn percent_decoded(s: &str) -> Result<Cow<'_, str>, UnwrapError> {
    percent_decode_str(non_empty(s)?)
        .decode_utf8()
        .map_err(|_| UnwrapError::NotUtf8)
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
    percent_decoded(value)
}

/// The rest after a prefix, percent-decoded once only when the inner URL itself is encoded
/// (`http%3A…`, `%2F%2F…`), so a raw inner URL keeps its own `%XX` escapes.
fn decode_if_encoded(after: &str) -> Result<Cow<'_, str>, UnwrapError> {
    let head = non_empty(after)?.as_bytes();
    let starts =
        |p: &str| head.len() >= p.len() && head[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    if starts("http%3a") || starts("https%3a") || starts("%2f%2f") {
        percent_decoded(after)
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

    /// The first wrapper's reading of `u`.
    fn first<'a>(s: &WrapperSet, u: &'a str) -> Option<Result<Cow<'a, str>, UnwrapError>> {
        s.candidates(u).next().map(|(_, inner)| inner)
    }

    #[test]
    fn default_styles() {
        let s = set();
        let inner = |u: &str| {
            s.candidates(u)
                .find_map(|(_, r)| r.ok())
                .map(Cow::into_owned)
        };
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
        // corsproxy.io's documented form, and its bare form decoded once.
        assert_eq!(
            inner("https://corsproxy.io/?url=https%3A%2F%2Fa.example%2Fx.jpg%3Fw%3D1").as_deref(),
            Some("https://a.example/x.jpg?w=1")
        );
        assert_eq!(
            inner("https://corsproxy.io/?http://a.example/a.jpeg%3Fx%3D1%26y%3D2").as_deref(),
            Some("http://a.example/a.jpeg?x=1&y=2")
        );
    }

    #[test]
    fn every_matching_wrapper_is_offered_in_order() {
        let s = set();
        let offered: Vec<_> = s
            .candidates("https://corsproxy.io/?http://a.example/x.jpg")
            .map(|(w, inner)| (w.prefix.clone(), inner.map(Cow::into_owned)))
            .collect();
        assert_eq!(
            offered,
            [
                (
                    "https://corsproxy.io/".to_string(),
                    Err(UnwrapError::MissingParam)
                ),
                (
                    "https://corsproxy.io/?".to_string(),
                    Ok("http://a.example/x.jpg".to_string())
                ),
            ]
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
            assert!(first(&s, u).is_none(), "{u}");
        }
        assert_eq!(
            first(&s, "https://api.allorigins.win/raw?x=1").unwrap(),
            Err(UnwrapError::MissingParam)
        );
    }
}
