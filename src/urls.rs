//! The proxy URL contract: `{public_prefix}/{signature}/{options}/{source}`.
//!
//! `source` is the base64url (no padding) upstream URL; `options` has exactly one canonical spelling
//! per option set, so one image has one URL and one cache entry; `signature` covers
//! `{options}/{source}`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use url::Url;

use crate::signing::KeyRing;

pub use crate::pipeline::{Format, Options, OptionsError, MAX_DIMENSION};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("malformed proxy URL: {0}")]
    Malformed(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("bad source URL: {0}")]
    BadSource(String),
    #[error("bad source URL: not absolute (http:// or https://)")]
    RelativeSource,
}

/// Parses and checks an upstream URL: absolute http(s) with a host and no credentials.
pub fn parse_source(s: &str) -> Result<Url, UrlError> {
    let url = Url::parse(s).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => UrlError::RelativeSource,
        e => UrlError::BadSource(e.to_string()),
    })?;
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

    pub(crate) fn keys(&self) -> &KeyRing {
        &self.keys
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
        let (signature, payload, options, source) = segments(path)?;
        if !self.keys.verify(payload, signature) {
            return Err(UrlError::BadSignature);
        }
        let options = Options::parse(options)?;
        let text = decode_text(source).map_err(|e| UrlError::BadSource(e.into()))?;
        let source = parse_source(&text)?;
        Ok(ProxyRequest { options, source })
    }
}

/// A proxy path's signature, signed payload, options and source segments, checked for shape.
fn segments(path: &str) -> Result<(&str, &str, &str, &str), UrlError> {
    let malformed = UrlError::Malformed("expected /{signature}/{options}/{source}");
    let (signature, payload) = path.split_once('/').ok_or(malformed.clone())?;
    let (options, source) = payload.split_once('/').ok_or(malformed.clone())?;
    if signature.is_empty() || options.is_empty() || source.is_empty() || source.contains('/') {
        return Err(malformed);
    }
    Ok((signature, payload, options, source))
}

/// The options of a proxy path, not verified: enough to look up a path that was verified when
/// it was cached, and nothing else may rely on them.
pub(crate) fn unverified_options(path: &str) -> Option<Options> {
    let (_, _, options, _) = segments(path).ok()?;
    Options::parse(options).ok()
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
                matches!(Options::parse(s), Err(OptionsError::NonCanonical { .. })),
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
