//! Everything a document rewrite needs that is fixed for the process: signer, policy, hosts.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use foldhash::fast::RandomState;
use std::sync::Arc;

use url::Url;

use super::wrappers::WrapperSet;
use crate::hosts::HostSet;
use crate::signing::KeyRing;
use crate::urls::{parse_source, Options, UrlError, UrlSigner};

/// What to do with one URL found in a rewritable place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Rewrite(Url),
    Keep(&'static str),
    Skip(String),
}

/// How references are rewritten (`[rewrite]` beyond the URL matching).
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_width: u32,
    /// Strictly increasing, each at least 1.
    pub srcset_widths: Vec<u32>,
    pub img: ImgAdditions,
    /// Front-matter keys whose values are image URLs.
    pub front_matter_keys: Vec<String>,
    /// What one document may hold in memory before it is passed through unchanged.
    pub max_memory_kb: usize,
}

/// What a rewritten `<img>` gains besides its URLs, where it does not say already.
#[derive(Debug, Clone, Copy)]
pub struct ImgAdditions {
    /// `width`/`height` from the size hint, so the layout does not shift.
    pub dimensions: bool,
    /// `loading="lazy"` and `decoding="async"` on all but the first image.
    pub lazy: bool,
    /// `fetchpriority="high"` on the first image of a document.
    pub fetchpriority: bool,
    /// `data-canonical-url` with the original URL.
    pub canonical_attr: bool,
}

/// `[rewrite]` and the public prefix, parsed once by the config.
#[derive(Debug, Clone)]
pub struct RewriteSettings {
    pub wrappers: WrapperSet,
    pub direct_hosts: HostSet,
    /// Where proxied URLs point (`server.public_prefix`).
    pub public_prefix: String,
    /// Prepended to proxied URLs where an absolute URL is required (`og:image`): set when
    /// `public_prefix` is a path and `public_base_url` is configured.
    pub absolute_base: Option<String>,
    pub policy: Policy,
}

/// Built once from [`RewriteSettings`] and the [`KeyRing`]; shared by every document rewrite.
#[derive(Debug)]
pub struct RewriteContext {
    signer: UrlSigner,
    policy: Policy,
    wrappers: WrapperSet,
    direct_hosts: HostSet,
    absolute_base: Option<String>,
}

impl RewriteContext {
    pub fn new(settings: RewriteSettings, keys: KeyRing) -> Arc<RewriteContext> {
        Arc::new(RewriteContext {
            signer: UrlSigner::new(keys, &settings.public_prefix),
            policy: settings.policy,
            wrappers: settings.wrappers,
            direct_hosts: settings.direct_hosts,
            absolute_base: settings.absolute_base,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// Decides about one URL after markup decoding (entities, YAML quoting).
    pub fn decide(&self, value: &str) -> Decision {
        let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
        if let Some(unwrapped) = self.unwrap(value) {
            return match unwrapped {
                Ok(url) => Decision::Rewrite(url),
                Err(reason) => Decision::Skip(reason),
            };
        }
        if value.is_empty() {
            return Decision::Keep("empty URL");
        }
        if starts_with_ignore_case(value, "data:") {
            return Decision::Keep("data: URL");
        }
        let absolute = value.starts_with("//")
            || value.find(':').is_some_and(|i| {
                i > 0
                    && value[..i]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            });
        if !absolute {
            return Decision::Keep("relative URL");
        }
        if !self.direct_hosts.is_empty() {
            if let Ok(url) = upstream(value) {
                if url.host_str().is_some_and(|h| self.direct_hosts.matches(h)) {
                    return Decision::Rewrite(url);
                }
            }
        }
        Decision::Keep("not wrapped")
    }

    /// The upstream a wrapped URL points at, through nested wrappers to the end; `None` when
    /// `value` is not wrapped.
    fn unwrap(&self, value: &str) -> Option<Result<Url, String>> {
        let mut url = self.unwrap_once(value)?;
        // Deeper than any real chain: what is left is proxied as it stands.
        for _ in 0..MAX_NESTED_WRAPPERS {
            let inner = match &url {
                Ok(outer) => self.unwrap_once(outer.as_str()),
                Err(_) => None,
            };
            match inner {
                Some(inner) => url = inner,
                None => break,
            }
        }
        Some(url)
    }

    /// The first usable inner URL among the wrappers `value` matches, else the first reason.
    fn unwrap_once(&self, value: &str) -> Option<Result<Url, String>> {
        let mut first_reason = None;
        for (wrapper, inner) in self.wrappers.candidates(value) {
            match inner
                .map_err(|e| e.reason(wrapper))
                .and_then(|i| upstream(&i))
            {
                Ok(url) => return Some(Ok(url)),
                Err(reason) => {
                    first_reason.get_or_insert(reason);
                }
            }
        }
        first_reason.map(Err)
    }

    /// The upstream for a URL given on its own (`imgrelay sign`): wrapped URLs are unwrapped,
    /// anything else must itself be an absolute http(s) URL.
    pub fn upstream_of(&self, value: &str) -> Result<Url, String> {
        match self.decide(value) {
            Decision::Rewrite(url) => Ok(url),
            Decision::Skip(reason) => Err(reason),
            Decision::Keep(_) => upstream(value),
        }
    }

    /// Makes a proxied URL absolute where the markup needs one (`og:image` …).
    pub fn absolute(&self, proxied: String) -> String {
        match &self.absolute_base {
            Some(base) => format!("{base}{proxied}"),
            None => proxied,
        }
    }

    /// Options for a reference without a usable size hint.
    pub fn unsized_options(&self) -> Options {
        Options::sized(self.policy.max_width, 0)
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Wrappers inside wrappers followed at most.
const MAX_NESTED_WRAPPERS: usize = 4;

/// The absolute upstream URL for an inner URL; protocol-relative URLs get `https:`.
fn upstream(inner: &str) -> Result<Url, String> {
    let inner = inner.trim_matches(|c: char| c.is_ascii_whitespace());
    let parsed = if inner.starts_with("//") {
        parse_source(&format!("https:{inner}"))
    } else {
        parse_source(inner)
    };
    parsed.map_err(|e| {
        let shown: String = inner.chars().take(80).collect();
        match e {
            UrlError::RelativeSource => format!(
                "the wrapped URL {shown:?} is not absolute; only http:// and https:// images \
                 can be proxied"
            ),
            e => format!("the wrapped URL {shown:?} cannot be proxied: {e}"),
        }
    })
}

/// How a memoised value was written: the same text means different URLs in HTML (entities)
/// and in already-decoded text (front matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Markup {
    Html,
    Decoded,
}

/// The memoised judgement of one raw URL with one set of options.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Rewrite {
        upstream: Arc<str>,
        proxied: Arc<str>,
    },
    Keep(&'static str),
    Skip(Arc<str>),
}

/// A remembered judgement of a raw URL (kept URLs are cheap to judge again, so they are
/// not remembered and cannot crowd out the images).
#[derive(Debug, Clone)]
enum Judged {
    /// The parsed URL is shared, so a hit costs reference counts rather than a copy.
    Rewrite {
        url: Arc<Url>,
        upstream: Arc<str>,
    },
    Skip(Arc<str>),
}

/// Judges and signs URLs for one document, remembering recent results in two levels: raw
/// value → upstream (saves decoding and URL parsing), and upstream + options → proxied URL
/// (saves the HMAC). A page repeating its images, or one image under several wrappers and
/// sizes, then costs hash lookups.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    hasher: RandomState,
    judged: Table<(Box<str>, Markup, Judged)>,
    /// One shared upstream per distinct upstream text, so that `signed` can key on the
    /// upstream's address: raw values naming the same image (several wrappers, escapes)
    /// share their signatures. Every entry of `signed` holds its upstream, so an address
    /// cannot be reused while it is a key.
    upstreams: Table<(Arc<Url>, Arc<str>)>,
    signed: Table<(Arc<str>, Options, Arc<str>)>,
    /// Approximate heap bytes held by the maps.
    bytes: usize,
}

/// A map keyed by a hash already computed with the memo's hasher.
type Table<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

/// Passes a precomputed `u64` key through: hashing a hash again would only cost time.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Heap bytes the memo may hold per document; beyond it the memo starts over. Archive pages
/// repeat a few thousand thumbnails, which this covers.
const MEMO_BYTES: usize = 2 << 20;
/// Per-entry overhead beyond the strings (table slot, Arc headers, `Url` indices).
const ENTRY_OVERHEAD: usize = 96;

impl Memo {
    pub(crate) fn resolve(
        &mut self,
        ctx: &RewriteContext,
        raw: &str,
        markup: Markup,
        options: Options,
    ) -> Outcome {
        let (url, upstream) = match self.judge(ctx, raw, markup) {
            Ok(Judged::Rewrite { url, upstream }) => (url, upstream),
            Ok(Judged::Skip(reason)) => return Outcome::Skip(reason),
            Err(reason) => return Outcome::Keep(reason),
        };
        let proxied = self.sign(ctx, &url, &upstream, options);
        Outcome::Rewrite { upstream, proxied }
    }

    /// The upstream of `raw` when it is to be rewritten, for signing it again at other
    /// sizes with [`Memo::sign`] without judging it again.
    pub(crate) fn upstream(
        &mut self,
        ctx: &RewriteContext,
        raw: &str,
        markup: Markup,
    ) -> Option<(Arc<Url>, Arc<str>)> {
        match self.judge(ctx, raw, markup) {
            Ok(Judged::Rewrite { url, upstream }) => Some((url, upstream)),
            _ => None,
        }
    }

    /// The proxied URL of `url` (whose text is `upstream`) with `options`.
    pub(crate) fn sign(
        &mut self,
        ctx: &RewriteContext,
        url: &Url,
        upstream: &Arc<str>,
        options: Options,
    ) -> Arc<str> {
        let key = self
            .hasher
            .hash_one((Arc::as_ptr(upstream).cast::<u8>() as usize, options));
        if let Some((u, o, proxied)) = self.signed.get(&key) {
            if Arc::ptr_eq(u, upstream) && *o == options {
                return proxied.clone();
            }
        }
        let proxied: Arc<str> = ctx.signer.url_for(url, &options).into();
        self.reserve(ENTRY_OVERHEAD + proxied.len());
        self.signed
            .insert(key, (upstream.clone(), options, proxied.clone()));
        proxied
    }

    /// The judgement of `raw`; `Err` carries the reason a URL is kept.
    fn judge(
        &mut self,
        ctx: &RewriteContext,
        raw: &str,
        markup: Markup,
    ) -> Result<Judged, &'static str> {
        let key = self.hasher.hash_one((raw, markup));
        if let Some((r, m, judged)) = self.judged.get(&key) {
            if &**r == raw && *m == markup {
                return Ok(judged.clone());
            }
        }
        let decoded = match markup {
            Markup::Html => super::entities::decode(raw),
            Markup::Decoded => std::borrow::Cow::Borrowed(raw),
        };
        let judged = match ctx.decide(&decoded) {
            Decision::Rewrite(url) => Judged::Rewrite {
                upstream: url.as_str().into(),
                url: Arc::new(url),
            },
            Decision::Skip(reason) => Judged::Skip(reason.into()),
            Decision::Keep(reason) => return Err(reason),
        };
        let size = ENTRY_OVERHEAD
            + raw.len()
            + match &judged {
                Judged::Rewrite { upstream, .. } => 2 * upstream.len(),
                Judged::Skip(reason) => reason.len(),
            };
        self.reserve(size);
        let judged = match judged {
            Judged::Rewrite { url, upstream } => {
                let (url, upstream) = self.intern(url, upstream);
                Judged::Rewrite { url, upstream }
            }
            skip => skip,
        };
        self.judged
            .insert(key, (raw.into(), markup, judged.clone()));
        Ok(judged)
    }

    /// The shared copy of an upstream equal to `upstream`, or `upstream` itself.
    fn intern(&mut self, url: Arc<Url>, upstream: Arc<str>) -> (Arc<Url>, Arc<str>) {
        let key = self.hasher.hash_one(&*upstream);
        match self.upstreams.get(&key) {
            Some((u, text)) if *text == upstream => (u.clone(), text.clone()),
            _ => {
                self.upstreams.insert(key, (url.clone(), upstream.clone()));
                (url, upstream)
            }
        }
    }

    /// Makes room for `size` more bytes, starting over when the budget is spent.
    fn reserve(&mut self, size: usize) {
        if self.bytes + size > MEMO_BYTES {
            self.judged.clear();
            self.upstreams.clear();
            self.signed.clear();
            self.bytes = 0;
        }
        self.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Arc<RewriteContext> {
        crate::internals::rewrite_context(&"07".repeat(32), "/img", 1024)
    }

    #[test]
    fn one_image_under_two_wrappers_is_signed_once() {
        let ctx = ctx();
        let mut memo = Memo::default();
        let options = Options::sized(640, 0);
        let proxied =
            |memo: &mut Memo, raw: &str| match memo.resolve(&ctx, raw, Markup::Html, options) {
                Outcome::Rewrite { proxied, .. } => proxied,
                other => panic!("{other:?}"),
            };
        let a = proxied(
            &mut memo,
            "https://cors.zfour.workers.dev/?http://a.example/x.jpg?w=1&amp;h=2",
        );
        let b = proxied(
            &mut memo,
            "https://corsproxy.io/?http%3A%2F%2Fa.example%2Fx.jpg%3Fw%3D1%26h%3D2",
        );
        assert!(Arc::ptr_eq(&a, &b));
        let other = proxied(
            &mut memo,
            "https://cors.zfour.workers.dev/?http://a.example/y.jpg",
        );
        assert_ne!(a, other);
        let (url, upstream) = memo
            .upstream(
                &ctx,
                "https://cors.zfour.workers.dev/?http://a.example/y.jpg",
                Markup::Html,
            )
            .unwrap();
        assert!(Arc::ptr_eq(
            &memo.sign(&ctx, &url, &upstream, options),
            &other
        ));
        let wider = memo.sign(&ctx, &url, &upstream, Options::sized(1280, 0));
        assert_ne!(wider, other);
    }
}
