//! The page proxy and `POST /_imgrelay/rewrite` through a real `imgrelay serve`, a local blog
//! origin and a local image upstream.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::blog::{HUGE_BYTES, TRICKLE_BYTES, TRICKLE_PAUSE, TRICKLE_PIECE, WRAPPED};
use common::{corpus_pages, Blog, Origin, Server};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

async fn start(env: &[(&str, &str)]) -> (Origin, Blog, Server) {
    let origin = Origin::start().await;
    let blog = Blog::start().await;
    let url = blog.url();
    let mut env = env.to_vec();
    env.push(("ORIGIN__URL", &url));
    let server = Server::start(&origin, &env);
    (origin, blog, server)
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and returns the response with its body still streaming.
async fn open(
    server: &Server,
    req: http::request::Builder,
    body: &[u8],
) -> http::Response<Incoming> {
    let uri = req.uri_ref().unwrap().to_string();
    // The rewrite endpoint lives on the control plane.
    let addr = if uri.starts_with("/_imgrelay/") {
        server.admin
    } else {
        server.addr
    };
    let req = req
        .uri(format!("http://{addr}{uri}"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .expect("response head within 30 s")
        .expect("response")
}

fn data(path: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(path),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_pages_come_back_rewritten() {
    let (_origin, blog, server) = start(&[]).await;
    let pages = corpus_pages();
    assert_eq!(pages.len(), 4, "the corpus has four stored pages");
    for page in &pages {
        let path = format!("/pages/{}", page.file);
        let original = data(&format!("articles/pages/{}", page.file));
        let reply = server.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_ne!(reply.body.as_ref(), original.as_slice(), "{path} rewritten");
        let proxied = server.proxied(&reply.body);
        let sources: BTreeSet<String> = proxied
            .iter()
            .map(|(_, r)| r.source.as_str().to_string())
            .collect();
        for want in &page.must_rewrite {
            assert!(sources.contains(want), "{path}: {want} not proxied");
        }
        // Rewritten bodies change length and bytes: no length, weak validator.
        assert_eq!(reply.header("content-length"), "", "{path}");
        assert!(
            reply.header("etag").starts_with("W/\""),
            "{path}: {}",
            reply.header("etag")
        );
        assert_eq!(reply.header("cache-control"), "public, max-age=60");
        // The origin was asked for an uncompressed body.
        let seen = blog.seen(&path).unwrap();
        assert_eq!(seen["accept-encoding"], "identity");

        // HEAD: same head, no body.
        let head = server.request(Method::HEAD, &path, &[]).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-type"), reply.header("content-type"));
        assert_eq!(head.header("etag"), reply.header("etag"));
        assert_eq!(head.header("content-length"), "");
    }
    // The proxied URLs work: one fetched through the same server decodes to an image.
    let reply = server.get("/pages/page-utf8.html").await;
    let (first, _) = server
        .proxied(&reply.body)
        .into_iter()
        .find(|(_, r)| r.source.scheme() == "http")
        .expect("an http upstream");
    let image = server.get(&first).await;
    assert_eq!(image.status, StatusCode::OK, "{first}");
    assert!(image.header("content-type").starts_with("image/"));

    let metrics =
        String::from_utf8_lossy(&server.admin_get("/_imgrelay/metrics").await.body).into_owned();
    assert!(
        metrics.contains("imgrelay_request_duration_seconds_count{route=\"page\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("imgrelay_requests_total{route=\"page\",status=\"200\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gbk_page_stays_gbk() {
    let (_origin, _blog, server) = start(&[]).await;
    let original = data("articles/pages/page-gbk.html");
    for path in ["/pages/page-gbk.html", "/bare/page-gbk.html"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, StatusCode::OK);
        let (text, _, had_errors) = encoding_rs::GBK.decode(&reply.body);
        assert!(!had_errors, "{path}: output is valid GBK");
        assert!(text.contains("石桥村"), "{path}: Chinese text survives");
        // The title bytes are untouched GBK.
        let start = memchr::memmem::find(&original, b"<title>").unwrap();
        let end = memchr::memmem::find(&original, b"</title>").unwrap();
        assert!(
            memchr::memmem::find(&reply.body, &original[start..end]).is_some(),
            "{path}: GBK title bytes unchanged"
        );
        assert!(!server.proxied(&reply.body).is_empty(), "{path}: rewritten");
    }
    let reply = server.get("/pages/page-gbk.html").await;
    assert_eq!(reply.header("content-type"), "text/html; charset=GBK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_html_passes_through_byte_identical() {
    let (_origin, _blog, server) = start(&[]).await;
    for file in ["photo-640x422.jpg", "rgba-400x300.png"] {
        let path = format!("/files/{file}");
        let reply = server.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK);
        let original = data(&format!("images/{file}"));
        assert_eq!(reply.body.as_ref(), original.as_slice(), "{path}");
        assert_eq!(reply.header("content-length"), original.len().to_string());
        assert_eq!(reply.header("content-type"), "application/octet-stream");
        assert!(reply.header("etag").starts_with('"'), "strong ETag kept");
        let head = server.request(Method::HEAD, &path, &[]).await;
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), original.len().to_string());
    }
    // HTML in a coding imgrelay cannot undo is passed through as it is, never rewritten
    // half-read.
    let encoded = server.get("/encoded/br/page-utf8.html").await;
    assert_eq!(encoded.status, StatusCode::OK);
    assert_eq!(encoded.header("content-encoding"), "br");
    let want = common::blog::encoded_body();
    assert_eq!(encoded.body.as_ref(), want.as_slice());
    assert_eq!(encoded.header("content-length"), want.len().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_compressed_anyway_is_decoded_and_rewritten() {
    let (_origin, _blog, server) = start(&[]).await;
    let plain = server.get("/pages/page-utf8.html").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(!server.proxied(&plain.body).is_empty());
    for coding in ["gzip", "deflate"] {
        let path = format!("/encoded/{coding}/page-utf8.html");
        let reply = server.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("content-encoding"), "", "{path}");
        assert_eq!(reply.header("content-length"), "", "{path}");
        // The same bytes as the page served plain, rewritten.
        assert_eq!(
            String::from_utf8_lossy(&reply.body),
            String::from_utf8_lossy(&plain.body),
            "{path}"
        );
    }
    // A corrupt stream aborts the response instead of ending it as if complete.
    let response = open(
        &server,
        Request::get("/encoded/corrupt/page-utf8.html"),
        b"",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let result = drain(response).await;
    assert!(result.is_err(), "body ended cleanly: {result:?}");
    let metric = "imgrelay_page_proxy_errors_total{kind=\"body\"}";
    assert_eq!(server.metric(metric).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_location_pass_through() {
    let (_origin, _blog, server) = start(&[]).await;
    let missing = server.get("/missing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body.as_ref(), b"<p>not here</p>\n");
    let moved = server.get("/moved").await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        moved.header("location"),
        "http://blog.example/pages/page-utf8.html?from=moved"
    );
    // Internal paths never reach the origin.
    let internal = server.get("/_imgrelay/nothing").await;
    assert_eq!(internal.status, StatusCode::NOT_FOUND);
    assert_eq!(internal.header("cache-control"), "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_dropped_and_forwarded_headers_set() {
    let (_origin, blog, server) = start(&[]).await;
    let hop = server.get("/hop").await;
    assert_eq!(hop.status, StatusCode::OK);
    assert_eq!(hop.header("x-end-to-end"), "kept");
    for name in ["x-hop-secret", "keep-alive", "proxy-agent"] {
        assert_eq!(hop.header(name), "", "{name} must not reach the client");
    }

    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/echo?x=1")
        .header("host", "blog.example")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "1")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-forwarded-for", "203.0.113.7")
        .header("accept-encoding", "gzip, br");
    let response = open(&server, req, &payload).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let want = {
        use sha2::Digest;
        format!(
            "len={} sha={}\n",
            payload.len(),
            hex::encode(sha2::Sha256::digest(&payload))
        )
    };
    assert_eq!(
        String::from_utf8_lossy(&body),
        want,
        "request body streamed to the origin"
    );
    let seen = blog.seen("/echo").unwrap();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "blog.example");
    assert_eq!(seen["accept-encoding"], "identity");
    assert_eq!(seen["host"], blog.addr.to_string());
    for name in ["x-client-hop", "proxy-authorization"] {
        assert!(!seen.contains_key(name), "{name} must not reach the origin");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_down_is_502_and_slow_origin_is_504() {
    let origin = Origin::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}");
    let server = Server::start(&origin, &[("ORIGIN__URL", &url)]);
    let down = server.get("/pages/page-utf8.html").await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY);
    assert_eq!(down.header("cache-control"), "no-store");
    assert!(down.header("content-type").starts_with("text/plain"));
    assert_eq!(
        server
            .metric("imgrelay_page_proxy_errors_total{kind=\"connect\"}")
            .await,
        1
    );

    let blog = Blog::start().await;
    let url = blog.url();
    let server = Server::start(
        &origin,
        &[("ORIGIN__URL", &url), ("ORIGIN__TIMEOUT_MS", "800")],
    );
    let started = Instant::now();
    let slow = server.get("/slow-headers").await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow.header("cache-control"), "no-store");
    assert_eq!(
        server
            .metric("imgrelay_page_proxy_errors_total{kind=\"timeout\"}")
            .await,
        1
    );

    // Without an origin the page proxy is off.
    let off = Server::start(&origin, &[]);
    assert_eq!(
        off.get("/pages/page-utf8.html").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_rewritten_bytes_arrive_long_before_the_origin_finishes() {
    let (_origin, _blog, server) = start(&[]).await;
    let started = Instant::now();
    let response = open(&server, Request::get("/trickle"), b"").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut first: Option<(Duration, Bytes)> = None;
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        if first.is_none() && !data.is_empty() {
            first = Some((started.elapsed(), data.clone()));
        }
        total += data.len();
    }
    let all = started.elapsed();
    let (ttfb, first) = first.expect("some body");
    eprintln!("trickle: first bytes after {ttfb:?}, whole page after {all:?}, {total} bytes");
    let pieces = (TRICKLE_BYTES / TRICKLE_PIECE) as u32;
    assert!(
        all >= TRICKLE_PAUSE * (pieces - 1),
        "the origin paced the page"
    );
    assert!(ttfb * 4 < all, "first bytes after {ttfb:?} of {all:?}");
    // What arrived first is already rewritten.
    assert!(
        memchr::memmem::find(&first, b"<img src=\"/img/").is_some(),
        "first bytes carry the rewritten image: {:?}",
        String::from_utf8_lossy(&first[..first.len().min(400)])
    );
    let original_src = format!("<img src=\"{WRAPPED}\"");
    assert!(memchr::memmem::find(&first, original_src.as_bytes()).is_none());
    assert!(total > TRICKLE_BYTES);
}

fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{field} missing in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_on_a_100_mb_page() {
    let (_origin, _blog, server) = start(&[]).await;
    // Warm up: allocator arenas, connection pools, the rewriter's code paths.
    for _ in 0..3 {
        assert_eq!(
            server.get("/pages/page-utf8.html").await.status,
            StatusCode::OK
        );
    }
    let pid = server.pid();
    let (hwm_before, rss_before) = (proc_kb(pid, "VmHWM:"), proc_kb(pid, "VmRSS:"));
    let response = open(&server, Request::get("/huge"), b"").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut total, mut images) = (0usize, 0usize);
    let mut tail = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("body streams to the end").into_data() else {
            continue;
        };
        total += data.len();
        // Count rewritten images across frame boundaries with a small carried tail.
        tail.extend_from_slice(&data);
        images += memchr::memmem::find_iter(&tail, b"<img src=\"/img/").count();
        let keep = tail.len().min(32);
        tail.drain(..tail.len() - keep);
    }
    let (hwm_after, rss_after) = (proc_kb(pid, "VmHWM:"), proc_kb(pid, "VmRSS:"));
    eprintln!(
        "100 MB page: {total} bytes out, {images} images rewritten; VmHWM {hwm_before} -> {hwm_after} kB, \
         VmRSS {rss_before} -> {rss_after} kB"
    );
    assert!(total > HUGE_BYTES, "the whole page arrived ({total} bytes)");
    assert_eq!(images, HUGE_BYTES / 8192, "every image rewritten");
    assert!(
        hwm_after.saturating_sub(hwm_before) < 30 * 1024,
        "peak RSS grew by {} kB",
        hwm_after - hwm_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_endpoint_streams_a_hexo_post_back() {
    let (_origin, _blog, server) = start(&[]).await;
    let post = data("articles/posts/fm-photos.md");
    let req =
        Request::post("/_imgrelay/rewrite").header("content-type", "text/markdown; charset=utf-8");
    let response = open(&server, req, &post).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/markdown; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"---\n"), "front matter kept");
    let proxied = server.proxied(&body);
    assert!(!proxied.is_empty());
    // The front matter's photos were rewritten too (YAML values start after `- ` or a quote).
    let fm_end = memchr::memmem::find(&body[4..], b"\n---").unwrap() + 4;
    assert!(
        server.proxied(&body[..fm_end]).len() >= 2,
        "front matter images rewritten: {}",
        String::from_utf8_lossy(&body[..fm_end])
    );
    assert!(
        memchr::memmem::find(&body, b"cors.zfour.workers.dev/?http").is_none()
            || memchr::memmem::find(&body, b"data-canonical-url").is_some()
    );

    let html =
        b"<p><img src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/x.jpg\"></p>";
    let response = open(&server, Request::post("/_imgrelay/rewrite"), html).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let proxied = server.proxied(&body);
    assert_eq!(proxied.len(), 1, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        proxied[0].1.source.as_str(),
        "http://static.1sapp.com/x.jpg"
    );

    let get = server.admin_get("/_imgrelay/rewrite").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.header("allow"), "POST");
}

/// Reads a streaming body to its end; `Err` when it ended with an error.
async fn drain(response: http::Response<Incoming>) -> Result<Bytes, String> {
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Err(e) => return Err(format!("{e} after {} bytes", out.len())),
        }
    }
    Ok(Bytes::from(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_failing_mid_page_aborts_the_response() {
    let (_origin, _blog, server) = start(&[("ORIGIN__TIMEOUT_MS", "800")]).await;
    for (path, kind) in [("/cut", "body"), ("/stall", "body_timeout")] {
        let started = Instant::now();
        let response = open(&server, Request::get(path), b"").await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let result = drain(response).await;
        // A cut page must not look complete to the client.
        assert!(result.is_err(), "{path}: body ended cleanly: {result:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{path}");
        let metric = format!("imgrelay_page_proxy_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(server.metric(&metric).await, 1, "{metric}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewriter_bail_out_passes_the_rest_through_and_is_counted() {
    let (_origin, _blog, server) = start(&[("REWRITE__MAX_MEMORY_KB", "16")]).await;
    let img = format!("<img src=\"{WRAPPED}\">\n");
    // Thousands of open elements outgrow a 16 KB rewriter; the second image comes after.
    let mut doc = format!("<!DOCTYPE html><html><body>{img}").into_bytes();
    doc.extend_from_slice(&b"<div><span>x".repeat(5000));
    let tail = format!("{img}<p>end</p>\n");
    doc.extend_from_slice(tail.as_bytes());
    let response = open(&server, Request::post("/_imgrelay/rewrite"), &doc).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = drain(response).await.expect("complete body");
    assert!(
        body.ends_with(tail.as_bytes()),
        "the rest passed through unchanged"
    );
    assert_eq!(
        server.proxied(&body).len(),
        1,
        "the first image was rewritten"
    );
    assert_eq!(
        server
            .metric("imgrelay_rewriter_bailouts_total{reason=\"bailed_out\"}")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pausing_its_rewrite_body_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_origin, _blog, server) = start(&[("SERVER__CLIENT_IDLE_TIMEOUT_S", "1")]).await;
    let mut socket = tokio::net::TcpStream::connect(server.admin).await.unwrap();
    let chunk = "<p>start</p>";
    let head = format!(
        "POST /_imgrelay/rewrite HTTP/1.1\r\nHost: blog\r\nContent-Type: text/html\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // The body never ends: the server must give up on it and close the connection.
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply))
        .await
        .expect("connection closed within 10 s")
        .ok();
    let elapsed = started.elapsed();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(!reply.ends_with("0\r\n\r\n"), "looks complete: {reply}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    let metric = "imgrelay_rewrite_body_errors_total{kind=\"body_timeout\"}";
    assert_eq!(server.metric(metric).await, 1);
}

/// Sends raw bytes on a fresh connection and returns everything the server answers.
async fn raw(server: &Server, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply))
        .await
        .expect("answer within 10 s")
        .ok();
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_and_trace_never_reach_the_origin() {
    let (_origin, blog, server) = start(&[]).await;
    let cases = [
        ("GET /no-host HTTP/1.1\r\nConnection: close\r\n\r\n", "/no-host", 400),
        (
            "GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            "/two-hosts",
            400,
        ),
        ("TRACE /trace HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "/trace", 405),
        (
            "CONNECT blog.example:443 HTTP/1.1\r\nHost: blog.example:443\r\nConnection: close\r\n\r\n",
            "blog.example:443",
            405,
        ),
    ];
    for (request, path, status) in cases {
        let reply = raw(&server, request).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?}: {reply}"
        );
        assert!(blog.seen(path).is_none(), "{path} reached the origin");
    }
    // HTTP/1.0 may omit Host, and one Host is fine.
    let reply = raw(&server, "GET /missing HTTP/1.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.0 404"), "{reply}");
    assert!(blog.seen("/missing").is_some());
}
