//! `POST /_imgrelay/rewrite`: the request body (HTML, or a Hexo post sent as `text/markdown`)
//! streams back rewritten, whatever its size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::stream::{self, Pump, RewriteJob};
use crate::rewrite::charset::charset_param;
use crate::rewrite::{DocKind, RewriteContext};
use crate::server::body::{Body, BoxError};
use crate::server::error::RouteError;
use crate::server::metrics::Metrics;
use crate::server::respond;

pub(crate) fn respond<B>(
    req: Request<B>,
    ctx: &Arc<RewriteContext>,
    metrics: &Arc<Metrics>,
    idle: Duration,
) -> Result<Response<Body>, RouteError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    respond::allow(req.method(), (&[Method::POST], "POST"))?;
    let (parts, body) = req.into_parts();
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/html");
    let mut params = ctype.split(';');
    let essence = params.next().unwrap_or("").trim();
    let kind = if essence.eq_ignore_ascii_case("text/markdown") {
        DocKind::HexoPost
    } else {
        DocKind::Html
    };
    let charset = charset_param(params);
    let reply_type =
        HeaderValue::from_str(ctype).unwrap_or_else(|_| HeaderValue::from_static("text/html"));
    let body = stream::spawn(
        body.map_err(Into::into).boxed_unsync(),
        Pump {
            rewrite: Some(RewriteJob {
                ctx: ctx.clone(),
                kind,
                charset,
            }),
            // A client that stops sending would otherwise hold the request open for good.
            idle,
            metrics: metrics.clone(),
            on_error: Metrics::rewrite_error,
        },
    );
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, reply_type);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    respond::inert(h);
    Ok(response)
}
