//! The HTTP/1.1 front of every client connection. It reads request heads itself and answers the
//! ones it fully understands: `GET` and `HEAD` on HTTP/1.1, in origin form, without a body,
//! upgrade or expectation. A cache hit is written from the variant's ready head and its bytes,
//! allocating nothing; any other such request goes through the routes as hyper would hand it
//! over, and its answer is framed here.
//!
//! Everything else (a request body, an upgrade, `Expect`, HTTP/1.0, HTTP/2, a head the parser
//! refuses or one longer than [`MAX_HEAD`]) hands the connection with the bytes read so far to
//! hyper for the rest of its life, so that hyper's answers and errors stay the ones such clients
//! see. The connection's orders (close when idle, close now) are obeyed as in hyper's loop.

use std::future::Future;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Conn, Handler, InFlight, WatchedIo, ORDER_GRACEFUL, ORDER_KILL};
use crate::server::body::Body;
use crate::server::wire;

/// Longest request head the front reads; a longer one goes to hyper, whose limits answer it.
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Header fields the front parses at most; more go to hyper.
const MAX_HEADERS: usize = 64;
/// Room made in the buffer before each read.
const READ_CHUNK: usize = 4096;

/// How the front left a connection.
pub(super) enum Outcome {
    /// Closed: by the client, by an order, after `Connection: close`, or on an error.
    Closed,
    /// Hyper takes over; these bytes were read and not yet answered.
    HandOff(BytesMut),
}

/// What the bytes read so far hold.
enum Next {
    /// No complete head yet.
    Read,
    HandOff,
    /// Answered from the cache: the head's length and how to answer.
    Hit {
        len: usize,
        shape: Shape,
        answer: (Bytes, Bytes),
        request: InFlight,
    },
    /// For the routes: the head's length and the request.
    Route {
        len: usize,
        shape: Shape,
        req: Request<Empty<Bytes>>,
    },
}

/// What shapes an answer beyond the route's response.
#[derive(Clone, Copy)]
struct Shape {
    head_only: bool,
    /// The client asked to close after this answer.
    close: bool,
}

impl Shape {
    /// An answer written after a close order says so, as hyper's does once keep-alive is off.
    fn closing_if_ordered(mut self, conn: &Conn) -> Shape {
        self.close |= conn.order.load(Ordering::Acquire) >= ORDER_GRACEFUL;
        self
    }
}

/// Serves requests until the connection closes or has to be handed to hyper.
pub(super) async fn serve<H: Handler>(
    io: &mut WatchedIo,
    conn: &Arc<Conn>,
    handler: &Arc<H>,
    peer: SocketAddr,
) -> Outcome {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        // Between answers: a close order ends the connection even while the client keeps
        // requests queued, as hyper's graceful shutdown does.
        if conn.order.load(Ordering::Acquire) >= ORDER_GRACEFUL {
            return close(io).await;
        }
        match examine(&buf, conn, handler.as_ref()) {
            Next::Read => {
                if buf.len() >= MAX_HEAD {
                    return Outcome::HandOff(buf);
                }
                if !read_more(io, conn, &mut buf).await {
                    return Outcome::Closed;
                }
            }
            Next::HandOff => return Outcome::HandOff(buf),
            Next::Hit {
                len,
                shape,
                answer: (head, body),
                request,
            } => {
                buf.advance(len);
                let shape = shape.closing_if_ordered(conn);
                let date = wire::date_line();
                let status = b"HTTP/1.1 200 OK\r\n";
                let end: &[u8] = if shape.close {
                    b"connection: close\r\n\r\n"
                } else {
                    b"\r\n"
                };
                let bytes: &[u8] = if shape.head_only { &[] } else { &body };
                let mut parts = [
                    IoSlice::new(status),
                    IoSlice::new(&date),
                    IoSlice::new(&head),
                    IoSlice::new(end),
                    IoSlice::new(bytes),
                ];
                let sent = send(io, conn, &mut parts).await;
                drop(request);
                if sent.is_err() {
                    return Outcome::Closed;
                }
                if shape.close {
                    return close(io).await;
                }
            }
            Next::Route { len, shape, req } => {
                buf.advance(len);
                let request = InFlight::start(conn);
                let route = handler.clone().handle_read(req, peer);
                let Some(response) = watching(io, conn, &mut buf, route).await else {
                    return Outcome::Closed;
                };
                let kept = answer(io, conn, response, shape.closing_if_ordered(conn)).await;
                drop(request);
                match kept {
                    Ok(true) => {}
                    // The answer is whole: the client sees it end with the connection.
                    Ok(false) => return close(io).await,
                    Err(_) => return Outcome::Closed,
                }
            }
        }
    }
}

/// Ends the connection after a whole answer, write side first, as hyper does.
async fn close(io: &mut WatchedIo) -> Outcome {
    let _ = io.shutdown().await;
    Outcome::Closed
}

/// Reads more of the connection into `buf`; false when it ended or was ordered closed.
async fn read_more(io: &mut WatchedIo, conn: &Conn, buf: &mut BytesMut) -> bool {
    loop {
        // Orders are sticky: one given while a write was waiting is seen here.
        if conn.order.load(Ordering::Acquire) >= ORDER_GRACEFUL {
            return false;
        }
        // Reuses the buffer's space once what it held has been answered.
        buf.reserve(READ_CHUNK);
        // Biased: the read usually completes at once, and an order's waiter is then never
        // registered (nor removed) under the notifier's lock.
        tokio::select! {
            biased;
            read = io.read_buf(buf) => return matches!(read, Ok(n) if n > 0),
            () = conn.wake.notified() => {}
        }
    }
}

/// The route's answer, read from the socket meanwhile as hyper does: a client that hangs up
/// drops the route's work (`None`), which then finishes for the cache alone; what a pipelining
/// client sends meanwhile is kept in `buf` (one read's worth: nothing more is read while it
/// holds bytes).
async fn watching(
    io: &mut WatchedIo,
    conn: &Conn,
    buf: &mut BytesMut,
    route: impl Future<Output = Response<Body>>,
) -> Option<Response<Body>> {
    let mut route = pin!(route);
    loop {
        if conn.order.load(Ordering::Acquire) >= ORDER_KILL {
            return None;
        }
        // As hyper: a hang-up is watched for only while nothing else is queued; bytes already
        // queued are answered first.
        let room = buf.is_empty();
        if room {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            response = route.as_mut() => return Some(response),
            read = io.read_buf(buf), if room => {
                if !matches!(read, Ok(n) if n > 0) {
                    return None;
                }
            }
            () = conn.wake.notified() => {}
        }
    }
}

/// Reads the head at the start of `buf`, and what to do with it.
fn examine<H: Handler>(buf: &[u8], conn: &Arc<Conn>, handler: &H) -> Next {
    if buf.is_empty() {
        return Next::Read;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut fields);
    let len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Next::Read,
        Err(_) => return Next::HandOff,
    };
    let (Some(method), Some(target), Some(1)) = (head.method, head.path, head.version) else {
        return Next::HandOff;
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Next::HandOff,
    };
    if !target.starts_with('/') {
        return Next::HandOff;
    }
    let mut shape = Shape {
        head_only,
        close: false,
    };
    let mut hosts = 0;
    let mut accept = None;
    let mut conditional = false;
    for field in head.headers.iter() {
        let name = field.name;
        let is = |known: &HeaderName| name.eq_ignore_ascii_case(known.as_str());
        if is(&header::CONTENT_LENGTH)
            || is(&header::TRANSFER_ENCODING)
            || is(&header::UPGRADE)
            || is(&header::EXPECT)
        {
            return Next::HandOff;
        }
        if is(&header::CONNECTION) {
            for token in field.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    shape.close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Next::HandOff;
                }
            }
        } else if is(&header::HOST) {
            hosts += 1;
        } else if is(&header::ACCEPT) {
            // The first one, as `HeaderMap::get` reads it.
            accept = accept.or(Some(field.value));
        } else if is(&header::IF_NONE_MATCH) {
            conditional = true;
        }
    }
    // The routes answer what the cache cannot: a revalidation, a missing or doubled Host.
    // A target `http::Uri` would refuse goes the routes' way, which hands it to hyper's 400.
    if hosts == 1 && !conditional && target.bytes().all(uri_byte) {
        let started = Instant::now();
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        if let Some(variant) = handler.cached(path, accept) {
            let request = InFlight::start(conn);
            handler.answered(method, path, started.elapsed());
            return Next::Hit {
                len,
                shape,
                answer: (variant.hit_head.clone(), variant.bytes.clone()),
                request,
            };
        }
    }
    match route_request(&buf[..len], method, target, head.headers) {
        Some(req) => Next::Route { len, shape, req },
        None => Next::HandOff,
    }
}

/// Bytes a path and query may hold as `http::Uri` reads them, conservatively: unreserved,
/// sub-delimiters, `:@/?%`.
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// The request as the routes take it; `None` for what `http` does not represent, which hyper
/// then answers.
fn route_request(
    raw: &[u8],
    method: &str,
    target: &str,
    fields: &[httparse::Header<'_>],
) -> Option<Request<Empty<Bytes>>> {
    let copy = Bytes::copy_from_slice(raw);
    // The parser's slices point into `raw`; the request shares the copy's bytes at the same places.
    let shared = |part: &[u8]| {
        let start = part.as_ptr().addr().checked_sub(raw.as_ptr().addr())?;
        let end = start.checked_add(part.len())?;
        (end <= copy.len()).then(|| copy.slice(start..end))
    };
    let method = if method == "HEAD" {
        Method::HEAD
    } else {
        Method::GET
    };
    let uri = Uri::from_maybe_shared(shared(target.as_bytes())?).ok()?;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_maybe_shared(shared(field.value)?).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(Empty::new());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

/// How an answer's body is delimited on the wire.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Writes a route's answer; `Ok(true)` when the connection can carry another request.
async fn answer(
    io: &mut WatchedIo,
    conn: &Conn,
    response: Response<Body>,
    shape: Shape,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodiless = shape.head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let close = shape.close || closes(&parts.headers);
    let mut head = BytesMut::with_capacity(512);
    wire::status_line(&mut head, status);
    if !parts.headers.contains_key(header::DATE) {
        head.put_slice(&wire::date_line());
    }
    wire::fields(&mut head, &parts.headers);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let framing = if bodiless {
        Framing::None
    } else if let Some(len) = declared {
        Framing::Length(len)
    } else if let Some(len) = hyper::body::Body::size_hint(&body).exact() {
        let _ = write!((&mut head).writer(), "content-length: {len}\r\n");
        Framing::Length(len)
    } else {
        head.put_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if close && !parts.headers.contains_key(header::CONNECTION) {
        head.put_slice(b"connection: close\r\n");
    }
    head.put_slice(b"\r\n");
    let mut head = Some(head.freeze());
    let mut left = match framing {
        Framing::None => {
            send(
                io,
                conn,
                &mut [IoSlice::new(head.as_deref().unwrap_or(&[]))],
            )
            .await?;
            return Ok(!close);
        }
        Framing::Length(len) => Some(len),
        Framing::Chunked => None,
    };
    loop {
        // The head goes with the first bytes when they are ready; otherwise it goes now, so the
        // client learns the status while a slow body (an origin's page) is on its way.
        let ready = match &head {
            Some(_) => body.frame().now_or_never(),
            None => None,
        };
        let next = match ready {
            Some(next) => next,
            None => {
                if let Some(pending) = head.take() {
                    send(io, conn, &mut [IoSlice::new(&pending)]).await?;
                }
                until_killed(conn, body.frame()).await?
            }
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not sent
        };
        if data.is_empty() {
            continue;
        }
        let pending = head.take().unwrap_or_default();
        match &mut left {
            Some(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or_else(|| io::Error::other("body longer than its Content-Length"))?;
                send(io, conn, &mut [IoSlice::new(&pending), IoSlice::new(&data)]).await?;
            }
            None => {
                let mut size = [0u8; 18];
                let mut out = &mut size[..];
                let _ = write!(out, "{:x}\r\n", data.len());
                let room = out.len();
                let written = size.len() - room;
                send(
                    io,
                    conn,
                    &mut [
                        IoSlice::new(&pending),
                        IoSlice::new(&size[..written]),
                        IoSlice::new(&data),
                        IoSlice::new(b"\r\n"),
                    ],
                )
                .await?;
            }
        }
    }
    let pending = head.take().unwrap_or_default();
    match left {
        Some(0) => send(io, conn, &mut [IoSlice::new(&pending)]).await?,
        // The client would wait for the rest: closing tells it the answer broke off.
        Some(_) => return Err(io::Error::other("body shorter than its Content-Length")),
        None => {
            send(
                io,
                conn,
                &mut [IoSlice::new(&pending), IoSlice::new(b"0\r\n\r\n")],
            )
            .await?
        }
    }
    Ok(!close)
}

/// Whether the answer's own `Connection` field closes the connection.
fn closes(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// Writes all of `parts`, unless the connection is ordered killed meanwhile.
async fn send(io: &mut WatchedIo, conn: &Conn, parts: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut parts = parts;
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = until_killed(conn, io.write_vectored(parts)).await??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    Ok(())
}

/// `work`'s output, or an error once the connection is ordered killed (a client that stopped
/// reading, a shutdown past its grace).
async fn until_killed<F: Future>(conn: &Conn, work: F) -> io::Result<F::Output> {
    let mut work = pin!(work);
    loop {
        if conn.order.load(Ordering::Acquire) >= ORDER_KILL {
            return Err(io::Error::other("connection ordered closed"));
        }
        // Biased for the same reason as `read_more`: a write that completes at once never waits
        // on the notifier.
        tokio::select! {
            biased;
            out = work.as_mut() => return Ok(out),
            () = conn.wake.notified() => {}
        }
    }
}
