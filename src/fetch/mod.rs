//! Hardened upstream client: one guarded connector, manual redirects, byte cap, timeouts.

mod connector;
pub(crate) mod guard;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use url::Url;

use crate::cause::Cause;
use crate::hosts::HostSet;

pub(crate) use connector::{ConnectError, GuardedConnector};

type HttpsConnector = hyper_rustls::HttpsConnector<GuardedConnector>;

/// What upstreams are told we take: AVIF only when this build decodes it, since an AVIF that
/// needs resizing could not be served otherwise.
const UPSTREAM_ACCEPT: &str = if crate::pipeline::decode::AVIF_DECODING {
    "image/avif,image/webp,image/jpeg,image/png,image/gif,image/*;q=0.8,*/*;q=0.5"
} else {
    "image/webp,image/jpeg,image/png,image/gif,image/*;q=0.8,*/*;q=0.5"
};

/// Why an upstream fetch failed (the status a client gets is chosen in `server::error`).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("upstream URL {0}")]
    BadUrl(String),
    #[error("upstream host {0} is not allowed")]
    HostNotAllowed(String),
    #[error("upstream address {0} is not public")]
    Forbidden(String),
    #[error("upstream answered 404")]
    NotFound,
    #[error("upstream answered {0}")]
    Status(u16),
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("upstream body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream connection failed")]
    Connect(#[source] Cause),
    #[error("upstream body incomplete")]
    Body(#[source] Cause),
}

impl FetchError {
    /// A short name for logs and metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            FetchError::BadUrl(_) => "bad_url",
            FetchError::HostNotAllowed(_) => "host_not_allowed",
            FetchError::Forbidden(_) => "forbidden_address",
            FetchError::NotFound => "not_found",
            FetchError::Status(_) => "status",
            FetchError::TooManyRedirects(_) => "redirects",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Timeout => "timeout",
            FetchError::Connect(_) => "connect",
            FetchError::Body(_) => "body",
        }
    }
}

/// `[upstream]` as a fetcher takes it, parsed once by the config.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub allowed_hosts: HostSet,
    /// Lower-cased "host:port" → operator-chosen address, trusted as is.
    pub pins: BTreeMap<String, SocketAddr>,
    pub allow_private: bool,
    pub connect_timeout: Duration,
    /// Certificate authorities trusted for https besides the system's.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub max_bytes: u64,
    pub max_redirects: u32,
    pub timeout: Duration,
    pub user_agent: HeaderValue,
    /// Host → Referer value, for upstreams that refuse hot-linking.
    pub referer: Vec<(String, HeaderValue)>,
}

/// Fetches upstream images. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: Client<HttpsConnector, Empty<Bytes>>,
    settings: Arc<FetchSettings>,
}

impl Fetcher {
    pub(crate) fn new(settings: FetchSettings) -> Fetcher {
        let connector = GuardedConnector::new(
            settings.pins.clone(),
            settings.allow_private,
            settings.connect_timeout,
        );
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&settings.extra_roots))
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .build(https);
        Fetcher {
            client,
            settings: Arc::new(settings),
        }
    }

    /// How long one fetch may take in all.
    pub(crate) fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// The body of `url` after following redirects, within every limit.
    pub(crate) async fn fetch(&self, url: &Url) -> Result<Bytes, FetchError> {
        tokio::time::timeout(self.settings.timeout, self.fetch_inner(url.clone()))
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }

    async fn fetch_inner(&self, mut url: Url) -> Result<Bytes, FetchError> {
        let mut redirects = 0u32;
        loop {
            self.check_url(&url)?;
            let response = self
                .client
                .request(self.request(&url)?)
                .await
                .map_err(classify_client_error)?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                if redirects >= self.settings.max_redirects {
                    return Err(FetchError::TooManyRedirects(self.settings.max_redirects));
                }
                redirects += 1;
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::Status(status.as_u16()))?;
                url = url
                    .join(location)
                    .map_err(|e| FetchError::BadUrl(format!("bad redirect: {e}")))?;
                continue;
            }
            if status == StatusCode::NOT_FOUND {
                return Err(FetchError::NotFound);
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            return self.read_body(response).await;
        }
    }

    /// Every hop, the first included, must be http(s), credential-free and on an allowed host.
    fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::BadUrl(format!(
                "scheme {} is not http(s)",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::BadUrl("credentials are not allowed".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| FetchError::BadUrl("no host".into()))?;
        let allowed = &self.settings.allowed_hosts;
        if !allowed.is_empty() && !allowed.matches(host) {
            return Err(FetchError::HostNotAllowed(host.to_string()));
        }
        Ok(())
    }

    fn request(&self, url: &Url) -> Result<Request<Empty<Bytes>>, FetchError> {
        // A fragment is never sent to a server.
        let target = &url[..url::Position::AfterQuery];
        let mut builder = Request::get(target)
            .header(header::USER_AGENT, self.settings.user_agent.clone())
            .header(header::ACCEPT, HeaderValue::from_static(UPSTREAM_ACCEPT));
        if let Some(host) = url.host_str() {
            if let Some((_, referer)) = self
                .settings
                .referer
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(host))
            {
                builder = builder.header(header::REFERER, referer.clone());
            }
        }
        builder
            .body(Empty::new())
            .map_err(|e| FetchError::BadUrl(e.to_string()))
    }

    async fn read_body(
        &self,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, FetchError> {
        let max = self.settings.max_bytes;
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(FetchError::TooLarge(max));
        }
        // The declared length only sizes the buffer; the cap below is what bounds memory.
        let capacity = declared.unwrap_or(64 * 1024).min(max) as usize;
        let mut buf = BytesMut::with_capacity(capacity);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| FetchError::Body(Arc::new(e)))?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > max {
                    return Err(FetchError::TooLarge(max));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    }
}

/// rustls with the system's roots and `extra` ones; without any, plain http still works and
/// https fails per request instead of at startup.
pub(crate) fn tls_config(extra: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    let (extra_added, _) = roots.add_parsable_certificates(extra.iter().cloned());
    if added + extra_added == 0 {
        tracing::warn!("no system root certificates found: https upstreams will fail");
    }
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        Err(e) => {
            tracing::warn!(error = %e, "TLS provider rejected the default protocol versions");
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    }
}

/// Maps a client error to a fetch error by looking for the connector's own error in the chain.
fn classify_client_error(e: hyper_util::client::legacy::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(c) = err.downcast_ref::<ConnectError>() {
            match c {
                ConnectError::Forbidden(ip) => return FetchError::Forbidden(ip.to_string()),
                ConnectError::Timeout => return FetchError::Timeout,
                _ => break,
            }
        }
        source = err.source();
    }
    FetchError::Connect(Arc::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(allowed: &[&str]) -> Fetcher {
        let settings = FetchSettings {
            allowed_hosts: HostSet::new(&allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
            pins: BTreeMap::new(),
            allow_private: false,
            connect_timeout: Duration::from_millis(100),
            extra_roots: Vec::new(),
            max_bytes: 1000,
            max_redirects: 2,
            timeout: Duration::from_secs(1),
            user_agent: HeaderValue::from_static("imgrelay"),
            referer: vec![(
                "hotlink.example".into(),
                HeaderValue::from_static("https://blog.example/"),
            )],
        };
        Fetcher::new(settings)
    }

    #[test]
    fn every_hop_is_checked() {
        let f = fetcher(&["*.example"]);
        let ok = |s: &str| f.check_url(&Url::parse(s).unwrap());
        assert!(ok("https://img.example/a.jpg").is_ok());
        assert!(matches!(
            ok("https://other.test/a.jpg"),
            Err(FetchError::HostNotAllowed(_))
        ));
        assert!(matches!(
            ok("ftp://img.example/a.jpg"),
            Err(FetchError::BadUrl(_))
        ));
        assert!(matches!(
            ok("http://u:p@img.example/a.jpg"),
            Err(FetchError::BadUrl(_))
        ));
    }

    #[test]
    fn requests_carry_fixed_headers_and_no_fragment() {
        let f = fetcher(&[]);
        let req = f
            .request(&Url::parse("http://hotlink.example/a%20b.jpg?x=1#frag").unwrap())
            .unwrap();
        assert_eq!(req.uri(), "http://hotlink.example/a%20b.jpg?x=1");
        assert_eq!(req.headers()[header::USER_AGENT], "imgrelay");
        assert_eq!(req.headers()[header::REFERER], "https://blog.example/");
        let req = f
            .request(&Url::parse("http://other.example/a.jpg").unwrap())
            .unwrap();
        assert!(!req.headers().contains_key(header::REFERER));
        assert!(!req.headers().contains_key(header::COOKIE));
    }

    #[tokio::test]
    async fn forbidden_addresses_surface_as_403() {
        let err = fetcher(&[])
            .fetch(&Url::parse("http://127.0.0.1:9/x.jpg").unwrap())
            .await
            .unwrap_err();
        // Its status (403) is the route's table, tested in server::error.
        assert!(
            matches!(&err, FetchError::Forbidden(ip) if ip == "127.0.0.1"),
            "{err}"
        );
    }
}
