//! The proxy URL contract: `{public_prefix}/{signature}/{options}/{source}`.
//!
//! `source` is the base64url (no padding) upstream URL; `options` has exactly one canonical spelling
//! per option set, so one image has one URL and one cache entry; `signature` covers
//! `{options}/{source}`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::StatusCode;
use url::Url;

use crate::signing::KeyRing;

/// Largest width or height an options string may name.
pub const MAX_DIMENSION: u32 = 65535;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("malformed proxy URL: {0}")]
    Malformed(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error("bad options {options:?}: {reason}")]
    BadOptions { options: String, reason: String },
    #[error("options are not in canonical form; the canonical spelling is {canonical:?}")]
    NonCanonical { canonical: String },
    #[error("bad source URL: {0}")]
    BadSource(String),
}

impl UrlError {
    pub fn status(&self) -> StatusCode {
        match self {
            UrlError::BadSignature => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
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
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown format {s:?} (jpeg, png, webp, avif)"))
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
    pub fn parse(s: &str) -> Result<Options, UrlError> {
        let bad = |reason: &str| UrlError::BadOptions {
            options: s.chars().take(64).collect(),
            reason: reason.to_string(),
        };
        let mut parts = s.split(',');
        let size = parts.next().unwrap_or_default();
        let (w, h) = size.split_once('x').ok_or_else(|| bad("expected WxH"))?;
        let dim = |v: &str| -> Result<u32, UrlError> {
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
            let number = |prefix: &str, lo: u32, hi: u32| -> Option<Result<u32, UrlError>> {
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
            } else if let Ok(format) = flag.parse::<Format>() {
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
        let canonical = opts.to_string();
        if canonical != s {
            return Err(UrlError::NonCanonical { canonical });
        }
        Ok(opts)
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

/// Parses and checks an upstream URL: absolute http(s) with a host and no credentials.
pub fn parse_source(s: &str) -> Result<Url, UrlError> {
    let url = Url::parse(s).map_err(|e| UrlError::BadSource(e.to_string()))?;
    check_source(&url)?;
    Ok(url)
}

fn check_source(url: &Url) -> Result<(), UrlError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::BadSource(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::BadSource("no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::BadSource("credentials are not allowed".into()));
    }
    Ok(())
}

/// A verified request for one variant of one upstream image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    pub options: Options,
    pub source: Url,
}

/// Builds and verifies proxy URLs with a key ring and the public prefix.
#[derive(Debug, Clone)]
pub struct UrlSigner {
    keys: KeyRing,
    prefix: String,
}

impl UrlSigner {
    /// `prefix` is `server.public_prefix` (a path or an absolute URL, no trailing slash).
    pub fn new(keys: KeyRing, prefix: &str) -> UrlSigner {
        UrlSigner {
            keys,
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The public proxied URL for `source` with `options`.
    pub fn url_for(&self, source: &Url, options: &Options) -> String {
        let path = self.sign_path(source, options);
        let mut out = String::with_capacity(self.prefix.len() + 1 + path.len());
        out.push_str(&self.prefix);
        out.push('/');
        out.push_str(&path);
        out
    }

    /// `{signature}/{options}/{source}`: the part after the prefix.
    pub fn sign_path(&self, source: &Url, options: &Options) -> String {
        let payload = format!("{options}/{}", URL_SAFE_NO_PAD.encode(source.as_str()));
        let signature = self.keys.sign(&payload);
        format!("{signature}/{payload}")
    }

    /// Verifies `{signature}/{options}/{source}` (the request path after the prefix and its
    /// slash). The signature is checked before anything is decoded.
    pub fn verify_path(&self, path: &str) -> Result<ProxyRequest, UrlError> {
        let malformed = UrlError::Malformed("expected /{signature}/{options}/{source}");
        let (signature, payload) = path.split_once('/').ok_or(malformed.clone())?;
        let (options, source) = payload.split_once('/').ok_or(malformed.clone())?;
        if signature.is_empty() || options.is_empty() || source.is_empty() || source.contains('/') {
            return Err(malformed);
        }
        if !self.keys.verify(payload, signature) {
            return Err(UrlError::BadSignature);
        }
        let options = Options::parse(options)?;
        let text = decode_text(source).map_err(|e| UrlError::BadSource(e.into()))?;
        let source = parse_source(&text)?;
        Ok(ProxyRequest { options, source })
    }
}

/// Decodes the source URL of a proxy URL without verifying it (reports and tests).
pub fn decode_source(proxy_url: &str) -> Option<String> {
    decode_text(proxy_url.rsplit('/').next()?).ok()
}

/// The text a source segment encodes.
fn decode_text(segment: &str) -> Result<String, &'static str> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| "source is not base64url without padding")?;
    String::from_utf8(bytes).map_err(|_| "source is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Key;

    fn signer() -> UrlSigner {
        let key = Key::from_hex(&"11".repeat(32)).unwrap();
        UrlSigner::new(KeyRing::new(key, vec![]), "/img")
    }

    #[test]
    fn options_round_trip_canonically() {
        for s in [
            "0x0",
            "640x0",
            "320x211",
            "640x480,q75",
            "640x480,cover",
            "640x480,q1,cover,webp,dpr2",
            "0x100,png",
        ] {
            assert_eq!(Options::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn non_canonical_and_bad_options_are_rejected() {
        for s in [
            "0640x0",
            "640x480,cover,q75",
            "640x480,dpr1",
            "640x480,webp,cover",
        ] {
            assert!(
                matches!(Options::parse(s), Err(UrlError::NonCanonical { .. })),
                "{s}"
            );
        }
        for s in [
            "",
            "640",
            "x480",
            "640x",
            "99999x1",
            "640x480,q0",
            "640x480,q101",
            "640x480,gif",
            "640x480,cover,cover",
            "640x480,jpeg,png",
            "640x480,dpr5",
            "640x480,",
            "-1x2",
            "640x480,q",
            "+640x480",
            "640X480",
        ] {
            assert!(Options::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn signed_url_verifies_and_tampering_fails() {
        let s = signer();
        let src = parse_source("http://static.1sapp.com/a/b.jpeg?x=1&y=2").unwrap();
        let url = s.url_for(&src, &Options::sized(640, 422));
        let path = url.strip_prefix("/img/").unwrap();
        let req = s.verify_path(path).unwrap();
        assert_eq!(req.source, src);
        assert_eq!(req.options, Options::sized(640, 422));
        assert_eq!(decode_source(&url).unwrap(), src.as_str());

        let tampered = path.replacen("640x422", "641x422", 1);
        assert_eq!(s.verify_path(&tampered), Err(UrlError::BadSignature));
        let other = signer_with(0x22);
        assert_eq!(other.verify_path(path), Err(UrlError::BadSignature));
        assert!(matches!(s.verify_path("abc"), Err(UrlError::Malformed(_))));
    }

    fn signer_with(byte: u8) -> UrlSigner {
        let key = Key::from_hex(&format!("{byte:02x}").repeat(32)).unwrap();
        UrlSigner::new(KeyRing::new(key, vec![]), "/img")
    }

    #[test]
    fn sources_must_be_http_without_credentials() {
        assert!(parse_source("ftp://x/y").is_err());
        assert!(parse_source("http://u:p@x/y").is_err());
        assert!(parse_source("file:///etc/passwd").is_err());
        assert!(parse_source("/relative").is_err());
        assert!(parse_source("https://x.example/y.jpg").is_ok());
    }
}
