//! Connection limits through a real `imgrelay serve` on 127.0.0.1: clients that never send,
//! idle keep-alive connections (HTTP/1.1 and HTTP/2), clients that stop reading, request bodies
//! trickled or paused, and more connections than the cap or the open-file limit allows.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Blog, Origin, Server};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short bounds so that each test takes seconds.
const LIMITS: &[(&str, &str)] = &[
    ("SERVER__HEADER_TIMEOUT_S", "1"),
    ("SERVER__KEEPALIVE_TIMEOUT_S", "2"),
    ("SERVER__SEND_TIMEOUT_S", "1"),
    ("SERVER__CLIENT_IDLE_TIMEOUT_S", "1"),
    ("SERVER__CLIENT_BODY_MIN_RATE", "100"),
];

async fn start(extra: &[(&str, &str)]) -> (Origin, Blog, Server) {
    let origin = Origin::start().await;
    let blog = Blog::start().await;
    let url = blog.url();
    let mut env = LIMITS.to_vec();
    env.extend_from_slice(extra);
    env.push(("ORIGIN__URL", &url));
    let server = Server::start(&origin, &env);
    (origin, blog, server)
}

/// Reads until the server closes the connection (EOF or reset); returns the time it took
/// and the bytes read.
async fn until_closed(socket: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let read = tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            socket.read(&mut buf),
        )
        .await
        .unwrap_or_else(|_| panic!("connection still open after {limit:?}"));
        match read {
            Ok(0) | Err(_) => return (started.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A healthz over a fresh connection; the time from connect to the answer.
async fn healthz_time(server: &Server) -> Duration {
    let started = Instant::now();
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /_imgrelay/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, reply) = until_closed(&mut socket, Duration::from_secs(30)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_is_closed_at_the_header_timeout() {
    let (_o, _b, server) = start(&[]).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let (elapsed, _) = until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // A head sent a byte at a time, never finished, meets the same bound.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    for b in b"GET /_imgrelay/healthz HTTP/1.1\r\nHost: t\r\n" {
        if slow.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let (_, reply) = until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(!String::from_utf8_lossy(&reply).contains(" 200 "));
    let metric = "imgrelay_connections_closed_total{plane=\"public\",reason=\"header_timeout\"}";
    assert!(server.metric(metric).await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let (_o, _b, server) = start(&[]).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /_imgrelay/healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // The answer is read; from now on the connection is idle.
    let (elapsed, _) = until_closed(&mut socket, Duration::from_secs(10)).await;
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    let (_o, _b, server) = start(&[]).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    let req = Request::get(format!("http://{}/_imgrelay/healthz", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let reply = sender.send_request(req).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    reply.into_body().collect().await.unwrap();
    let idle_since = Instant::now();
    // The server ends the idle connection (GOAWAY, then close): the client's side completes.
    tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("HTTP/2 connection closed within 10 s")
        .unwrap()
        .ok();
    let elapsed = idle_since.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_at_the_send_timeout() {
    let (_o, _b, server) = start(&[]).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    // 100 MB of HTML through the page proxy, and the client reads none of it for 4 s.
    socket
        .write_all(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, got) = until_closed(&mut socket, Duration::from_secs(20)).await;
    assert!(
        got.len() < common::blog::HUGE_BYTES / 2,
        "{} bytes arrived: the server kept writing",
        got.len()
    );
    let metric = "imgrelay_connections_closed_total{plane=\"public\",reason=\"send_timeout\"}";
    assert_eq!(server.metric(metric).await, 1);
}

/// A POST to the page proxy's `/echo` whose body is sent `piece` bytes every `pause`.
/// The answer is read while the body is still being sent, as a browser would.
async fn paced_post(server: &Server, total: usize, piece: usize, pause: Duration) -> String {
    let socket = TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\
         Content-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await.unwrap();
        let body = vec![b'x'; total];
        for chunk in body.chunks(piece) {
            if write.write_all(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
        // Keep the write side open until the answer is read.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut reply))
        .await
        .expect("answer within 30 s");
    writer.abort();
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_body_gets_408() {
    let (_o, _b, server) = start(&[]).await;
    let started = Instant::now();
    // One byte every 0.5 s: never a pause over the idle timeout, but far under 100 B/s.
    let reply = paced_post(&server, 1000, 1, Duration::from_millis(500)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let metric = "imgrelay_page_proxy_errors_total{kind=\"client_body_timeout\"}";
    assert_eq!(server.metric(metric).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_upload_reaches_the_origin() {
    // The origin must answer within 1 s of the upload's end, not of its start.
    let (_o, _b, server) = start(&[("ORIGIN__TIMEOUT_MS", "1000")]).await;
    let started = Instant::now();
    let reply = paced_post(&server, 20 * 1024, 1024, Duration::from_millis(250)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("len=20480"),
        "the origin saw the whole body: {reply}"
    );
    assert!(started.elapsed() >= Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_idle_connections_make_room_for_new_clients() {
    let (_o, _b, server) = start(&[
        ("SERVER__MAX_CONNECTIONS", "20"),
        ("SERVER__HEADER_TIMEOUT_S", "60"),
    ])
    .await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let elapsed = healthz_time(&server).await;
    assert!(elapsed < Duration::from_secs(1), "healthz took {elapsed:?}");
    let metric = "imgrelay_connections_closed_total{plane=\"public\",reason=\"evicted\"}";
    assert!(server.metric(metric).await >= 20);
    assert!(
        server
            .metric("imgrelay_connections_open{plane=\"public\"}")
            .await
            <= 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_idle_sockets_than_file_descriptors_do_not_block_healthz() {
    let origin = Origin::start().await;
    let server = Server::start_under(
        &origin,
        &[("SERVER__HEADER_TIMEOUT_S", "60")],
        &["bash", "-c", "ulimit -n 256 && exec \"$@\"", "--"],
    );
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let elapsed = healthz_time(&server).await;
    assert!(elapsed < Duration::from_secs(1), "healthz took {elapsed:?}");
    let lowered = server.wait_for_log(|l| l.contains("server.max_connections lowered"));
    assert!(lowered.contains("fd_limit=256"), "{lowered}");
    let accept_failures = server
        .logs()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        accept_failures <= 2,
        "{accept_failures} accept failures logged"
    );
}
