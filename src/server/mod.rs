//! The HTTP server: routing, one log line per request, graceful shutdown.
//!
//! Routes are matched in [`AppState::route`]; a new route is one more arm there plus a handler
//! returning `Result<Response<Body>, RouteError>`.

pub mod body;
pub mod decode;
pub mod error;
pub mod image;
pub mod metrics;
pub mod page_proxy;
pub mod pool;
pub mod rewrite_route;
pub mod stream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::rewrite::RewriteContext;
use crate::signing::KeyRing;
use crate::urls::UrlSigner;
use body::{full, Body, BoxError};
use error::RouteError;
use image::ImageRoute;
use metrics::Metrics;
use page_proxy::PageProxy;

/// Paths under this prefix belong to the service itself.
pub const INTERNAL_PREFIX: &str = "/_imgrelay/";
/// Longest request path written to the log.
const LOGGED_PATH_CHARS: usize = 120;

/// The client's address, put into each request's extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Everything the routes share.
pub struct AppState {
    route_prefix: String,
    image: ImageRoute,
    rewrite: Arc<RewriteContext>,
    /// `None` when no origin is configured.
    page: Option<PageProxy>,
    metrics: Arc<Metrics>,
    /// Longest pause in a request body the service reads itself.
    client_idle: Duration,
}

/// Which route answered, for logs and metrics.
#[derive(Debug, Clone, Copy)]
enum Route {
    Image,
    Health,
    Metrics,
    Rewrite,
    Page,
    Other,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Image => "image",
            Route::Health => "healthz",
            Route::Metrics => "metrics",
            Route::Rewrite => "rewrite",
            Route::Page => "page",
            Route::Other => "other",
        }
    }
}

impl AppState {
    pub fn new(config: &Config, keys: KeyRing) -> Result<AppState, ConfigError> {
        let metrics = Arc::new(Metrics::default());
        let rewrite =
            RewriteContext::new(config, keys.clone()).map_err(|e| ConfigError::Invalid {
                key: "rewrite".into(),
                message: e.to_string(),
            })?;
        let page = PageProxy::new(&config.origin, rewrite.clone(), metrics.clone())?;
        let signer = UrlSigner::new(keys, &config.server.public_prefix);
        Ok(AppState {
            route_prefix: config.server.route_prefix().to_string(),
            image: ImageRoute::new(config, signer, metrics.clone())?,
            rewrite,
            page,
            metrics,
            client_idle: Duration::from_secs(config.server.client_idle_timeout_s),
        })
    }

    fn classify(&self, path: &str) -> Route {
        match path {
            "/_imgrelay/healthz" => Route::Health,
            "/_imgrelay/metrics" => Route::Metrics,
            "/_imgrelay/rewrite" => Route::Rewrite,
            _ if self.image_path(path).is_some() => Route::Image,
            _ if path.starts_with(INTERNAL_PREFIX) || self.page.is_none() => Route::Other,
            _ => Route::Page,
        }
    }

    fn image_path<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.route_prefix.as_str())?
            .strip_prefix('/')
    }

    /// Dispatches one request to its route. The request is owned so that routes which stream
    /// the request body (a page proxy, the rewriter) can take it.
    pub async fn route<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let path = req.uri().path();
        let result = match self.classify(path) {
            Route::Image => match self.image_path(path) {
                Some(rest) => self.image.respond(req.method(), req.headers(), rest).await,
                None => Err(RouteError::NotFound),
            },
            Route::Health => text(req.method(), "ok\n"),
            Route::Metrics => {
                let (transforms, fetches) = self.image.load();
                let body = self
                    .metrics
                    .render(&self.image.caches(), transforms, fetches);
                text(req.method(), body)
            }
            Route::Rewrite => {
                rewrite_route::respond(req, &self.rewrite, &self.metrics, self.client_idle)
            }
            Route::Page => match &self.page {
                Some(page) => page.respond(req).await,
                None => Err(RouteError::NotFound),
            },
            Route::Other => Err(RouteError::NotFound),
        };
        result.unwrap_or_else(|e| {
            if e.fault() != error::Fault::Client {
                tracing::warn!(fault = e.fault().name(), error = %e, "request failed");
            }
            e.into_response()
        })
    }

    /// Routes, counts and logs one request.
    async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let route = self.classify(req.uri().path());
        let method = req.method().clone();
        // Shares the request's bytes: nothing is copied unless the line is written.
        let uri = req.uri().clone();
        let response = self.route(req).await;
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.response(route.name(), status, elapsed);
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            method = %method,
            path = %logged_path(uri.path()),
            status,
            ms = elapsed.as_millis() as u64,
            cache = %cache,
            "request"
        );
        response
    }
}

/// At most `LOGGED_PATH_CHARS` characters of `path`.
fn logged_path(path: &str) -> &str {
    path.char_indices()
        .nth(LOGGED_PATH_CHARS)
        .map_or(path, |(end, _)| &path[..end])
}

fn text(method: &Method, body: impl Into<bytes::Bytes>) -> Result<Response<Body>, RouteError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(RouteError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let body = body.into();
    let len = body.len();
    let mut response = Response::new(if method == Method::HEAD {
        body::empty()
    } else {
        full(body)
    });
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Serves connections from `listener` until `shutdown` resolves, then stops accepting and gives
/// in-flight requests up to `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer lets hyper drop clients that never finish sending their headers.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer));
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(state.handle(req).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
