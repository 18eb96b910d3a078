//! Client connections: accepted within a cap, watched for the timeouts that keep an idle or
//! hostile client from holding a socket, and closed idle-first when the cap is reached.
//!
//! Each connection is read by the HTTP/1.1 front (`front`), which answers cache hits and other
//! bodyless requests itself and hands whatever else it meets to hyper.
//!
//! Every connection registers a small [`Conn`] record. Requests mark it busy from the moment
//! their head is parsed until their response body is dropped, and its socket notes since when a
//! write has been blocked. One sweeper task per listener reads the records and orders a
//! connection closed when:
//! - no request head arrived within `header_timeout` of accept (also covers a client that
//!   never sends a byte, which hyper's own header timer does not see before protocol detection);
//! - it sat idle between requests longer than `keepalive_timeout` (HTTP/1.1 and HTTP/2 alike;
//!   hyper's HTTP/1 header timer, set to the same value, also bounds a later slow head);
//! - a response write stayed blocked longer than `send_timeout` (a client that does not read).
//!
//! A worker thread that has served for longer than its burst without sleeping offers its core
//! to other threads at the end of a request (`burst`).
//!
//! When the cap is reached, the accept loop closes the longest-idle connection and waits for a
//! slot, as nginx reuses its keep-alive connections; with every connection busy, new clients
//! wait in the kernel's backlog.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

pub(crate) mod burst;
mod front;

use super::body::{Body, Holding};
use super::image::Variant;
use super::metrics::Metrics;
use crate::sync::lock;

/// Bounds on the connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub send_timeout: Duration,
    pub http2_ping_interval: Duration,
}

/// Why the server closed a connection, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    HeaderTimeout,
    Idle,
    SendTimeout,
    /// Closed idle to make room for a new client at the cap.
    Evicted,
}

impl Close {
    fn name(self) -> &'static str {
        match self {
            Close::HeaderTimeout => "header_timeout",
            Close::Idle => "idle",
            Close::SendTimeout => "send_timeout",
            Close::Evicted => "evicted",
        }
    }
}

/// Orders a connection task follows.
const ORDER_NONE: u8 = 0;
/// Finish what is in flight, then close (hyper's graceful shutdown).
const ORDER_GRACEFUL: u8 = 1;
/// Drop the connection now.
const ORDER_KILL: u8 = 2;

/// Milliseconds since the listener started: one clock for every record, cheap to store.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        // +1 so that 0 can mean "never" in the records.
        self.0.elapsed().as_millis() as u64 + 1
    }
}

/// What the sweeper knows of one connection.
struct Conn {
    clock: Clock,
    accepted: u64,
    requests: AtomicU64,
    in_flight: AtomicU32,
    /// When the last request ended.
    last_done: AtomicU64,
    /// Since when a write has been waiting for the client to read (0: not blocked).
    write_blocked: AtomicU64,
    order: AtomicU8,
    /// When the sweeper asked for a graceful close.
    ordered_at: AtomicU64,
    wake: Notify,
}

impl Conn {
    fn new(clock: Clock) -> Conn {
        let now = clock.now();
        Conn {
            clock,
            accepted: now,
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            last_done: AtomicU64::new(now),
            write_blocked: AtomicU64::new(0),
            order: AtomicU8::new(ORDER_NONE),
            ordered_at: AtomicU64::new(0),
            wake: Notify::new(),
        }
    }

    /// Raises the order (never lowers it) and wakes the connection task; true when it changed.
    fn command(&self, order: u8) -> bool {
        let previous = self.order.fetch_max(order, Ordering::AcqRel);
        if previous < order {
            self.ordered_at.store(self.clock.now(), Ordering::Relaxed);
            self.wake.notify_one();
            true
        } else {
            false
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// What the sweeper should do with this connection now.
    fn verdict(&self, now: u64, limits: &ConnLimits) -> Option<(u8, Close)> {
        let ms = |d: Duration| d.as_millis() as u64;
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        if blocked != 0 && now.saturating_sub(blocked) >= ms(limits.send_timeout) {
            return Some((ORDER_KILL, Close::SendTimeout));
        }
        if !self.idle() {
            return None;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return (now.saturating_sub(self.accepted) >= ms(limits.header_timeout))
                .then_some((ORDER_KILL, Close::HeaderTimeout));
        }
        let idle_for = now.saturating_sub(self.last_done.load(Ordering::Relaxed));
        if idle_for < ms(limits.keepalive_timeout) {
            return None;
        }
        // A graceful close of an idle connection should be immediate; one that lingers (a
        // half-sent HTTP/2 frame, say) is dropped.
        let graceful_since = self.ordered_at.load(Ordering::Relaxed);
        if self.order.load(Ordering::Relaxed) >= ORDER_GRACEFUL
            && graceful_since != 0
            && now.saturating_sub(graceful_since) >= ms(limits.header_timeout)
        {
            return Some((ORDER_KILL, Close::Idle));
        }
        Some((ORDER_GRACEFUL, Close::Idle))
    }
}

/// Marks a connection busy for as long as one request (and its response body) lives.
pub(crate) struct InFlight(Arc<Conn>);

impl InFlight {
    fn start(conn: &Arc<Conn>) -> InFlight {
        conn.requests.fetch_add(1, Ordering::Relaxed);
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_done
            .store(self.0.clock.now(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        burst::request_done();
    }
}

/// A response body that keeps its connection marked busy until hyper has sent all of it (or
/// given up on it).
pub(crate) type TrackedBody = Holding<Body, InFlight>;

/// The client socket, noting since when a write has been blocked.
struct WatchedIo {
    stream: TcpStream,
    conn: Arc<Conn>,
    /// What the front read and left unanswered when it handed the connection to hyper: read
    /// again before the socket.
    replay: BytesMut,
}

impl WatchedIo {
    fn note<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let blocked = &self.conn.write_blocked;
        match poll {
            Poll::Pending => {
                if blocked.load(Ordering::Relaxed) == 0 {
                    blocked.store(self.conn.clock.now(), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {
                if blocked.load(Ordering::Relaxed) != 0 {
                    blocked.store(0, Ordering::Relaxed);
                }
            }
        }
        poll
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replay.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.replay.len().min(buf.remaining());
        buf.put_slice(&self.replay[..n]);
        self.replay.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.note(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The open connections of one listener.
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry.conns).remove(&self.id);
    }
}

impl Registry {
    fn register(self: &Arc<Self>, conn: Arc<Conn>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.conns).insert(id, conn);
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// Orders the longest-idle connection closed; false when every connection is busy.
    fn evict_one(&self) -> bool {
        let conns = lock(&self.conns);
        let victim = conns
            .values()
            .filter(|c| c.idle() && c.order.load(Ordering::Relaxed) < ORDER_KILL)
            .min_by_key(|c| c.last_done.load(Ordering::Relaxed));
        victim.is_some_and(|c| c.command(ORDER_KILL))
    }

    fn sweep(&self, limits: &ConnLimits, clock: Clock, metrics: &Metrics, plane: &'static str) {
        let now = clock.now();
        let conns = lock(&self.conns);
        for conn in conns.values() {
            if let Some((order, reason)) = conn.verdict(now, limits) {
                if conn.command(order) {
                    metrics.connection_closed(plane, reason.name());
                }
            }
        }
    }

    fn graceful_all(&self) {
        for conn in lock(&self.conns).values() {
            conn.command(ORDER_GRACEFUL);
        }
    }
}

/// Logs a repeating failure at most once a second, with how many were not logged.
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// `Some(suppressed since the last line)` when a line is due at `now`.
    fn due(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    fn accept_failed(&mut self, error: &io::Error) {
        if let Some(suppressed) = self.due(Instant::now()) {
            tracing::warn!(error = %error, suppressed, "accept failed");
        }
    }
}

/// What a listener serves: each request is handed to `handle` (read by hyper) or `handle_read`
/// (read by the front, no body) with the client's address, after the front asked `cached`.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;

    fn handle_read(
        self: Arc<Self>,
        req: Request<Empty<Bytes>>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// The cached variant that answers a well-formed `GET` or `HEAD` of `path` (query cut off)
    /// with this `Accept`, counted as a cache hit; `None` sends the request to `handle_read`.
    fn cached(&self, path: &str, accept: Option<&[u8]>) -> Option<Arc<Variant>>;

    /// Logs and counts a request answered from [`Handler::cached`].
    fn answered(&self, method: &str, path: &str, elapsed: Duration);
}

/// One listener with its cap and timeouts.
pub(crate) struct Listener<H> {
    pub listener: TcpListener,
    pub limits: ConnLimits,
    pub handler: Arc<H>,
    /// Names the listener in metrics and logs ("public", "control").
    pub plane: &'static str,
}

/// Connection slots of a running listener, so shutdown can wait for them to drain.
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    max: u32,
}

impl Slots {
    /// Resolves when every connection of the listener has closed.
    pub(crate) async fn drained(&self) {
        let _ = self.permits.acquire_many(self.max).await;
    }
}

impl<H: Handler> Listener<H> {
    /// Serves until `stop` turns true, then asks every connection to finish gracefully and
    /// returns (the caller waits on the [`Slots`] for them to drain).
    pub(crate) fn spawn(self, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) -> Slots {
        let max = u32::try_from(self.limits.max_connections)
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        let permits = Arc::new(Semaphore::new(max as usize));
        let registry = Arc::new(Registry {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let slots = Slots {
            permits: permits.clone(),
            max,
        };
        let clock = Clock(Instant::now());
        tokio::spawn(sweep_loop(
            registry.clone(),
            self.limits,
            clock,
            metrics.clone(),
            self.plane,
            stop.clone(),
        ));
        tokio::spawn(self.accept_loop(permits, registry, clock, metrics, stop));
        slots
    }

    async fn accept_loop(
        self,
        permits: Arc<Semaphore>,
        registry: Arc<Registry>,
        clock: Clock,
        metrics: Arc<Metrics>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Runs from the end of one response to the next complete head: the keep-alive
            // bound for HTTP/1.1, and so also the bound for a slow later head.
            .header_read_timeout(self.limits.keepalive_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.limits.http2_ping_interval)
            .keep_alive_timeout(self.limits.http2_ping_interval)
            .max_concurrent_streams(128);
        let builder = Arc::new(builder);
        let mut log = RateLimitedLog {
            last: None,
            suppressed: 0,
        };
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => break,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    metrics.accept_error(self.plane);
                    log.accept_failed(&e);
                    // Out of descriptors: an idle client gives one back; then back off
                    // instead of spinning.
                    if registry.evict_one() {
                        metrics.connection_closed(self.plane, Close::Evicted.name());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let permit = tokio::select! {
                permit = take_slot(&permits, &registry, &metrics, self.plane) => permit,
                _ = stop.wait_for(|s| *s) => break,
            };
            let Some(permit) = permit else { break };
            let _ = stream.set_nodelay(true);
            let conn = Arc::new(Conn::new(clock));
            let registration = registry.register(conn.clone());
            let connection = serve_one(
                &builder,
                stream,
                peer,
                conn,
                self.handler.clone(),
                stop.clone(),
            );
            let metrics = metrics.clone();
            let plane = self.plane;
            metrics.connection_opened(plane);
            tokio::spawn(async move {
                connection.await;
                drop(registration);
                metrics.connection_ended(plane);
                drop(permit);
            });
        }
        registry.graceful_all();
    }
}

/// A slot for one more connection, closing idle ones while none is free.
async fn take_slot(
    permits: &Arc<Semaphore>,
    registry: &Registry,
    metrics: &Metrics,
    plane: &'static str,
) -> Option<OwnedSemaphorePermit> {
    loop {
        match permits.clone().try_acquire_owned() {
            Ok(permit) => return Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        if registry.evict_one() {
            metrics.connection_closed(plane, Close::Evicted.name());
        }
        // Either a closing connection frees its slot, or (every connection busy) this client
        // waits; evicting again later catches connections that have gone idle since.
        tokio::select! {
            permit = permits.clone().acquire_owned() => return permit.ok(),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

fn serve_one<H: Handler>(
    builder: &Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let builder = builder.clone();
    async move {
        let mut io = WatchedIo {
            stream,
            conn: conn.clone(),
            replay: BytesMut::new(),
        };
        io.replay = match front::serve(&mut io, &conn, &handler, peer).await {
            front::Outcome::Closed => return,
            front::Outcome::HandOff(read) => read,
        };
        let io = TokioIo::new(io);
        let service_conn = conn.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let request = InFlight::start(&service_conn);
            let handler = handler.clone();
            async move {
                let response = handler.handle(req, peer).await;
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, request)))
            }
        });
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        // An order the front saw (and whose wake-up it took) still holds for hyper.
        let mut graceful = false;
        match conn.order.load(Ordering::Acquire) {
            ORDER_KILL => return,
            ORDER_GRACEFUL => {
                graceful = true;
                connection.as_mut().graceful_shutdown();
            }
            _ => {}
        }
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = conn.wake.notified() => {
                    match conn.order.load(Ordering::Acquire) {
                        ORDER_KILL => return,
                        ORDER_GRACEFUL if !graceful => {
                            graceful = true;
                            connection.as_mut().graceful_shutdown();
                        }
                        _ => {}
                    }
                }
                _ = stop.wait_for(|s| *s), if !graceful => {
                    graceful = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

async fn sweep_loop(
    registry: Arc<Registry>,
    limits: ConnLimits,
    clock: Clock,
    metrics: Arc<Metrics>,
    plane: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let shortest = limits
        .header_timeout
        .min(limits.keepalive_timeout)
        .min(limits.send_timeout);
    let tick = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => registry.sweep(&limits, clock, &metrics, plane),
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Draining: keep dropping clients that stopped reading, so shutdown is not held up.
    let drain = ConnLimits {
        header_timeout: limits.header_timeout,
        keepalive_timeout: Duration::ZERO,
        ..limits
    };
    loop {
        interval.tick().await;
        registry.sweep(&drain, clock, &metrics, plane);
        if lock(&registry.conns).is_empty() {
            return;
        }
    }
}

/// The number of client connections the process can hold open: `wanted`, or fewer when the
/// file-descriptor limit (raised to its hard maximum first) leaves less after `reserve`
/// descriptors for upstream sockets, files and the control plane.
pub(crate) fn connection_budget(wanted: usize, reserve: u64) -> (usize, Option<u64>) {
    let limit = rlimit::increase_nofile_limit(u64::MAX).ok();
    match limit {
        Some(limit) => {
            let room = limit.saturating_sub(reserve).max(16);
            let cap = wanted.min(usize::try_from(room).unwrap_or(usize::MAX));
            (cap, Some(limit))
        }
        None => (wanted, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            max_connections: 10,
            header_timeout: Duration::from_millis(100),
            keepalive_timeout: Duration::from_millis(300),
            send_timeout: Duration::from_millis(200),
            http2_ping_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn verdicts_follow_the_connection_state() {
        let clock = Clock(Instant::now());
        let conn = Arc::new(Conn::new(clock));
        let t0 = conn.accepted;
        let l = limits();
        assert_eq!(conn.verdict(t0 + 50, &l), None);
        assert_eq!(
            conn.verdict(t0 + 100, &l),
            Some((ORDER_KILL, Close::HeaderTimeout))
        );
        let request = InFlight::start(&conn);
        // Busy: no idle or header verdict, however long.
        assert_eq!(conn.verdict(t0 + 10_000, &l), None);
        conn.write_blocked.store(t0 + 10_000, Ordering::Relaxed);
        assert_eq!(
            conn.verdict(t0 + 10_200, &l),
            Some((ORDER_KILL, Close::SendTimeout))
        );
        conn.write_blocked.store(0, Ordering::Relaxed);
        drop(request);
        let done = conn.last_done.load(Ordering::Relaxed);
        assert_eq!(conn.verdict(done + 299, &l), None);
        assert_eq!(
            conn.verdict(done + 300, &l),
            Some((ORDER_GRACEFUL, Close::Idle))
        );
        assert!(conn.command(ORDER_GRACEFUL));
        assert!(!conn.command(ORDER_GRACEFUL));
        let at = conn.ordered_at.load(Ordering::Relaxed);
        // Still idle and still open one header timeout after the graceful order: dropped.
        let later = (done + 300).max(at + 100);
        assert_eq!(conn.verdict(later, &l), Some((ORDER_KILL, Close::Idle)));
    }

    #[test]
    fn accept_failures_are_logged_once_a_second() {
        let mut log = RateLimitedLog {
            last: None,
            suppressed: 0,
        };
        let t0 = Instant::now();
        let lines: Vec<u64> = (0..3000u64)
            .filter_map(|i| log.due(t0 + Duration::from_millis(i)))
            .collect();
        // 3 s of failures, one every millisecond: three lines, each counting the silent ones.
        assert_eq!(lines, [0, 999, 999]);
    }

    #[test]
    fn eviction_picks_the_longest_idle_and_spares_busy_ones() {
        let clock = Clock(Instant::now());
        let registry = Arc::new(Registry {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let busy = Arc::new(Conn::new(clock));
        busy.last_done.store(1, Ordering::Relaxed);
        let _request = InFlight::start(&busy);
        busy.last_done.store(1, Ordering::Relaxed);
        let old = Arc::new(Conn::new(clock));
        old.last_done.store(5, Ordering::Relaxed);
        let new = Arc::new(Conn::new(clock));
        new.last_done.store(9, Ordering::Relaxed);
        let _r = [
            registry.register(busy.clone()),
            registry.register(old.clone()),
            registry.register(new.clone()),
        ];
        assert!(registry.evict_one());
        assert_eq!(old.order.load(Ordering::Relaxed), ORDER_KILL);
        assert_eq!(new.order.load(Ordering::Relaxed), ORDER_NONE);
        assert!(registry.evict_one());
        assert_eq!(new.order.load(Ordering::Relaxed), ORDER_KILL);
        assert!(
            !registry.evict_one(),
            "the busy connection is never evicted"
        );
        assert_eq!(busy.order.load(Ordering::Relaxed), ORDER_NONE);
    }
}
