//! The HTTP server: routing, one log line per request, graceful shutdown.
//!
//! Routes are matched in [`AppState::route`]; a new route is one more arm there plus a handler
//! returning `Result<Response<Body>, RouteError>`.

pub(crate) mod body;
pub(crate) mod client_body;
pub(crate) mod connections;
pub(crate) mod error;
pub(crate) mod image;
pub(crate) mod metrics;
pub(crate) mod page;
pub(crate) mod respond;
pub(crate) mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::fetch::{FetchSettings, Fetcher};
use crate::rewrite::{RewriteContext, RewriteSettings};
use crate::signing::KeyRing;
use crate::urls::UrlSigner;
use body::{Body, BoxError};
use client_body::{BodyPace, ClientBody};
use connections::{ConnLimits, Handler, Listener};
use error::RouteError;
use image::{ImageRoute, ImageSettings};
use metrics::Metrics;
use page::rewrite_route;
use page::{OriginSettings, PageProxy};

/// Paths under this prefix belong to the service itself.
pub(crate) const INTERNAL_PREFIX: &str = "/_imgrelay/";
/// Longest request path written to the log.
const LOGGED_PATH_CHARS: usize = 120;

/// The client's address, put into each request's extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

/// Which listener a request came in on. The public plane serves images, healthz and the page
/// proxy; the control plane serves what signs URLs or reveals internals (the rewrite endpoint,
/// metrics), so strangers can neither get URLs signed nor read the server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plane {
    Public,
    Control,
}

impl Plane {
    fn name(self) -> &'static str {
        match self {
            Plane::Public => "public",
            Plane::Control => "control",
        }
    }
}

/// Connections the control plane holds at most: it serves operators and scrapers, not readers.
pub(crate) const CONTROL_MAX_CONNECTIONS: usize = 64;

/// Everything the routes share.
pub(crate) struct AppState {
    route_prefix: String,
    image: ImageRoute,
    rewrite: Arc<RewriteContext>,
    /// `None` when no origin is configured.
    page: Option<PageProxy>,
    metrics: Arc<Metrics>,
    body_pace: BodyPace,
    /// The bearer token the control plane wants, when one is configured.
    admin_token: Option<Vec<u8>>,
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

/// What `serve` runs with: every section the server reads, parsed once by the config.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    /// The control plane's address; `None` turns it off.
    pub admin_listen: Option<SocketAddr>,
    /// The bearer token the control plane wants, when one is configured.
    pub admin_token: Option<Vec<u8>>,
    /// The path under which images are answered (the path part of `public_prefix`).
    pub route_prefix: String,
    /// The public listener's bounds, before they are fitted to the open-file limit.
    pub connections: ConnLimits,
    /// How long a worker thread serves without sleeping before it offers its core to other
    /// threads; `None`: never.
    pub worker_burst: Option<Duration>,
    pub body_pace: BodyPace,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    pub image: ImageSettings,
    pub fetch: FetchSettings,
    /// `None` when no origin is configured (page proxy off).
    pub origin: Option<OriginSettings>,
}

impl AppState {
    pub(crate) fn new(
        settings: &ServeSettings,
        rewrite: RewriteSettings,
        keys: KeyRing,
    ) -> AppState {
        let metrics = Arc::new(Metrics::default());
        let signer = UrlSigner::new(keys.clone(), &rewrite.public_prefix);
        let rewrite = RewriteContext::new(rewrite, keys);
        let page = settings
            .origin
            .as_ref()
            .map(|origin| PageProxy::new(origin, rewrite.clone(), metrics.clone()));
        let fetcher = Fetcher::new(settings.fetch.clone());
        AppState {
            route_prefix: settings.route_prefix.clone(),
            image: ImageRoute::new(&settings.image, fetcher, signer, metrics.clone()),
            rewrite,
            page,
            metrics,
            body_pace: settings.body_pace,
            admin_token: settings.admin_token.clone(),
        }
    }

    /// Gives the shared cache, when configured, up to its connect timeout to connect before the
    /// listeners open; without it the server starts anyway, serving from memory and upstream.
    pub(crate) async fn connect_shared_cache(&self) {
        if let Some(shared) = self.image.shared() {
            if !shared.wait_connected().await {
                tracing::warn!(
                    "shared cache not reachable yet; serving from memory and upstream until it is"
                );
            }
        }
    }

    /// Shows in the metrics how many log lines the writer had to drop.
    pub(crate) fn count_log_drops(&self, counter: crate::log_writer::LogDrops) {
        self.metrics.count_log_drops(counter);
    }

    fn classify(&self, plane: Plane, path: &str) -> Route {
        match (plane, path) {
            (_, "/_imgrelay/healthz") => Route::Health,
            (Plane::Control, "/_imgrelay/metrics") => Route::Metrics,
            (Plane::Control, "/_imgrelay/rewrite") => Route::Rewrite,
            (Plane::Control, _) => Route::Other,
            _ if self.image_path(path).is_some() => Route::Image,
            _ if path.starts_with(INTERNAL_PREFIX) || self.page.is_none() => Route::Other,
            _ => Route::Page,
        }
    }

    /// The control plane's token check: constant-time, so timing tells nothing of the token.
    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = &self.admin_token else {
            return true;
        };
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|given| bool::from(given.trim_ascii().ct_eq(token)))
    }

    /// healthz's body. The server is healthy whatever the shared tier's state: without it
    /// images are still served, only slower; the body says so for operators.
    fn health(&self) -> &'static str {
        match self.image.shared() {
            Some(shared) if !shared.up() => "ok\nshared cache: degraded\n",
            Some(_) => "ok\nshared cache: up\n",
            None => "ok\n",
        }
    }

    fn image_path<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.route_prefix.as_str())?
            .strip_prefix('/')
    }

    /// Dispatches one request to its route. The request is owned so that routes which stream
    /// the request body (a page proxy, the rewriter) can take it.
    pub(crate) async fn route<B>(&self, plane: Plane, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let path = req.uri().path();
        let route = self.classify(plane, path);
        let checked = well_formed(&req).and_then(|()| {
            let guarded = plane == Plane::Control && !matches!(route, Route::Health);
            if guarded && !self.authorized(&req) {
                return Err(RouteError::Unauthorized);
            }
            Ok(())
        });
        let result = match checked.map(|()| route) {
            Err(e) => Err(e),
            Ok(route) => match route {
                Route::Image => match self.image_path(path) {
                    Some(rest) => self.image.respond(req.method(), req.headers(), rest).await,
                    None => Err(RouteError::NotFound),
                },
                Route::Health => text(req.method(), self.health()),
                Route::Metrics => {
                    let (transforms, fetches) = self.image.load();
                    let mut body = self
                        .metrics
                        .render(&self.image.caches(), transforms, fetches);
                    if let Some(shared) = self.image.shared() {
                        shared.render_metrics(&mut body);
                    }
                    text(req.method(), body)
                }
                Route::Rewrite => {
                    rewrite_route::respond(req, &self.rewrite, &self.metrics, self.body_pace.idle)
                }
                Route::Page => match &self.page {
                    Some(page) => page.respond(req).await,
                    None => Err(RouteError::NotFound),
                },
                Route::Other => Err(RouteError::NotFound),
            },
        };
        result.unwrap_or_else(|e| {
            if e.fault() != error::Fault::Client {
                tracing::warn!(fault = e.fault().name(), error = %crate::cause::chain(&e), "request failed");
            }
            e.into_response()
        })
    }

    /// Routes, counts and logs one request.
    async fn handle<B>(&self, plane: Plane, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let route = self.classify(plane, req.uri().path());
        let method = req.method().clone();
        // Shares the request's bytes: nothing is copied unless the line is written.
        let uri = req.uri().clone();
        let response = self.route(plane, req).await;
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.response(route.name(), status, elapsed);
        let cache = response
            .headers()
            .get(&respond::X_CACHE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        log_request(method.as_str(), uri.path(), status, elapsed, cache);
        response
    }
}

/// The access line of one request: the same fields whichever path answered it.
fn log_request(method: &str, path: &str, status: u16, elapsed: Duration, cache: &str) {
    tracing::info!(
        method = %method,
        path = %logged_path(path),
        status,
        ms = elapsed.as_millis() as u64,
        cache = %cache,
        "request"
    );
}

/// At most `LOGGED_PATH_CHARS` characters of `path`.
fn logged_path(path: &str) -> &str {
    // No more bytes than that is no more characters either: the usual case, without a scan.
    if path.len() <= LOGGED_PATH_CHARS {
        return path;
    }
    path.char_indices()
        .nth(LOGGED_PATH_CHARS)
        .map_or(path, |(end, _)| &path[..end])
}

/// A read-only text route's answer (healthz, metrics).
fn text(method: &Method, body: impl Into<bytes::Bytes>) -> Result<Response<Body>, RouteError> {
    respond::allow(method, respond::READ)?;
    Ok(respond::text(method, StatusCode::OK, body))
}

/// Rejects what no route should see: TRACE and CONNECT (never forwarded to an origin), and an
/// HTTP/1.1 request without exactly one Host (RFC 9112 §3.2; more than one anywhere).
fn well_formed<B>(req: &Request<B>) -> Result<(), RouteError> {
    if req.method() == Method::TRACE || req.method() == Method::CONNECT {
        return Err(RouteError::MethodNotAllowed {
            allow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        });
    }
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err(RouteError::BadRequest("more than one Host header"));
    }
    if hosts == 0 && req.version() == Version::HTTP_11 {
        return Err(RouteError::BadRequest("HTTP/1.1 request without Host"));
    }
    Ok(())
}

/// One plane's view of the shared state, as its listener serves it.
struct PlaneHandler {
    state: Arc<AppState>,
    plane: Plane,
}

impl Handler for PlaneHandler {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let pace = self.state.body_pace;
        let mut req = req.map(|body| ClientBody::new(body, pace));
        req.extensions_mut().insert(PeerAddr(peer));
        self.state.handle(self.plane, req).await
    }

    async fn handle_read(
        self: Arc<Self>,
        mut req: Request<Empty<Bytes>>,
        peer: SocketAddr,
    ) -> Response<Body> {
        req.extensions_mut().insert(PeerAddr(peer));
        self.state.handle(self.plane, req).await
    }

    fn cached(&self, path: &str, accept: Option<&[u8]>) -> Option<Arc<image::Variant>> {
        if !matches!(self.state.classify(self.plane, path), Route::Image) {
            return None;
        }
        let rest = self.state.image_path(path)?;
        self.state.image.cached(rest, accept)
    }

    fn answered(&self, method: &str, path: &str, elapsed: Duration) {
        let status = StatusCode::OK.as_u16();
        self.state
            .metrics
            .response(Route::Image.name(), status, elapsed);
        log_request(method, path, status, elapsed, "HIT");
    }
}

/// The sockets `serve` listens on.
pub(crate) struct Listeners {
    pub public: TcpListener,
    pub public_limits: ConnLimits,
    /// The control plane, when `server.admin_listen` is set.
    pub control: Option<TcpListener>,
}

/// Serves both planes until `shutdown` resolves, then stops accepting and gives in-flight
/// requests up to `grace` to finish.
pub(crate) async fn serve(
    listeners: Listeners,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = state.metrics.clone();
    let stopping = state.clone();
    let control_limits = ConnLimits {
        max_connections: CONTROL_MAX_CONNECTIONS,
        ..listeners.public_limits
    };
    let mut slots = vec![Listener {
        listener: listeners.public,
        limits: listeners.public_limits,
        handler: Arc::new(PlaneHandler {
            state: state.clone(),
            plane: Plane::Public,
        }),
        plane: Plane::Public.name(),
    }
    .spawn(metrics.clone(), stopped.clone())];
    if let Some(control) = listeners.control {
        slots.push(
            Listener {
                listener: control,
                limits: control_limits,
                handler: Arc::new(PlaneHandler {
                    state,
                    plane: Plane::Control,
                }),
                plane: Plane::Control.name(),
            }
            .spawn(metrics, stopped),
        );
    }
    shutdown.await;
    let _ = stop.send(true);
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    let drained = async {
        for s in &slots {
            s.drained().await;
        }
    };
    tokio::select! {
        () = drained => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    if let Some(shared) = stopping.image.shared() {
        shared.flush().await;
    }
}
