//! The HTTP/1.1 front of the public listener, spoken to byte by byte: kept-alive and pipelined
//! requests, HEAD, `Connection: close`, revalidation, malformed heads, and the hand-off to hyper
//! for what the front does not answer itself (a body, HTTP/1.0, an upgrade, a huge head).

mod common;

use std::time::Duration;

use common::{upstream, Origin, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer as it came off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client connection that reads answers one by one, keeping what it read beyond each.
struct Wire {
    socket: TcpStream,
    read: Vec<u8>,
}

impl Wire {
    async fn open(server: &Server) -> Wire {
        Wire {
            socket: TcpStream::connect(server.addr).await.unwrap(),
            read: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.unwrap();
    }

    /// More bytes, or `false` at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), self.socket.read(&mut chunk))
            .await
            .expect("an answer within 20 s")
            .unwrap_or(0);
        self.read.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next answer; `head_only` for the answer to a HEAD.
    async fn answer(&mut self, head_only: bool) -> Answer {
        let (status, headers, len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut fields);
            match response
                .parse(&self.read)
                .expect("a well-formed answer head")
            {
                httparse::Status::Complete(len) => {
                    let headers = response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (response.code.unwrap(), headers, len);
                }
                httparse::Status::Partial => assert!(self.fill().await, "closed mid-head"),
            }
        };
        self.read.drain(..len);
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
            chunked: false,
        };
        if head_only || status == 304 || status == 204 {
            return answer;
        }
        if let Some(len) = answer.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.read.len() < len {
                assert!(self.fill().await, "closed mid-body");
            }
            answer.body = self.read.drain(..len).collect();
        } else {
            assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
            answer.chunked = true;
            loop {
                let line_end = loop {
                    if let Some(i) = self.read.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "closed mid-chunk");
                };
                let size = std::str::from_utf8(&self.read[..line_end]).unwrap();
                let size = usize::from_str_radix(size, 16).unwrap();
                while self.read.len() < line_end + 2 + size + 2 {
                    assert!(self.fill().await, "closed mid-chunk");
                }
                self.read.drain(..line_end + 2);
                answer.body.extend(self.read.drain(..size));
                assert_eq!(self.read.drain(..2).collect::<Vec<_>>(), b"\r\n");
                if size == 0 {
                    break;
                }
            }
        }
        answer
    }

    /// Whether the server closed the connection (nothing more arrives).
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.read.is_empty()
    }
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: imgrelay.test\r\n{extra}\r\n").into_bytes()
}

async fn start() -> (Origin, Server, String) {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let path = server.path(&upstream("photo-640x422.jpg"), "320x211");
    (origin, server, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_on_one_connection_match_the_miss_and_pipeline_in_order() {
    let (_origin, server, path) = start().await;
    let mut wire = Wire::open(&server).await;
    wire.send(&get(&path, "")).await;
    let miss = wire.answer(false).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.header("x-cache"), Some("MISS"));

    wire.send(&get(&path, "")).await;
    let hit = wire.answer(false).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.body, miss.body);
    // The same fields as the miss, the cache outcome aside, each once, Date included.
    let names = |a: &Answer| {
        let mut n: Vec<String> = a
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .filter(|n| n != "x-cache")
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&hit), names(&miss));
    assert!(names(&hit).contains(&"date".to_string()));
    for name in [
        "etag",
        "content-type",
        "content-length",
        "cache-control",
        "vary",
    ] {
        assert_eq!(hit.header(name), miss.header(name), "{name}");
    }

    // Five requests in one write, with a HEAD in the middle: five answers in order.
    let mut batch = Vec::new();
    for i in 0..5 {
        if i == 2 {
            batch.extend(format!("HEAD {path} HTTP/1.1\r\nHost: imgrelay.test\r\n\r\n").bytes());
        } else {
            batch.extend(get(&path, "Accept: image/webp,*/*\r\n"));
        }
    }
    wire.send(&batch).await;
    for i in 0..5 {
        let answer = wire.answer(i == 2).await;
        assert_eq!(answer.status, 200, "answer {i}");
        if i == 2 {
            assert_eq!(answer.header("content-type"), Some("image/jpeg"));
            assert_eq!(
                answer.header("content-length"),
                Some(miss.body.len().to_string().as_str())
            );
        } else {
            assert_eq!(answer.header("content-type"), Some("image/webp"));
            assert!(answer.body.starts_with(b"RIFF"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_byte_by_byte_is_answered() {
    let (_origin, server, path) = start().await;
    let mut wire = Wire::open(&server).await;
    for byte in get(&path, "") {
        wire.send(&[byte]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(wire.answer(false).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_honoured_after_the_answer() {
    let (_origin, server, path) = start().await;
    for _ in 0..2 {
        // A miss, then a hit: both close.
        let mut wire = Wire::open(&server).await;
        wire.send(&get(&path, "Connection: close\r\n")).await;
        let answer = wire.answer(false).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(wire.closed().await);
    }
    let mut wire = Wire::open(&server).await;
    wire.send(&get(
        "/_imgrelay/healthz",
        "Connection: keep-alive, close\r\n",
    ))
    .await;
    let answer = wire.answer(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(wire.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_and_bad_hosts_go_through_the_routes() {
    let (_origin, server, path) = start().await;
    let mut wire = Wire::open(&server).await;
    wire.send(&get(&path, "")).await;
    let first = wire.answer(false).await;
    let etag = first.header("etag").unwrap().to_string();
    wire.send(&get(&path, &format!("If-None-Match: {etag}\r\n")))
        .await;
    let revalidated = wire.answer(false).await;
    assert_eq!(revalidated.status, 304);
    assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
    // A cached path with two Hosts, or none, is still refused.
    wire.send(format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n").as_bytes())
        .await;
    assert_eq!(wire.answer(false).await.status, 400);
    wire.send(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await;
    assert_eq!(wire.answer(false).await.status, 400);
    // A tampered signature on the cached source is not a hit.
    let tampered = {
        let mut p = path.clone().into_bytes();
        let i = "/img/".len();
        p[i] = if p[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(p).unwrap()
    };
    wire.send(&get(&tampered, "")).await;
    assert_eq!(wire.answer(false).await.status, 403);
    // A query `http` refuses is refused on a cached path as on any other.
    let mut odd = Wire::open(&server).await;
    odd.send(&get(&format!("{path}?a<b"), "")).await;
    assert_eq!(odd.answer(false).await.status, 400);
    // The connection is still good.
    wire.send(&get(&path, "")).await;
    assert_eq!(wire.answer(false).await.header("x-cache"), Some("HIT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_front_does_not_take_is_answered_by_hyper_on_the_same_connection() {
    let (_origin, server, path) = start().await;
    let mut wire = Wire::open(&server).await;
    wire.send(&get(&path, "")).await;
    assert_eq!(wire.answer(false).await.status, 200);
    // A request with a body: hyper reads it (the image route refuses the method).
    wire.send(
        format!("POST {path} HTTP/1.1\r\nHost: imgrelay.test\r\nContent-Length: 3\r\n\r\nabc")
            .as_bytes(),
    )
    .await;
    let post = wire.answer(false).await;
    assert_eq!(post.status, 405);
    // After the hand-off the same connection keeps answering, cache hits included.
    wire.send(&get(&path, "")).await;
    let hit = wire.answer(false).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("x-cache"), Some("HIT"));

    // HTTP/1.0, and a head larger than the front reads, are hyper's from the first byte.
    let mut wire = Wire::open(&server).await;
    wire.send(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await;
    let old = wire.answer(false).await;
    assert_eq!(old.status, 200);
    let mut wire = Wire::open(&server).await;
    let big = format!("X-Padding: {}\r\n", "p".repeat(20_000));
    wire.send(&get(&path, &big)).await;
    let answer = wire.answer(false).await;
    assert_eq!(answer.status, 200);

    // A head no HTTP parser accepts gets hyper's 400, and the server stays up.
    let mut wire = Wire::open(&server).await;
    wire.send(b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(wire.answer(false).await.status, 400);
    let mut wire = Wire::open(&server).await;
    wire.send(&get("/_imgrelay/healthz", "")).await;
    assert_eq!(wire.answer(false).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_a_length_are_chunked() {
    // The page proxy streams rewritten pages: no length is known before the end.
    let origin = Origin::start().await;
    let blog = common::Blog::start().await;
    let server = Server::in_process(&origin, &[("ORIGIN__URL", &blog.url())]);
    let mut wire = Wire::open(&server).await;
    wire.send(&get("/pages/page-utf8.html", "")).await;
    let page = wire.answer(false).await;
    assert_eq!(
        page.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&page.body)
    );
    assert!(page.chunked);
    assert!(common::count(&page.body, b"/img/") > 0, "rewritten");
    // The next request on the connection is read after the last chunk.
    wire.send(&get("/_imgrelay/healthz", "")).await;
    assert_eq!(wire.answer(false).await.status, 200);
}
