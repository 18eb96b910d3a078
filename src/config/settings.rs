//! The config parsed once into the typed settings each service takes as it is: addresses,
//! durations, header values, host sets, formats, the origin URI. Every unusable key is
//! collected before failing, so one look at the error fixes the whole file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::Uri;
use rustls::pki_types::CertificateDer;

use super::{
    Config, ConfigError, ImageConfig, RewriteConfig, ServerConfig, SharedCacheConfig,
    UpstreamConfig,
};
use crate::fetch::FetchSettings;
use crate::hosts::HostSet;
use crate::pipeline::{Format, Limits};
use crate::rewrite::wrappers::{InnerDecoding, Wrapper, WrapperSet};
use crate::rewrite::{ImgAdditions, Policy, RewriteSettings};
use crate::secret_file;
use crate::server::client_body::BodyPace;
use crate::server::connections::ConnLimits;
use crate::server::image::{CacheSettings, ImageSettings, TransformSettings};
use crate::server::page::OriginSettings;
use crate::server::ServeSettings;
use crate::shared_cache::{SharedCacheSettings, Target};
use crate::signing::KeyFiles;

const MB: u64 = 1024 * 1024;

/// One key whose value cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadKey {
    pub key: String,
    pub message: String,
}

impl BadKey {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> BadKey {
        BadKey {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for BadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key {}: {}", self.key, self.message)
    }
}

/// The lines of [`ConfigError::Invalid`].
pub(super) fn lines(bad: &[BadKey]) -> String {
    bad.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything the commands run with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub serve: ServeSettings,
    pub rewrite: RewriteSettings,
    pub keys: KeyFiles,
    pub log: LogSettings,
    /// Worth telling the operator once logging is up (a token file others may read).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub json: bool,
    /// A `tracing` filter; `RUST_LOG` wins when set.
    pub level: String,
}

/// The problems found so far; each parse step records its own and goes on.
#[derive(Default)]
struct Problems(Vec<BadKey>);

impl Problems {
    fn fail(&mut self, key: impl Into<String>, message: impl fmt::Display) {
        self.0.push(BadKey::new(key, message.to_string()));
    }

    fn take<T, E: fmt::Display>(&mut self, key: &str, parsed: Result<T, E>) -> Option<T> {
        parsed.map_err(|e| self.fail(key, e)).ok()
    }

    /// `value`, which must be at least 1.
    fn positive<T: Copy + PartialEq + Default>(&mut self, key: &str, value: T) -> Option<T> {
        if value == T::default() {
            self.fail(key, "must be greater than 0");
            None
        } else {
            Some(value)
        }
    }

    /// Every `(key, value)` greater than 0, or `None` once each one that is not is recorded.
    fn all_positive<const N: usize>(&mut self, values: [(&str, u64); N]) -> Option<[u64; N]> {
        let checked = values.map(|(key, value)| self.positive(key, value));
        checked
            .iter()
            .all(Option::is_some)
            .then(|| checked.map(Option::unwrap_or_default))
    }

    fn secs(&mut self, key: &str, value: u64) -> Option<Duration> {
        self.positive(key, value).map(Duration::from_secs)
    }

    fn millis(&mut self, key: &str, value: u64) -> Option<Duration> {
        self.positive(key, value).map(Duration::from_millis)
    }

    fn header(&mut self, key: &str, value: &str) -> Option<HeaderValue> {
        match HeaderValue::from_str(value) {
            Ok(v) if !value.is_empty() => Some(v),
            _ => {
                self.fail(key, "must be a valid header value");
                None
            }
        }
    }

    fn url(&mut self, key: &str, value: &str) -> Option<url::Url> {
        self.take(
            key,
            url::Url::parse(value).map_err(|e| format!("not a URL: {e}")),
        )
    }

    fn hosts(&mut self, key: &str, patterns: &[String]) -> Option<HostSet> {
        HostSet::new(patterns)
            .map_err(|bad| self.fail(format!("{key}[{}]", bad.index), bad.reason))
            .ok()
    }

    fn finish<T>(self, built: Option<T>) -> Result<T, ConfigError> {
        match built {
            Some(settings) if self.0.is_empty() => Ok(settings),
            _ => Err(ConfigError::Invalid(self.0)),
        }
    }
}

impl Settings {
    /// Checks and parses every value that types alone cannot, naming each key at fault.
    pub fn from_config(c: &Config) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        let mut warnings = Vec::new();
        let listen = p.take("server.listen", parse_addr(&c.server.listen));
        let admin_listen = admin_listen(&c.server, listen, &mut p);
        let admin_token = admin_token(&c.server.admin_token_file, &mut p, &mut warnings);
        let route_prefix = route_prefix(&c.server, &mut p);
        let absolute_base = absolute_base(&c.server, &mut p);
        let connections = connections(&c.server, &mut p);
        let body_idle = p.secs(
            "server.client_idle_timeout_s",
            c.server.client_idle_timeout_s,
        );
        let fetch = fetch(&c.upstream, &mut p);
        let image = image(c, &mut p);
        let origin = origin(c, &mut p);
        let rewrite = rewrite(&c.rewrite, &mut p);
        let keys = key_files(c, &mut p);
        let log = log(c, &mut p);
        let built = (|| {
            Some(Settings {
                serve: ServeSettings {
                    listen: listen?,
                    admin_listen: admin_listen?,
                    admin_token: admin_token?,
                    route_prefix: route_prefix?,
                    connections: connections?,
                    worker_burst: (c.server.worker_burst_us > 0)
                        .then(|| Duration::from_micros(c.server.worker_burst_us)),
                    body_pace: BodyPace {
                        idle: body_idle?,
                        min_rate: c.server.client_body_min_rate,
                    },
                    shutdown_grace: Duration::from_secs(c.server.shutdown_grace_s),
                    image: image?,
                    fetch: fetch?,
                    origin: origin?,
                },
                rewrite: RewriteSettings {
                    public_prefix: c.server.public_prefix.clone(),
                    absolute_base: absolute_base?,
                    ..rewrite?
                },
                keys: keys?,
                log: log?,
                warnings,
            })
        })();
        p.finish(built)
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|e| format!("not an address:port: {e}"))
}

fn admin_listen(
    c: &ServerConfig,
    public: Option<SocketAddr>,
    p: &mut Problems,
) -> Option<Option<SocketAddr>> {
    if c.admin_listen.is_empty() {
        return Some(None);
    }
    let admin = p.take("server.admin_listen", parse_addr(&c.admin_listen))?;
    if admin.port() != 0 && public == Some(admin) {
        p.fail(
            "server.admin_listen",
            "must differ from server.listen: the control plane is never public",
        );
        return None;
    }
    Some(Some(admin))
}

/// The control plane's token, read from `server.admin_token_file` with the key files' rules.
fn admin_token(
    path: &Path,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Option<Vec<u8>>> {
    const KEY: &str = "server.admin_token_file";
    if path.as_os_str().is_empty() {
        return Some(None);
    }
    let secret = p.take(KEY, secret_file::read(path))?;
    if let Some(warning) = secret.warning {
        warnings.push(format!("control-plane token file {warning}"));
    }
    let token = secret.text.trim();
    if token.len() < 16 || token.bytes().any(|b| !b.is_ascii_graphic()) {
        p.fail(
            KEY,
            "the token must be at least 16 printable characters without spaces",
        );
        return None;
    }
    Some(Some(token.as_bytes().to_vec()))
}

fn route_prefix(c: &ServerConfig, p: &mut Problems) -> Option<String> {
    const KEY: &str = "server.public_prefix";
    let prefix = &c.public_prefix;
    if prefix.contains("://") {
        let url = p.url(KEY, prefix)?;
        if !matches!(url.scheme(), "http" | "https") {
            p.fail(KEY, "must be http(s) or a path");
            return None;
        }
    } else if !prefix.starts_with('/') {
        p.fail(KEY, "must be a path starting with '/' or an absolute URL");
        return None;
    }
    let route = c.route_prefix();
    if route.ends_with('/') || route.is_empty() || route.starts_with("/_imgrelay") {
        p.fail(
            KEY,
            "path must be non-empty, must not end with '/' and must not be under /_imgrelay",
        );
        return None;
    }
    Some(route.to_string())
}

/// What makes a path prefix absolute where markup needs an absolute URL (`og:image`).
fn absolute_base(c: &ServerConfig, p: &mut Problems) -> Option<Option<String>> {
    const KEY: &str = "server.public_base_url";
    if c.public_base_url.is_empty() {
        return Some(None);
    }
    let url = p.url(KEY, &c.public_base_url)?;
    if !matches!(url.scheme(), "http" | "https") {
        p.fail(KEY, "must be an http(s) URL");
        return None;
    }
    let base = c.public_base_url.trim_end_matches('/');
    Some(c.public_prefix.starts_with('/').then(|| base.to_string()))
}

fn connections(c: &ServerConfig, p: &mut Problems) -> Option<ConnLimits> {
    let max_connections = p.positive("server.max_connections", c.max_connections);
    let timeouts = p.all_positive([
        ("server.header_timeout_s", c.header_timeout_s),
        ("server.keepalive_timeout_s", c.keepalive_timeout_s),
        ("server.send_timeout_s", c.send_timeout_s),
        ("server.http2_ping_interval_s", c.http2_ping_interval_s),
    ]);
    let [header_timeout, keepalive_timeout, send_timeout, http2_ping_interval] =
        timeouts?.map(Duration::from_secs);
    Some(ConnLimits {
        max_connections: max_connections?,
        header_timeout,
        keepalive_timeout,
        send_timeout,
        http2_ping_interval,
    })
}

fn fetch(c: &UpstreamConfig, p: &mut Problems) -> Option<FetchSettings> {
    let allowed_hosts = p.hosts("upstream.allowed_hosts", &c.allowed_hosts);
    let pins = resolve_pins(&c.resolve, p);
    let extra_roots = extra_roots(&c.ca_files, p);
    let connect_timeout = p.millis("upstream.connect_timeout_ms", c.connect_timeout_ms);
    let timeout = p.millis("upstream.timeout_ms", c.timeout_ms);
    let max_bytes = p.positive("upstream.max_bytes", c.max_bytes);
    let user_agent = p.header("upstream.user_agent", &c.user_agent);
    let referer: Vec<_> = c
        .referer
        .iter()
        .map(|(host, value)| {
            let value = p.header(&format!("upstream.referer.{host}"), value)?;
            Some((host.to_ascii_lowercase(), value))
        })
        .collect();
    Some(FetchSettings {
        allowed_hosts: allowed_hosts?,
        pins: pins?,
        allow_private: c.allow_private,
        connect_timeout: connect_timeout?,
        extra_roots: extra_roots?,
        max_bytes: max_bytes?,
        max_redirects: c.max_redirects,
        timeout: timeout?,
        user_agent: user_agent?,
        referer: referer.into_iter().collect::<Option<_>>()?,
    })
}

/// `upstream.resolve`: lower-cased "host:port" → pinned address.
fn resolve_pins(
    resolve: &BTreeMap<String, String>,
    p: &mut Problems,
) -> Option<BTreeMap<String, SocketAddr>> {
    let pins: Vec<_> = resolve
        .iter()
        .map(|(from, to)| {
            let key = format!("upstream.resolve.\"{from}\"");
            let valid_key = from
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid_key {
                p.fail(&key, "key must be host:port");
                return None;
            }
            let addr = p.take(
                &key,
                to.parse::<SocketAddr>()
                    .map_err(|e| format!("value must be ip:port: {e}")),
            )?;
            Some((from.to_ascii_lowercase(), addr))
        })
        .collect();
    pins.into_iter().collect()
}

/// The certificates of `upstream.ca_files`; each file must hold at least one.
fn extra_roots(files: &[String], p: &mut Problems) -> Option<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = Some(Vec::new());
    for (i, file) in files.iter().enumerate() {
        let key = format!("upstream.ca_files[{i}]");
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>());
        match certs {
            Ok(certs) if !certs.is_empty() => {
                if let Some(roots) = &mut roots {
                    roots.extend(certs);
                }
            }
            Ok(_) => {
                p.fail(&key, format!("{file}: no PEM certificate"));
                roots = None;
            }
            Err(e) => {
                p.fail(&key, format!("{file}: {e}"));
                roots = None;
            }
        }
    }
    roots
}

fn image(c: &Config, p: &mut Problems) -> Option<ImageSettings> {
    let i: &ImageConfig = &c.image;
    let preference = formats(&i.formats, p);
    let quality = if (1..=100).contains(&i.quality) {
        Some(i.quality)
    } else {
        p.fail("image.quality", "must be 1..=100");
        None
    };
    let pixels = p.all_positive([
        ("image.max_src_pixels", i.max_src_pixels),
        ("image.max_output_pixels", i.max_output_pixels),
        ("image.max_animation_pixels", i.max_animation_pixels),
    ]);
    let max_jpeg_scans = p.positive("image.max_jpeg_scans", i.max_jpeg_scans);
    let queue = p.positive("image.queue", i.queue);
    let max_fetches = p.positive("upstream.max_fetches", c.upstream.max_fetches);
    let fetch_queue = p.positive("upstream.fetch_queue", c.upstream.fetch_queue);
    let max_entry_bytes = p.positive("cache.max_entry_bytes", c.cache.max_entry_bytes);
    let cache_control = p.header("http.cache_control", &c.http.cache_control);
    let shared = shared_cache(&c.shared_cache, p);
    Some(ImageSettings {
        transform: TransformSettings {
            preference: preference?,
            quality: quality?,
            limits: {
                let [max_src_pixels, max_output_pixels, max_animation_pixels] = pixels?;
                Limits {
                    max_src_pixels,
                    max_output_pixels,
                    max_animation_pixels,
                    max_jpeg_scans: max_jpeg_scans?,
                }
            },
            allow_svg: i.allow_svg,
        },
        workers: workers(i),
        queue: queue?,
        max_fetches: max_fetches?,
        fetch_queue: fetch_queue?,
        cache: CacheSettings {
            variant_bytes: c.cache.memory_mb.saturating_mul(MB),
            source_bytes: c.cache.source_memory_mb.saturating_mul(MB),
            max_entry_bytes: max_entry_bytes?,
            negative_ttl: Duration::from_secs(c.cache.negative_ttl_s),
        },
        cache_control: cache_control?,
        shared: shared?,
    })
}

/// `[shared_cache]`: `None` when off.
fn shared_cache(c: &SharedCacheConfig, p: &mut Problems) -> Option<Option<SharedCacheSettings>> {
    let times = p.all_positive([
        ("shared_cache.timeout_ms", c.timeout_ms),
        ("shared_cache.connect_timeout_ms", c.connect_timeout_ms),
        ("shared_cache.retry_ms", c.retry_ms),
        ("shared_cache.lease_ms", c.lease_ms),
        ("shared_cache.lease_wait_ms", c.lease_wait_ms),
    ]);
    let ttl = p.secs("shared_cache.ttl_s", c.ttl_s);
    let max_entry_bytes = p.positive("shared_cache.max_entry_bytes", c.max_entry_bytes);
    let max_pending_writes = p.positive("shared_cache.max_pending_writes", c.max_pending_writes);
    let target = match (c.url.is_empty(), c.cluster_nodes.is_empty()) {
        (true, true) => return Some(None),
        (false, false) => {
            p.fail(
                "shared_cache.cluster_nodes",
                "set either shared_cache.url or shared_cache.cluster_nodes, not both",
            );
            return None;
        }
        (false, true) => ("shared_cache.url", Target::Server(c.url.clone())),
        (true, false) => (
            "shared_cache.cluster_nodes",
            Target::Cluster(c.cluster_nodes.clone()),
        ),
    };
    let target = p.take(target.0, target.1.check().map(|()| target.1));
    if c.key_prefix.contains(['{', '}']) {
        // Braces would choose the cluster slot: every key would land on one node.
        p.fail("shared_cache.key_prefix", "must not contain '{' or '}'");
        return None;
    }
    let ca_pem = if c.ca_file.as_os_str().is_empty() {
        Some(None)
    } else {
        p.take(
            "shared_cache.ca_file",
            std::fs::read(&c.ca_file)
                .map_err(|e| format!("{}: {e}", c.ca_file.display()))
                .and_then(|pem| {
                    use rustls::pki_types::pem::PemObject;
                    match CertificateDer::pem_slice_iter(&pem).next() {
                        Some(Ok(_)) => Ok(Some(pem)),
                        _ => Err(format!("{}: no PEM certificate", c.ca_file.display())),
                    }
                }),
        )
    };
    let target = target?;
    let [command_timeout, connect_timeout, retry, lease_ttl, lease_wait] =
        times?.map(Duration::from_millis);
    Some(Some(SharedCacheSettings {
        target,
        ca_pem: ca_pem?,
        key_prefix: c.key_prefix.clone(),
        command_timeout,
        connect_timeout,
        retry,
        ttl: ttl?,
        max_entry_bytes: max_entry_bytes?,
        lease_ttl,
        lease_wait,
        max_pending_writes: max_pending_writes?,
    }))
}

/// Number of transforms run at once: `image.max_concurrency`, or the number of cores when 0.
fn workers(c: &ImageConfig) -> usize {
    if c.max_concurrency > 0 {
        c.max_concurrency
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

fn formats(names: &[String], p: &mut Problems) -> Option<Arc<[Format]>> {
    const KEY: &str = "image.formats";
    if names.is_empty() {
        p.fail(KEY, "must name at least one format");
        return None;
    }
    let parsed: Vec<_> = names
        .iter()
        .map(|f| p.take(KEY, f.parse::<Format>()))
        .collect();
    parsed.into_iter().collect()
}

fn origin(c: &Config, p: &mut Problems) -> Option<Option<OriginSettings>> {
    const KEY: &str = "origin.url";
    let o = &c.origin;
    let connect_timeout = p.millis("origin.connect_timeout_ms", o.connect_timeout_ms);
    let timeout = p.millis("origin.timeout_ms", o.timeout_ms);
    if o.url.is_empty() {
        return Some(None);
    }
    let url = p.url(KEY, &o.url)?;
    if url.scheme() != "http" || url.host_str().is_none() {
        p.fail(KEY, "must be an http:// URL with a host");
        return None;
    }
    let base = p.take(KEY, o.url.parse::<Uri>())?;
    Some(Some(OriginSettings {
        base,
        connect_timeout: connect_timeout?,
        timeout: timeout?,
    }))
}

/// `[rewrite]`; the prefix fields are filled in by the caller, from `[server]`.
fn rewrite(c: &RewriteConfig, p: &mut Problems) -> Option<RewriteSettings> {
    let wrappers: Vec<_> = c
        .wrappers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let key = format!("rewrite.wrappers[{i}].prefix");
            let url = p.url(&key, &w.prefix)?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                p.fail(&key, "must be an http(s) URL with a host");
                return None;
            }
            if w.param.as_deref().is_some_and(str::is_empty) {
                p.fail(format!("rewrite.wrappers[{i}].param"), "empty");
                return None;
            }
            let decoding = match w.decode.as_deref() {
                None => InnerDecoding::Auto,
                Some(d) => p.take(&format!("rewrite.wrappers[{i}].decode"), d.parse())?,
            };
            p.take(&key, Wrapper::new(&w.prefix, w.param.as_deref(), decoding))
        })
        .collect();
    let direct_hosts = p.hosts("rewrite.direct_hosts", &c.direct_hosts);
    let max_width = p.positive("rewrite.max_width", c.max_width);
    let srcset_widths =
        if c.srcset_widths.contains(&0) || !c.srcset_widths.windows(2).all(|w| w[0] < w[1]) {
            p.fail(
                "rewrite.srcset_widths",
                "must be positive and strictly increasing",
            );
            None
        } else {
            Some(c.srcset_widths.clone())
        };
    let max_memory_kb = if c.max_memory_kb < 16 {
        p.fail("rewrite.max_memory_kb", "must be at least 16");
        None
    } else {
        Some(c.max_memory_kb)
    };
    Some(RewriteSettings {
        wrappers: WrapperSet::new(wrappers.into_iter().collect::<Option<_>>()?),
        direct_hosts: direct_hosts?,
        public_prefix: String::new(),
        absolute_base: None,
        policy: Policy {
            max_width: max_width?,
            srcset_widths: srcset_widths?,
            img: ImgAdditions {
                dimensions: c.dimensions,
                lazy: c.lazy,
                fetchpriority: c.fetchpriority,
                canonical_attr: c.canonical_attr,
            },
            front_matter_keys: c.front_matter_keys.clone(),
            max_memory_kb: max_memory_kb?,
        },
    })
}

fn key_files(c: &Config, p: &mut Problems) -> Option<KeyFiles> {
    if c.signing.key_file.as_os_str().is_empty() {
        p.fail("signing.key_file", "must not be empty");
        return None;
    }
    Some(KeyFiles {
        signing: c.signing.key_file.clone(),
        verify_only: c.signing.verify_key_files.clone(),
    })
}

fn log(c: &Config, p: &mut Problems) -> Option<LogSettings> {
    let json = match c.log.format.as_str() {
        "text" => false,
        "json" => true,
        _ => {
            p.fail("log.format", "must be \"text\" or \"json\"");
            return None;
        }
    };
    Some(LogSettings {
        json,
        level: c.log.level.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_key_is_reported_at_once() {
        let mut c = Config::default();
        c.server.listen = "nowhere".into();
        c.image.quality = 0;
        c.upstream.allowed_hosts = vec!["ok.example".into(), "a b".into()];
        c.origin.url = "ftp://x/".into();
        c.rewrite.srcset_widths = vec![640, 320];
        let Err(ConfigError::Invalid(bad)) = Settings::from_config(&c) else {
            panic!("accepted");
        };
        let keys: Vec<_> = bad.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "upstream.allowed_hosts[1]",
                "image.quality",
                "origin.url",
                "rewrite.srcset_widths"
            ]
        );
    }

    #[test]
    fn the_shared_cache_is_off_by_default_and_checked_when_on() {
        let s = Settings::from_config(&Config::default()).unwrap();
        assert!(s.serve.image.shared.is_none());
        let mut c = Config::default();
        c.shared_cache.url = "redis://10.0.0.5:6379/2".into();
        let shared = Settings::from_config(&c)
            .unwrap()
            .serve
            .image
            .shared
            .unwrap();
        assert_eq!(shared.target, Target::Server(c.shared_cache.url.clone()));
        let bad = |c: &Config| match Settings::from_config(c) {
            Err(ConfigError::Invalid(bad)) => bad.into_iter().map(|b| b.key).collect::<Vec<_>>(),
            other => panic!("accepted: {other:?}"),
        };
        c.shared_cache.cluster_nodes = vec!["redis://10.0.0.6:7000".into()];
        assert_eq!(bad(&c), ["shared_cache.cluster_nodes"]);
        c.shared_cache.url = String::new();
        c.shared_cache.key_prefix = "{img}:".into();
        assert_eq!(bad(&c), ["shared_cache.key_prefix"]);
        c.shared_cache.key_prefix = "img:".into();
        c.shared_cache.cluster_nodes = vec!["memcached://x".into()];
        c.shared_cache.timeout_ms = 0;
        assert_eq!(
            bad(&c),
            ["shared_cache.timeout_ms", "shared_cache.cluster_nodes"]
        );
    }

    #[test]
    fn the_defaults_parse_into_what_the_services_take() {
        let s = Settings::from_config(&Config::default()).unwrap();
        assert_eq!(s.serve.route_prefix, "/img");
        assert_eq!(s.serve.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(s.serve.admin_listen.is_some_and(|a| a.ip().is_loopback()));
        assert!(s.serve.origin.is_none());
        assert_eq!(
            &*s.serve.image.transform.preference,
            [Format::Webp, Format::Jpeg, Format::Png]
        );
        assert_eq!(s.serve.fetch.timeout, Duration::from_secs(10));
        assert!(s.rewrite.absolute_base.is_none());
        assert!(!s.log.json);
    }
}
