//! Everything outside the image prefix and `/_imgrelay/` goes to the blog's origin; HTML
//! answers stream back through the rewriter, anything else streams back untouched.
//!
//! The origin is configured by the operator, so there is no address guard here; redirects are
//! handed to the client as they are.

pub(crate) mod content_coding;
pub(crate) mod rewrite_route;
pub(crate) mod stream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

use crate::rewrite::charset::charset_param;
use crate::rewrite::{DocKind, RewriteContext};
use crate::server::body::{empty, Body, BoxError, Holding, SourceBody};
use crate::server::client_body;
use crate::server::error::RouteError;
use crate::server::metrics::Metrics;
use crate::server::PeerAddr;
use content_coding::{decoded, Coding};
use stream::{Pump, RewriteJob};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub(crate) struct PageProxy {
    /// Scheme and authority of the origin.
    base: Uri,
    /// The origin URL's path without its trailing slash, prepended to every request path.
    base_path: String,
    client: Client<HttpConnector, Upload>,
    timeout: Duration,
    ctx: Arc<RewriteContext>,
    metrics: Arc<Metrics>,
}

/// `[origin]`, parsed: where pages come from and how long the origin may take.
#[derive(Debug, Clone)]
pub struct OriginSettings {
    /// The origin's URL; its path is prepended to every request path.
    pub base: Uri,
    pub connect_timeout: Duration,
    /// Longest wait for the origin's response headers, and then between two body chunks.
    pub timeout: Duration,
}

impl PageProxy {
    pub(crate) fn new(
        settings: &OriginSettings,
        ctx: Arc<RewriteContext>,
        metrics: Arc<Metrics>,
    ) -> PageProxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        PageProxy {
            base: settings.base.clone(),
            base_path: settings.base.path().trim_end_matches('/').to_string(),
            client,
            timeout: settings.timeout,
            ctx,
            metrics,
        }
    }

    /// One request, in the phases of a proxy: the request to the origin, its answer, the
    /// response head for the client, then the body.
    pub(crate) async fn respond<B>(&self, req: Request<B>) -> Result<Response<Body>, RouteError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let head_request = req.method() == Method::HEAD;
        let (outgoing, uploaded) = self.outgoing(req)?;
        let (mut parts, body) = self.send(outgoing, uploaded).await?.into_parts();
        let rewrite = response_head(&mut parts);
        let body = if head_request || !status_has_body(parts.status) {
            empty()
        } else {
            self.response_body(body, rewrite)
        };
        Ok(Response::from_parts(parts, body))
    }

    /// Sends the request and waits for the origin's response head. `origin.timeout_ms` bounds
    /// the origin's answer, so it starts once the client's upload is over; the upload itself is
    /// paced by the client body's own timeouts.
    async fn send(
        &self,
        outgoing: Request<Upload>,
        uploaded: oneshot::Receiver<()>,
    ) -> Result<Response<Incoming>, RouteError> {
        let origin_deadline = async {
            let _ = uploaded.await;
            tokio::time::sleep(self.timeout).await;
        };
        let answer = tokio::select! {
            answer = self.client.request(outgoing) => Some(answer),
            () = origin_deadline => None,
        };
        match answer {
            Some(Ok(response)) => Ok(response),
            Some(Err(e)) if client_body::is_too_slow(&e) => {
                self.metrics.page_proxy_error("client_body_timeout");
                Err(RouteError::RequestTimeout)
            }
            Some(Err(e)) => {
                let kind = if e.is_connect() { "connect" } else { "request" };
                tracing::warn!(kind, error = %e, source = ?std::error::Error::source(&e), "origin failed");
                self.metrics.page_proxy_error(kind);
                Err(RouteError::OriginUnreachable)
            }
            None => {
                tracing::warn!(
                    timeout_ms = self.timeout.as_millis() as u64,
                    "origin timed out"
                );
                self.metrics.page_proxy_error("timeout");
                Err(RouteError::OriginTimeout)
            }
        }
    }

    /// The origin's body streamed to the client, through the rewriter when it is HTML.
    fn response_body(&self, body: Incoming, rewrite: Option<Rewritable>) -> Body {
        let coding = rewrite.map_or(Coding::Identity, |r| r.coding);
        stream::spawn(
            decoded(body, coding),
            Pump {
                rewrite: rewrite.map(|r| RewriteJob {
                    ctx: self.ctx.clone(),
                    kind: DocKind::Html,
                    charset: r.charset,
                }),
                idle: self.timeout,
                metrics: self.metrics.clone(),
                on_error: Metrics::page_proxy_error,
            },
        )
    }

    /// The request to send to the origin: same method, path, headers (minus hop-by-hop) and
    /// streamed body, plus `X-Forwarded-*`; and a signal that resolves when the body is sent.
    fn outgoing<B>(
        &self,
        req: Request<B>,
    ) -> Result<(Request<Upload>, oneshot::Receiver<()>), RouteError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.ip());
        let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let mut uri = Uri::builder().path_and_query(format!("{}{path}", self.base_path));
        if let Some(scheme) = self.base.scheme() {
            uri = uri.scheme(scheme.clone());
        }
        if let Some(authority) = self.base.authority() {
            uri = uri.authority(authority.clone());
        }
        let uri = uri
            .build()
            .map_err(|e| RouteError::Internal(format!("origin request URI: {e}")))?;
        let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let mut headers = std::mem::take(&mut parts.headers);
        strip_hop_by_hop(&mut headers);
        // The client's Host names this service; the origin gets its own (set by the client).
        headers.remove(header::HOST);
        // Rewriting needs plain bytes; compression is for the hop to the browser.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        forwarded_headers(&mut headers, peer, client_host);
        let (sent, uploaded) = oneshot::channel();
        let mut out = Request::new(Holding::new(body.map_err(Into::into).boxed_unsync(), sent));
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers;
        Ok((out, uploaded))
    }
}

/// The client's request body on its way to the origin; the sender it holds is dropped once the
/// body has all been sent, which wakes the receiver.
pub(crate) type Upload = Holding<SourceBody, oneshot::Sender<()>>;

/// The response head for the client: hop-by-hop headers gone and, when the body will be
/// rewritten, the validators and length that no longer describe it.
fn response_head(parts: &mut http::response::Parts) -> Option<Rewritable> {
    strip_hop_by_hop(&mut parts.headers);
    let rewrite = rewritable(parts.status, &parts.headers)?;
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::ACCEPT_RANGES);
    parts.headers.remove(HeaderName::from_static("content-md5"));
    if let Some(etag) = parts.headers.get(header::ETAG).and_then(weak_etag) {
        parts.headers.insert(header::ETAG, etag);
    }
    Some(rewrite)
}

/// Appends the peer to `X-Forwarded-For`; keeps `-Proto` and `-Host` set by a proxy in front,
/// else fills them in from this hop.
fn forwarded_headers(headers: &mut HeaderMap, peer: Option<IpAddr>, host: Option<HeaderValue>) {
    if let Some(ip) = peer {
        let mut chain: Vec<String> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        chain.push(ip.to_string());
        if let Ok(value) = HeaderValue::from_str(&chain.join(", ")) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host);
        }
    }
}

/// Removes the headers that describe one connection rather than the message (RFC 9110 §7.6.1).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// An HTML response the rewriter can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rewritable {
    /// From the `Content-Type` parameter.
    charset: Option<&'static encoding_rs::Encoding>,
    /// The origin is asked for identity; gzip or deflate sent anyway is undone first.
    coding: Coding,
}

/// `Some` when the response is an HTML document the rewriter can take: `text/html`, a full
/// body, in a coding that can be undone (any other passes through untouched rather than cut).
fn rewritable(status: StatusCode, headers: &HeaderMap) -> Option<Rewritable> {
    if status == StatusCode::PARTIAL_CONTENT || !status_has_body(status) {
        return None;
    }
    let coding = Coding::of(headers)?;
    let ctype = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mut params = ctype.split(';');
    let essence = params.next()?.trim();
    if !essence.eq_ignore_ascii_case("text/html") {
        return None;
    }
    Some(Rewritable {
        charset: charset_param(params),
        coding,
    })
}

fn status_has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// `W/"x"` for `"x"`; weak tags stay as they are.
fn weak_etag(etag: &HeaderValue) -> Option<HeaderValue> {
    let text = etag.to_str().ok()?;
    if text.starts_with("W/") {
        return None;
    }
    HeaderValue::from_str(&format!("W/{text}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_those_named_by_connection() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
            ("cache-control", "max-age=1"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["cache-control", "x-kept"]);
    }

    #[test]
    fn forwarded_for_appends_and_front_proxy_values_win() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        forwarded_headers(
            &mut h,
            Some("127.0.0.1".parse().unwrap()),
            Some(HeaderValue::from_static("blog.example")),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.9, 127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "blog.example");
    }

    #[test]
    fn only_plain_full_html_is_rewritten() {
        let html = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            h
        };
        let plain = |charset| {
            Some(Rewritable {
                charset,
                coding: Coding::Identity,
            })
        };
        let gbk = rewritable(StatusCode::OK, &html("text/html; charset=GBK"));
        assert_eq!(gbk, plain(Some(encoding_rs::GBK)));
        assert_eq!(rewritable(StatusCode::OK, &html("Text/HTML")), plain(None));
        assert_eq!(rewritable(StatusCode::OK, &html("text/plain")), None);
        assert_eq!(
            rewritable(StatusCode::PARTIAL_CONTENT, &html("text/html")),
            None
        );
        assert_eq!(
            rewritable(StatusCode::NOT_MODIFIED, &html("text/html")),
            None
        );
        for (coding, expected) in [
            ("gzip", Some(Coding::Gzip)),
            ("X-GZIP", Some(Coding::Gzip)),
            ("deflate", Some(Coding::Deflate)),
            ("identity", Some(Coding::Identity)),
            ("br", None),
            ("gzip, br", None),
        ] {
            let mut h = html("text/html");
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
            let got = rewritable(StatusCode::OK, &h).map(|r| r.coding);
            assert_eq!(got, expected, "{coding}");
        }
        assert_eq!(
            weak_etag(&HeaderValue::from_static("\"a\"")).unwrap(),
            "W/\"a\""
        );
        assert!(weak_etag(&HeaderValue::from_static("W/\"a\"")).is_none());
    }
}
