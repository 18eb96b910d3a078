//! `{prefix}/{sig}/{opts}/{src}`: verify, variant cache, source cache, fetch, transform, respond.

pub(crate) mod pool;

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use url::Url;

use crate::cache::{Cache, Lookup, Weigh};
use crate::fetch::Fetcher;
use crate::pipeline::{self, FormatSet, Job, Limits};
use crate::server::body::{empty, full, Body};
use crate::server::error::RouteError;
use crate::server::metrics::{CacheView, Metrics, StageLoad};
use crate::server::{respond, wire};
use crate::shared_cache::{Claim, Entry, SharedCache, SharedCacheSettings};
use crate::urls::{Format, Options, UrlSigner};
use pool::{Gate, WorkPool};

/// One encoded result, shared by the cache and every response that serves it.
#[derive(Debug)]
pub(crate) struct Variant {
    pub bytes: Bytes,
    pub mime: &'static str,
    pub etag: HeaderValue,
    /// The header fields of a `200` hit answering with this variant, each line ended, as the
    /// front writes them after its status and date lines (and before its closing empty line).
    pub hit_head: Bytes,
}

impl Weigh for Variant {
    fn weight(&self) -> u64 {
        (self.bytes.len() + self.hit_head.len()) as u64
    }
}

/// One image has one cache entry per signed path (source and options) and per set of formats
/// the client accepts. Keyed by the path as requested, so that a hit is found before, and
/// instead of, verifying the signature again: an entry exists only for a path that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VariantKey {
    path: String,
    formats: FormatSet,
}

/// A variant key's parts however they are held, so that a request's path is looked up as it
/// was read, without copying it into a key.
trait VariantKeyParts {
    fn parts(&self) -> (&str, FormatSet);
}

impl VariantKeyParts for VariantKey {
    fn parts(&self) -> (&str, FormatSet) {
        (&self.path, self.formats)
    }
}

impl VariantKeyParts for (&str, FormatSet) {
    fn parts(&self) -> (&str, FormatSet) {
        *self
    }
}

impl Hash for dyn VariantKeyParts + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn VariantKeyParts + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn VariantKeyParts + '_ {}

// Hashes exactly as its borrowed form, which the cache's lookups rely on.
impl Hash for VariantKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl<'a> Borrow<dyn VariantKeyParts + 'a> for VariantKey {
    fn borrow(&self) -> &(dyn VariantKeyParts + 'a) {
        self
    }
}

impl Weigh for VariantKey {
    fn weight(&self) -> u64 {
        self.path.weight()
    }
}

/// Settings a transform needs, owned so a job can move to a worker thread.
#[derive(Debug, Clone)]
pub struct TransformSettings {
    /// Output formats in the configured order (`image.formats`).
    pub preference: Arc<[Format]>,
    pub quality: u8,
    pub limits: Limits,
    pub allow_svg: bool,
}

impl TransformSettings {
    /// Everything here that shapes a variant's bytes, as text: instances whose settings differ
    /// never share variants.
    fn id(&self) -> String {
        format!(
            "{:?} q{} svg{} {:?}",
            self.preference, self.quality, self.allow_svg, self.limits
        )
    }
}

/// Byte budgets and lifetimes of the two memory caches.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub variant_bytes: u64,
    pub source_bytes: u64,
    pub max_entry_bytes: u64,
    /// How long a failure is remembered.
    pub negative_ttl: Duration,
}

/// `[image]`, `[cache]`, `[http]` and the fetch bounds of `[upstream]`, as the route takes them.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    pub transform: TransformSettings,
    /// Transforms run at once, and waiting for a worker.
    pub workers: usize,
    pub queue: usize,
    /// Fetches in flight at once, and waiting for a place.
    pub max_fetches: usize,
    pub fetch_queue: usize,
    pub cache: CacheSettings,
    pub cache_control: HeaderValue,
    /// The Redis tier behind the memory caches; `None`: memory only.
    pub shared: Option<SharedCacheSettings>,
}

pub(crate) struct ImageRoute {
    signer: UrlSigner,
    variants: Cache<VariantKey, Arc<Variant>, RouteError>,
    /// Shared with the work tasks, which outlive the request that started them.
    work: Arc<Work>,
}

/// What producing a variant needs: fetching (through the source cache) and transforming.
struct Work {
    fetcher: Fetcher,
    sources: Cache<String, Bytes, RouteError>,
    pool: WorkPool,
    fetches: Gate,
    /// Longest wait for a place among the fetches: the fetch's own bound, since waiting longer
    /// for a place is never useful.
    fetch_wait: Duration,
    settings: TransformSettings,
    cache_control: HeaderValue,
    metrics: Arc<Metrics>,
    shared: Option<SharedCache>,
}

impl ImageRoute {
    pub(crate) fn new(
        settings: &ImageSettings,
        fetcher: Fetcher,
        signer: UrlSigner,
        metrics: Arc<Metrics>,
    ) -> ImageRoute {
        let cache = settings.cache;
        let fetch_wait = fetcher.timeout();
        let shared = settings.shared.clone().map(|shared| {
            SharedCache::start(
                shared,
                signer.keys().clone(),
                &settings.transform.id(),
                settings.transform.allow_svg,
            )
        });
        ImageRoute {
            signer,
            variants: Cache::new(
                cache.variant_bytes,
                cache.max_entry_bytes,
                cache.negative_ttl,
            ),
            work: Arc::new(Work {
                fetcher,
                sources: Cache::new(
                    cache.source_bytes,
                    cache.max_entry_bytes,
                    cache.negative_ttl,
                ),
                pool: WorkPool::new(settings.workers, settings.queue),
                fetches: Gate::new(settings.max_fetches, settings.fetch_queue),
                fetch_wait,
                settings: settings.transform.clone(),
                cache_control: settings.cache_control.clone(),
                metrics,
                shared,
            }),
        }
    }

    /// The cached variant for `path` (the request path after the prefix and its slash) as a
    /// client with this `Accept` gets it, counted as a hit; allocates nothing. The exact path was
    /// verified when its entry was made; options that do not parse cannot be in the cache.
    pub(crate) fn cached(&self, path: &str, accept: Option<&[u8]>) -> Option<Arc<Variant>> {
        let options = crate::urls::unverified_options(path)?;
        let formats = self.negotiate(accept, &options);
        self.variants.hit(&(path, formats) as &dyn VariantKeyParts)
    }

    fn negotiate(&self, accept: Option<&[u8]>, options: &Options) -> FormatSet {
        pipeline::negotiate(
            accept.and_then(header_text),
            &self.work.settings.preference,
            options.format,
        )
    }

    /// Answers one request; `path` is the request path after the prefix and its slash.
    pub(crate) async fn respond(
        &self,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Response<Body>, RouteError> {
        respond::allow(method, respond::READ)?;
        let accept = headers.get(header::ACCEPT).map(HeaderValue::as_bytes);
        if let Some(variant) = self.cached(path, accept) {
            return Ok(self.variant_response(method, headers, &variant, Lookup::Hit));
        }
        let request = self.signer.verify_path(path)?;
        let key = VariantKey {
            path: path.to_owned(),
            formats: self.negotiate(accept, &request.options),
        };
        let formats = key.formats;
        let work = self.work.clone();
        let (result, lookup) = self
            .variants
            .get_or_compute(key, move || {
                work.render(request.source, request.options, formats)
            })
            .await;
        let variant = result?;
        Ok(self.variant_response(method, headers, &variant, lookup))
    }
}

/// A header value as text, as `HeaderValue::to_str` reads it: visible ASCII, spaces and tabs.
fn header_text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (32..127).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

impl Work {
    /// The variant from the shared tier, or made here and then offered to it.
    async fn render(
        self: Arc<Self>,
        source: Url,
        options: Options,
        accepted: FormatSet,
    ) -> Result<Arc<Variant>, RouteError> {
        let Some(shared) = &self.shared else {
            return self.make(source, options, accepted).await;
        };
        let slot = shared.variant_slot(&source, &options, accepted);
        let lease = match shared.claim(slot.clone()).await {
            Claim::Found(entry) => match self.shared_variant(entry) {
                Some(variant) => return Ok(variant),
                None => None,
            },
            Claim::Make(lease) => lease,
        };
        // On failure the lease is dropped, which releases it for the next instance to try.
        let variant = self.clone().make(source, options, accepted).await?;
        let etag = variant.etag.to_str().unwrap_or_default();
        match lease {
            Some(lease) => lease.publish(variant.mime, etag, variant.bytes.clone()),
            None => shared.keep_variant(slot, variant.mime, etag, variant.bytes.clone()),
        }
        Ok(variant)
    }

    async fn make(
        self: Arc<Self>,
        source: Url,
        options: Options,
        accepted: FormatSet,
    ) -> Result<Arc<Variant>, RouteError> {
        let bytes = self.source(&source).await?;
        let settings = self.settings.clone();
        let metrics = self.metrics.clone();
        let output = self
            .pool
            .run(move || {
                metrics.transforms.fetch_add(1, Ordering::Relaxed);
                let job = Job {
                    options: &options,
                    accepted,
                    preference: &settings.preference,
                    default_quality: settings.quality,
                    limits: settings.limits,
                    allow_svg: settings.allow_svg,
                };
                pipeline::transform(&bytes, &job).map_err(RouteError::Image)
            })
            .await??;
        let etag = strong_etag(&output.bytes);
        Ok(self.variant(output.bytes, output.mime, etag))
    }

    /// A variant another instance made, as the shared tier returned it.
    fn shared_variant(&self, entry: Entry) -> Option<Arc<Variant>> {
        let etag = HeaderValue::from_str(&entry.etag).ok()?;
        Some(self.variant(entry.body, entry.mime, etag))
    }

    /// A variant with its hit head written once, for every hit to come.
    fn variant(&self, bytes: Bytes, mime: &'static str, etag: HeaderValue) -> Arc<Variant> {
        let mut variant = Variant {
            bytes,
            mime,
            etag,
            hit_head: Bytes::new(),
        };
        let mut h = HeaderMap::new();
        variant_headers(
            &mut h,
            &variant,
            &self.cache_control,
            Lookup::Hit,
            StatusCode::OK,
        );
        let mut head = BytesMut::with_capacity(320);
        wire::fields(&mut head, &h);
        variant.hit_head = head.freeze();
        Arc::new(variant)
    }

    /// The upstream bytes of `url`, fetched once for every variant wanting them.
    async fn source(self: &Arc<Self>, url: &Url) -> Result<Bytes, RouteError> {
        let work = self.clone();
        let url = url.clone();
        let (result, _) = self
            .sources
            .get_or_compute(url.to_string(), move || async move {
                if let Some(shared) = &work.shared {
                    if let Some(bytes) = shared.source(&url).await {
                        return Ok(bytes);
                    }
                }
                // Bounds the memory upstream bodies take: max_fetches × upstream.max_bytes.
                let _place = tokio::time::timeout(work.fetch_wait, work.fetches.enter())
                    .await
                    .map_err(|_| RouteError::Busy)??;
                work.metrics
                    .upstream_fetches
                    .fetch_add(1, Ordering::Relaxed);
                let bytes = work.fetcher.fetch(&url).await.map_err(|e| {
                    work.metrics.upstream_error(e.kind());
                    tracing::debug!(url = %url, error = %crate::cause::chain(&e), "upstream fetch failed");
                    RouteError::Fetch(e)
                })?;
                if let Some(shared) = &work.shared {
                    shared.keep_source(&url, bytes.clone());
                }
                Ok(bytes)
            })
            .await;
        result
    }
}

impl ImageRoute {
    fn variant_response(
        &self,
        method: &Method,
        headers: &HeaderMap,
        variant: &Variant,
        lookup: Lookup,
    ) -> Response<Body> {
        let not_modified = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| etag_matches(v, &variant.etag));
        let (status, body) = if not_modified {
            (StatusCode::NOT_MODIFIED, empty())
        } else if method == Method::HEAD {
            (StatusCode::OK, empty())
        } else {
            (StatusCode::OK, full(variant.bytes.clone()))
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        variant_headers(
            response.headers_mut(),
            variant,
            &self.work.cache_control,
            lookup,
            status,
        );
        response
    }

    pub(crate) fn caches(&self) -> [CacheView<'_>; 2] {
        let sources = &self.work.sources;
        [
            CacheView {
                name: "variants",
                stats: self.variants.stats(),
                budget: self.variants.budget(),
                abandoned: self.variants.abandoned(),
            },
            CacheView {
                name: "sources",
                stats: sources.stats(),
                budget: sources.budget(),
                abandoned: sources.abandoned(),
            },
        ]
    }

    /// The shared tier, when one is configured.
    pub(crate) fn shared(&self) -> Option<&SharedCache> {
        self.work.shared.as_ref()
    }

    /// How full the transform pool and the fetch gate are.
    pub(crate) fn load(&self) -> (StageLoad, StageLoad) {
        (
            StageLoad {
                queued: self.work.pool.queued(),
                running: self.work.pool.running(),
            },
            StageLoad {
                queued: self.work.fetches.queued(),
                running: self.work.fetches.running(),
            },
        )
    }
}

/// The header fields of an answer with `variant`: the one description of them, which both the
/// answers built per request and the hit heads written once follow.
fn variant_headers(
    h: &mut HeaderMap,
    variant: &Variant,
    cache_control: &HeaderValue,
    lookup: Lookup,
    status: StatusCode,
) {
    h.insert(header::ETAG, variant.etag.clone());
    h.insert(header::CACHE_CONTROL, cache_control.clone());
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    respond::inert(h);
    h.insert(
        respond::X_CACHE,
        HeaderValue::from_static(if lookup == Lookup::Hit { "HIT" } else { "MISS" }),
    );
    if status == StatusCode::OK {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(variant.mime));
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(variant.bytes.len()),
        );
    }
}

/// A strong validator derived from the bytes, so equal bytes share an ETag across restarts.
fn strong_etag(bytes: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(bytes);
    let tag = format!("\"{}\"", hex::encode(&digest[..16]));
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// `If-None-Match` uses weak comparison (RFC 9110 §13.1.2): `W/` prefixes are ignored.
fn etag_matches(if_none_match: &str, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_strong_and_compare_weakly() {
        let tag = strong_etag(b"abc");
        let s = tag.to_str().unwrap();
        assert!(s.starts_with('"') && s.ends_with('"') && !s.starts_with("W/"));
        assert_eq!(tag, strong_etag(b"abc"));
        assert_ne!(tag, strong_etag(b"abd"));
        assert!(etag_matches(s, &tag));
        assert!(etag_matches(&format!("\"x\", W/{s}"), &tag));
        assert!(etag_matches("*", &tag));
        assert!(!etag_matches("\"x\"", &tag));
    }
}
