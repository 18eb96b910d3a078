//! What the answers imgrelay writes itself have in common: the methods a route takes, the
//! headers that keep an answer inert in a browser, and small text answers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use super::body::{empty, full, Body};
use super::error::RouteError;

/// No script, no plugin, no frame: what every answer of imgrelay's own is allowed to do.
pub(crate) const SANDBOX_CSP: &str = "default-src 'none'; sandbox";

/// The cache outcome of an image answer (`HIT`, `MISS`), which the access log reads back.
pub(crate) const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The methods of routes that only read.
pub(crate) const READ: (&[Method], &str) = (&[Method::GET, Method::HEAD], "GET, HEAD");

/// `Ok` when `method` is one of `allowed.0`; else 405 with `Allow: allowed.1`.
pub(crate) fn allow(method: &Method, allowed: (&[Method], &'static str)) -> Result<(), RouteError> {
    if allowed.0.contains(method) {
        Ok(())
    } else {
        Err(RouteError::MethodNotAllowed { allow: allowed.1 })
    }
}

/// Keeps a browser from reading an answer as another type or running anything in it.
pub(crate) fn inert(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX_CSP),
    );
}

/// A short plain-text answer that no cache keeps; an empty body for HEAD.
pub(crate) fn text(
    method: &Method,
    status: StatusCode,
    body: impl Into<bytes::Bytes>,
) -> Response<Body> {
    let body = body.into();
    let len = body.len();
    let mut response = Response::new(if method == Method::HEAD {
        empty()
    } else {
        full(body)
    });
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    inert(h);
    response
}
