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

    /// Appends `proxied` to `out`, made absolute where the markup needs one (`og:image` …).
    pub fn absolute(&self, out: &mut String, proxied: &str) {
        if let Some(base) = &self.absolute_base {
            out.push_str(base);
        }
        out.push_str(proxied);
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

/// An upstream remembered by the [`Memo`]; valid until [`Memo::settle`] starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct UpstreamId(u32);

/// A proxied URL remembered by the [`Memo`]; valid until [`Memo::settle`] starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxiedId(u32);

/// The memoised judgement of one raw URL with one set of options. Rewrites are handles into
/// the memo rather than shared strings: a hit then costs no reference counting, which on a
/// page of thousands of images is a measurable share of the rewrite.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Rewrite {
        upstream: UpstreamId,
        proxied: ProxiedId,
    },
    Keep(&'static str),
    Skip(Arc<str>),
}

/// A remembered judgement of a raw URL (kept URLs are cheap to judge again, so they are
/// not remembered and cannot crowd out the images).
#[derive(Debug, Clone)]
enum Judged {
    Rewrite(UpstreamId),
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
    /// One entry per distinct upstream text, so that raw values naming the same image
    /// (several wrappers, escapes) share their signatures.
    upstreams: Vec<Url>,
    upstream_ids: Table<UpstreamId>,
    signed: Table<(UpstreamId, Options, ProxiedId)>,
    proxied: Vec<Box<str>>,
    /// Approximate heap bytes held.
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
/// Per-entry overhead beyond the strings (table slot, `Url` indices).
const ENTRY_OVERHEAD: usize = 96;

impl Memo {
    /// Starts over when the budget is spent. Called between elements (and front-matter
    /// values), never inside one, so the handles one element holds stay valid while it is
    /// edited; the budget is exceeded by at most one element's URLs.
    pub(crate) fn settle(&mut self) {
        if self.bytes > MEMO_BYTES {
            self.judged.clear();
            self.upstreams.clear();
            self.upstream_ids.clear();
            self.signed.clear();
            self.proxied.clear();
            self.bytes = 0;
        }
    }

    pub(crate) fn resolve(
        &mut self,
        ctx: &RewriteContext,
        raw: &str,
        markup: Markup,
        options: Options,
    ) -> Outcome {
        let upstream = match self.judge(ctx, raw, markup) {
            Ok(Judged::Rewrite(upstream)) => upstream,
            Ok(Judged::Skip(reason)) => return Outcome::Skip(reason),
            Err(reason) => return Outcome::Keep(reason),
        };
        let proxied = self.sign(ctx, upstream, options);
        Outcome::Rewrite { upstream, proxied }
    }

    /// The upstream of `raw` when it is to be rewritten, for signing it again at other
    /// sizes with [`Memo::sign`] without judging it again.
    pub(crate) fn upstream(
        &mut self,
        ctx: &RewriteContext,
        raw: &str,
        markup: Markup,
    ) -> Option<UpstreamId> {
        match self.judge(ctx, raw, markup) {
            Ok(Judged::Rewrite(upstream)) => Some(upstream),
            _ => None,
        }
    }

    /// The upstream URL's text.
    pub(crate) fn upstream_text(&self, id: UpstreamId) -> &str {
        self.upstreams
            .get(id.0 as usize)
            .map_or("", |url| url.as_str())
    }

    /// A proxied URL's text.
    pub(crate) fn proxied(&self, id: ProxiedId) -> &str {
        self.proxied.get(id.0 as usize).map_or("", |p| p)
    }

    /// The proxied URL of `upstream` with `options`.
    pub(crate) fn sign(
        &mut self,
        ctx: &RewriteContext,
        upstream: UpstreamId,
        options: Options,
    ) -> ProxiedId {
        let key = self.hasher.hash_one((upstream, options));
        if let Some((u, o, proxied)) = self.signed.get(&key) {
            if *u == upstream && *o == options {
                return *proxied;
            }
        }
        let text = match self.upstreams.get(upstream.0 as usize) {
            Some(url) => ctx.signer.url_for(url, &options),
            None => String::new(),
        };
        self.bytes += ENTRY_OVERHEAD + text.len();
        let id = ProxiedId(self.proxied.len() as u32);
        self.proxied.push(text.into_boxed_str());
        self.signed.insert(key, (upstream, options, id));
        id
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
            Decision::Rewrite(url) => Judged::Rewrite(self.intern(url)),
            Decision::Skip(reason) => Judged::Skip(reason.into()),
            Decision::Keep(reason) => return Err(reason),
        };
        self.bytes += ENTRY_OVERHEAD
            + raw.len()
            + match &judged {
                Judged::Rewrite(_) => 0,
                Judged::Skip(reason) => reason.len(),
            };
        self.judged
            .insert(key, (raw.into(), markup, judged.clone()));
        Ok(judged)
    }

    /// The id of the upstream equal to `url`, remembering it when it is new.
    fn intern(&mut self, url: Url) -> UpstreamId {
        let key = self.hasher.hash_one(url.as_str());
        if let Some(&id) = self.upstream_ids.get(&key) {
            if self.upstream_text(id) == url.as_str() {
                return id;
            }
        }
        self.bytes += ENTRY_OVERHEAD + url.as_str().len();
        let id = UpstreamId(self.upstreams.len() as u32);
        self.upstreams.push(url);
        self.upstream_ids.insert(key, id);
        id
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
        assert_eq!(a, b);
        assert_eq!(memo.proxied.len(), 1);
        let other = proxied(
            &mut memo,
            "https://cors.zfour.workers.dev/?http://a.example/y.jpg",
        );
        assert_ne!(memo.proxied(a), memo.proxied(other));
        let upstream = memo
            .upstream(
                &ctx,
                "https://cors.zfour.workers.dev/?http://a.example/y.jpg",
                Markup::Html,
            )
            .unwrap();
        assert_eq!(memo.upstream_text(upstream), "http://a.example/y.jpg");
        assert_eq!(memo.sign(&ctx, upstream, options), other);
        let wider = memo.sign(&ctx, upstream, Options::sized(1280, 0));
        assert_ne!(memo.proxied(wider), memo.proxied(other));
    }

    #[test]
    fn the_memo_starts_over_only_between_elements() {
        let ctx = ctx();
        let mut memo = Memo::default();
        for i in 0..20_000 {
            let raw = format!("https://cors.zfour.workers.dev/?http://a.example/{i}.jpg");
            let Outcome::Rewrite { upstream, proxied } =
                memo.resolve(&ctx, &raw, Markup::Html, Options::sized(640, 0))
            else {
                panic!("not rewritten");
            };
            // Within one element the handles stay valid however full the memo is.
            assert_eq!(
                memo.upstream_text(upstream),
                format!("http://a.example/{i}.jpg")
            );
            assert!(memo.proxied(proxied).starts_with("/img/"));
            memo.settle();
            assert!(memo.bytes <= MEMO_BYTES);
        }
        assert!(memo.upstreams.len() < 20_000, "the memo never started over");
    }
}
