//! The image route through a real `imgrelay serve` and a real local origin.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{upstream, Origin, Server};
use http::{Method, StatusCode};

fn decode(body: &[u8]) -> image::DynamicImage {
    image::load_from_memory(body).expect("response decodes as an image")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_variants_with_http_caching_headers() {
    let origin = Origin::start().await;
    let server = Server::start(&origin, &[]);
    let path = server.path(&upstream("photo-640x422.jpg"), "320x0");

    let first = server.get(&path).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert!(first.header("content-type").starts_with("image/"));
    assert_eq!(first.header("content-length"), first.body.len().to_string());
    let etag = first.header("etag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );
    assert_eq!(
        first.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(first.header("vary"), "Accept");
    assert_eq!(first.header("x-content-type-options"), "nosniff");
    assert_eq!(
        first.header("content-security-policy"),
        "default-src 'none'; sandbox"
    );
    assert_eq!(first.header("x-cache"), "MISS");
    let img = decode(&first.body);
    assert_eq!((img.width(), img.height()), (320, 211));

    let second = server.get(&path).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("x-cache"), "HIT");
    assert_eq!(second.header("etag"), etag);
    assert_eq!(second.body, first.body);

    let cond = server
        .request(Method::GET, &path, &[("if-none-match", &etag)])
        .await;
    assert_eq!(cond.status, StatusCode::NOT_MODIFIED);
    assert!(cond.body.is_empty());
    assert_eq!(cond.header("etag"), etag);
    let weak = format!("\"other\", W/{etag}");
    let cond = server
        .request(Method::GET, &path, &[("if-none-match", &weak)])
        .await;
    assert_eq!(cond.status, StatusCode::NOT_MODIFIED);
    let stale = server
        .request(Method::GET, &path, &[("if-none-match", "\"stale\"")])
        .await;
    assert_eq!(stale.status, StatusCode::OK);

    let head = server.request(Method::HEAD, &path, &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), first.body.len().to_string());
    assert_eq!(head.header("content-type"), first.header("content-type"));
    assert_eq!(head.header("etag"), etag);

    let post = server.request(Method::POST, &path, &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(origin.hits("/photo-640x422.jpg"), 1);

    // One log line per request, with status and cache outcome, and none of them dropped.
    server.wait_for_log(|l| l.contains("status=200") && l.contains("cache=HIT"));
    assert_eq!(server.metric("imgrelay_log_lines_dropped_total").await, 0);
    // The allocator's figures: the cached variant and source are among the bytes in use.
    let in_use = server.metric("imgrelay_heap_bytes{state=\"in_use\"}").await;
    let cached = server
        .metric("imgrelay_cache_bytes{cache=\"sources\"}")
        .await;
    assert!(
        in_use > cached && cached > 0,
        "{in_use} in use, {cached} cached"
    );
    let _ = server.metric("imgrelay_heap_bytes{state=\"free\"}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_and_canonical_options_are_checked_before_anything() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let path = server.path(&upstream("photo-640x480.jpg"), "100x100");

    // Flip one character of the signature.
    let (sig_start, rest) = path["/img/".len()..].split_once('/').unwrap();
    let mut sig: Vec<u8> = sig_start.bytes().collect();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    let tampered = format!("/img/{}/{rest}", String::from_utf8(sig).unwrap());
    let r = server.get(&tampered).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("cache-control"), "no-store");
    assert!(r.header("content-type").starts_with("text/plain"));

    // A signed payload with other options than signed.
    let resized = path.replacen("/100x100/", "/200x100/", 1);
    assert_eq!(server.get(&resized).await.status, StatusCode::FORBIDDEN);

    // Correctly signed, but not the canonical spelling.
    let keys = common::key_ring();
    let source = URL_SAFE_NO_PAD.encode(upstream("photo-640x480.jpg"));
    let payload = format!("100x100,cover,q75/{source}");
    let r = server
        .get(&format!("/img/{}/{payload}", keys.sign(&payload)))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);

    let r = server.get("/img/only-two/parts").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(origin.total(), 0, "nothing reached the origin");

    assert_eq!(server.get("/elsewhere").await.status, StatusCode::NOT_FOUND);
    let health = server.get("/_imgrelay/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(&health.body[..], b"ok\n");

    // Hits are found by the path as requested, before its signature is checked again: once the
    // genuine path is cached, the tampered ones must still be refused.
    assert_eq!(server.get(&path).await.status, StatusCode::OK);
    assert_eq!(server.get(&path).await.header("x-cache"), "HIT");
    for forged in [&tampered, &resized] {
        let r = server.get(forged).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{forged}");
        assert!(r.body.len() < 200, "no image bytes for {forged}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_map_to_statuses() {
    let origin = Origin::start().await;
    let server = Server::in_process(
        &origin,
        &[
            ("UPSTREAM__TIMEOUT_MS", "1500"),
            ("UPSTREAM__MAX_REDIRECTS", "3"),
        ],
    );
    let cases: &[(&str, u16)] = &[
        ("status/404/photo-640x480.jpg", 404),
        ("no-such-file.jpg", 404),
        ("status/500/photo-640x480.jpg", 502),
        ("status/503/x.jpg", 502),
        ("truncate/photo-640x480.jpg", 502),
        ("redirect/4/photo-640x480.jpg", 502),
        ("redirect/loop/photo-640x480.jpg", 502),
        ("redirect/3/photo-640x480.jpg", 200),
        ("wrongtype/photo-640x480.jpg", 200),
        ("nolength/photo-640x480.jpg", 200),
        ("redirect/1/nolength/wrongtype/photo-640x422.jpg", 200),
        // Redirects may not leave http(s) or carry credentials.
        ("redirect-to/file%3A%2F%2F%2Fetc%2Fpasswd", 502),
        (
            "redirect-to/http%3A%2F%2Fu%3Ap%40static.1sapp.com%2Fphoto-640x480.jpg",
            502,
        ),
    ];
    for (path, status) in cases {
        let r = server.get(&server.path(&upstream(path), "64x64")).await;
        assert_eq!(r.status.as_u16(), *status, "{path}: {:?}", r.body);
        if *status != 200 {
            assert_eq!(r.header("cache-control"), "no-store", "{path}");
            assert_eq!(
                r.header("content-security-policy"),
                "default-src 'none'; sandbox",
                "{path}"
            );
        } else {
            decode(&r.body);
        }
    }
    assert_eq!(origin.hits("/redirect/loop/photo-640x480.jpg"), 4);

    // Slow body: cut at the total timeout, well before the body would end.
    let started = Instant::now();
    let r = server
        .get(&server.path(&upstream("slow/10/photo-640x480.jpg"), "64x64"))
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Failures are remembered briefly: a second request does not reach the origin.
    let p = server.path(&upstream("status/500/again.jpg"), "64x64");
    assert_eq!(server.get(&p).await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(server.get(&p).await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(origin.hits("/status/500/again.jpg"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_cap_applies_to_declared_and_streamed_bodies() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[("UPSTREAM__MAX_BYTES", "50000")]);
    for path in ["photo-640x480.jpg", "nolength/photo-640x480.jpg"] {
        let r = server.get(&server.path(&upstream(path), "64x64")).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
    // Refused from Content-Length, without waiting for the slow body.
    let started = Instant::now();
    let r = server
        .get(&server.path(&upstream("slow/10/photo-640x480.jpg"), "64x64"))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(started.elapsed() < Duration::from_secs(5));
    let r = server
        .get(&server.path(&upstream("orient-1.jpg"), "64x64"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_requests_carry_no_client_headers() {
    let origin = Origin::start().await;
    let server = Server::in_process(
        &origin,
        &[(
            "UPSTREAM__REFERER",
            "{ \"img.example.com\" = \"https://blog.example/\" }",
        )],
    );
    let client_headers = [
        ("cookie", "session=secret"),
        ("authorization", "Bearer secret"),
        ("referer", "https://reader.example/"),
        ("x-forwarded-for", "203.0.113.9"),
        ("user-agent", "browser/1.0"),
    ];
    let r = server
        .request(
            Method::GET,
            &server.path(&upstream("photo-640x480.jpg"), "64x64"),
            &client_headers,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = origin.last_headers("/photo-640x480.jpg").unwrap();
    assert_eq!(seen["user-agent"], "imgrelay");
    for (name, _) in &client_headers[..4] {
        assert!(!seen.contains_key(*name), "{name} was forwarded: {seen:?}");
    }
    let r = server
        .get(&server.path("http://img.example.com/photo-640x422.jpg", "64x64"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = origin.last_headers("/photo-640x422.jpg").unwrap();
    assert_eq!(seen["referer"], "https://blog.example/");
    assert_eq!(seen["host"], "img.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_without_reaching_them() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[("UPSTREAM__CONNECT_TIMEOUT_MS", "500")]);
    let port = origin.addr.port();
    let sources = [
        format!("http://127.0.0.1:{port}/photo-640x480.jpg"),
        format!("http://[::1]:{port}/photo-640x480.jpg"),
        format!("http://[::ffff:127.0.0.1]:{port}/photo-640x480.jpg"),
        format!("http://0.0.0.0:{port}/photo-640x480.jpg"),
        format!("http://localhost:{port}/photo-640x480.jpg"),
        format!("http://127.1:{port}/photo-640x480.jpg"),
        format!("http://2130706433:{port}/photo-640x480.jpg"),
        // IPv4 inside IPv6: translated (::ffff:0:0:0/96), NAT64, deprecated compatible.
        format!("http://[::ffff:0:7f00:1]:{port}/photo-640x480.jpg"),
        format!("http://[64:ff9b::7f00:1]:{port}/photo-640x480.jpg"),
        format!("http://[::127.0.0.1]:{port}/photo-640x480.jpg"),
        // Refused before any packet is sent: the guard checks the address, not the reply.
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/photo-640x480.jpg".to_string(),
        "http://[fd00::1]/photo-640x480.jpg".to_string(),
    ];
    for source in &sources {
        let r = server.get(&server.path(source, "64x64")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{source}: {:?}", r.body);
        assert_eq!(r.header("cache-control"), "no-store");
        assert_eq!(
            r.header("content-security-policy"),
            "default-src 'none'; sandbox"
        );
    }
    assert_eq!(origin.total(), 0, "no request reached the origin");

    // A pinned (trusted) host whose redirect points at loopback: the hop is refused.
    let target = format!("http://127.0.0.1:{port}/photo-640x422.jpg");
    let encoded: String =
        percent_encoding::utf8_percent_encode(&target, percent_encoding::NON_ALPHANUMERIC)
            .collect();
    let r = server
        .get(&server.path(
            &format!("http://public.example.net/redirect-to/{encoded}"),
            "64x64",
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(origin.hits("/photo-640x422.jpg"), 0);
    assert_eq!(origin.total(), 1, "only the redirecting request arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_limit_every_hop() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[("UPSTREAM__ALLOWED_HOSTS", "[\"*.1sapp.com\"]")]);
    let ok = server
        .get(&server.path(&upstream("photo-640x480.jpg"), "64x64"))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let r = server
        .get(&server.path("http://img.example.com/photo-640x480.jpg", "64x64"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let hop = percent_encoding::utf8_percent_encode(
        "http://img.example.com/photo-640x422.jpg",
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let r = server
        .get(&server.path(&upstream(&format!("redirect-to/{hop}")), "64x64"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(origin.hits("/photo-640x422.jpg"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fetch_and_transform_once() {
    let origin = Origin::start().await;
    let server = std::sync::Arc::new(Server::in_process(&origin, &[]));
    // Slow upstream so that all 50 requests arrive while the first is still working.
    let path = server.path(&upstream("slow/1/photo-1280x960.jpg"), "300x0");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (server, path) = (server.clone(), path.clone());
        tasks.push(tokio::spawn(async move { server.get(&path).await }));
    }
    let mut etags = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        etags.insert(r.header("etag").to_string());
    }
    assert_eq!(etags.len(), 1);
    assert_eq!(origin.hits("/slow/1/photo-1280x960.jpg"), 1);
    assert_eq!(server.metric("imgrelay_transforms_total").await, 1);

    // Five sizes of one source: one fetch, five transforms.
    let mut tasks = Vec::new();
    for w in [64, 128, 256, 320, 512] {
        let (server, path) = (
            server.clone(),
            server.path(&upstream("slow/1/photo-640x480.jpg"), &format!("{w}x0")),
        );
        tasks.push(tokio::spawn(async move { (w, server.get(&path).await) }));
    }
    for t in tasks {
        let (w, r) = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(decode(&r.body).width(), w);
    }
    assert_eq!(origin.hits("/slow/1/photo-640x480.jpg"), 1);
    assert_eq!(server.metric("imgrelay_transforms_total").await, 6);
    assert_eq!(server.metric("imgrelay_upstream_fetches_total").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_still_fill_the_cache_once() {
    let origin = Origin::start().await;
    let server = std::sync::Arc::new(Server::in_process(&origin, &[]));
    // The upstream takes a second; every client hangs up after 0.1 s.
    let path = server.path(&upstream("slow/1/photo-1280x960.jpg"), "320x0");
    let mut clients = Vec::new();
    for _ in 0..10 {
        let (server, path) = (server.clone(), path.clone());
        clients.push(tokio::spawn(async move { server.get(&path).await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for c in &clients {
        c.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .metric("imgrelay_cache_abandoned_total{cache=\"variants\"}")
        .await
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the abandoned work never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(origin.hits("/slow/1/photo-1280x960.jpg"), 1);
    assert_eq!(server.metric("imgrelay_upstream_fetches_total").await, 1);
    assert_eq!(server.metric("imgrelay_transforms_total").await, 1);
    let r = server.get(&path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("x-cache"),
        "HIT",
        "the work nobody waited for was cached"
    );
    assert_eq!(decode(&r.body).width(), 320);
    assert_eq!(server.metric("imgrelay_transforms_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variant_cache_stays_within_its_byte_budget() {
    let origin = Origin::start().await;
    let server = Server::in_process(
        &origin,
        &[
            ("CACHE__MEMORY_MB", "1"),
            ("CACHE__MAX_ENTRY_BYTES", "400000"),
        ],
    );
    let budget = server
        .metric("imgrelay_cache_budget_bytes{cache=\"variants\"}")
        .await;
    assert!(budget <= 1024 * 1024);
    let mut served = 0u64;
    for w in (200..=1000).step_by(40) {
        let r = server
            .get(&server.path(&upstream("photo-1280x960.jpg"), &format!("{w}x0,png")))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        served += r.body.len() as u64;
        let held = server
            .metric("imgrelay_cache_bytes{cache=\"variants\"}")
            .await;
        assert!(held <= budget, "{held} > {budget}");
    }
    assert!(served > 2 * budget, "the test must overflow the budget");
    assert!(
        server
            .metric("imgrelay_cache_evictions_total{cache=\"variants\"}")
            .await
            > 0
    );
    assert_eq!(
        origin.hits("/photo-1280x960.jpg"),
        1,
        "the source stayed cached"
    );

    // Larger than cache.max_entry_bytes: served every time, never kept.
    let big = server.path(&upstream("photo-1280x960.jpg"), "1200x0,png");
    for _ in 0..2 {
        let r = server.get(&big).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.len() > 400_000, "{}", r.body.len());
        assert_eq!(r.header("x-cache"), "MISS");
    }
    assert!(
        server
            .metric("imgrelay_cache_oversize_total{cache=\"variants\"}")
            .await
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_with_retry_after() {
    let origin = Origin::start().await;
    let server = std::sync::Arc::new(Server::in_process(
        &origin,
        &[("IMAGE__MAX_CONCURRENCY", "1"), ("IMAGE__QUEUE", "1")],
    ));
    // Warm the source so all transforms are submitted at the same moment.
    let warm = server
        .get(&server.path(&upstream("photo-4000x3000.jpg"), "10x0"))
        .await;
    assert_eq!(warm.status, StatusCode::OK);
    let mut tasks = Vec::new();
    // Large PNG outputs keep the single worker busy long enough for the queue to fill.
    for w in 0..24 {
        let (server, path) = (
            server.clone(),
            server.path(
                &upstream("photo-4000x3000.jpg"),
                &format!("{}x0,png", 2000 + w * 40),
            ),
        );
        tasks.push(tokio::spawn(async move { server.get(&path).await }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(r.header("retry-after"), "1");
                assert_eq!(r.header("cache-control"), "no-store");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok {ok}, busy {busy}");
    // Busy is not remembered: the same URL works once the queue has room.
    let again = server
        .get(&server.path(&upstream("photo-4000x3000.jpg"), "1000x0"))
        .await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_beyond_the_gate_and_its_queue_answer_503() {
    let origin = Origin::start().await;
    let server = std::sync::Arc::new(Server::in_process(
        &origin,
        &[
            ("UPSTREAM__MAX_FETCHES", "1"),
            ("UPSTREAM__FETCH_QUEUE", "1"),
        ],
    ));
    let spawn = |name: &str| {
        let (server, path) = (server.clone(), server.path(&upstream(name), "64x0"));
        tokio::spawn(async move { server.get(&path).await })
    };
    let until = |metric: &'static str| {
        let server = server.clone();
        async move {
            for _ in 0..500 {
                if server.metric(metric).await == 1 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("{metric} never reached 1");
        }
    };
    let fetching = spawn("slow/2/photo-640x422.jpg");
    until("imgrelay_fetches_running").await;
    let waiting = spawn("slow/1/photo-640x480.jpg");
    until("imgrelay_fetch_queue_depth").await;
    let refused = server
        .get(&server.path(&upstream("gray-640x480.jpg"), "64x0"))
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(refused.header("cache-control"), "no-store");
    assert_eq!(origin.hits("/gray-640x480.jpg"), 0);
    assert_eq!(fetching.await.unwrap().status, StatusCode::OK);
    assert_eq!(waiting.await.unwrap().status, StatusCode::OK);
    // Busy is not remembered: the refused source is fetched once there is room.
    let again = server
        .get(&server.path(&upstream("gray-640x480.jpg"), "64x0"))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(origin.hits("/gray-640x480.jpg"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_for_their_host_name() {
    let tls = common::origin::TestTls::new(&["static.1sapp.com"]);
    let origin = Origin::start_tls(&tls).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let ca_files = format!("[{:?}]", ca.display().to_string());
    let trusting = Server::in_process(&origin, &[("UPSTREAM__CA_FILES", &ca_files)]);
    let covered = "https://static.1sapp.com/photo-640x422.jpg";
    let ok = trusting.get(&trusting.path(covered, "320x0")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(decode(&ok.body).width(), 320);
    // Pinned to the same address, but the certificate does not name this host.
    let uncovered = "https://img.example.com/photo-640x480.jpg";
    let wrong_name = trusting.get(&trusting.path(uncovered, "320x0")).await;
    assert_eq!(wrong_name.status, StatusCode::BAD_GATEWAY);
    // Without the CA the chain is not trusted.
    let strict = Server::in_process(&origin, &[]);
    let untrusted = strict.get(&strict.path(covered, "160x0")).await;
    assert_eq!(untrusted.status, StatusCode::BAD_GATEWAY);
    // Failed handshakes never reach HTTP.
    assert_eq!(origin.hits("/photo-640x422.jpg"), 1);
    assert_eq!(origin.hits("/photo-640x480.jpg"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let origin = Origin::start().await;
    let server = Server::start(&origin, &[]);
    let path = server.path(&upstream("slow/2/photo-640x480.jpg"), "64x0");
    let addr = server.addr;
    let in_flight = {
        let path = path.clone();
        tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
            let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
            let resp = client.get(uri).await.unwrap();
            let status = resp.status();
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: the slow request is still being served, yet new connections are refused.
    assert!(!in_flight.is_finished(), "the slow request ended early");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let status = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    decode(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_http2_and_logs_json() {
    let origin = Origin::start().await;
    let server = Server::start(&origin, &[("LOG__FORMAT", "json")]);
    let path = server.path(&upstream("photo-640x480.jpg"), "100x0");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{}{path}", server.addr).parse().unwrap();
    let resp = client.get(uri).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-cache"], "MISS");

    let line = server.wait_for_log(|l| l.contains("\"message\":\"request\""));
    let request_line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(request_line["fields"]["status"], 200);
    assert_eq!(request_line["fields"]["cache"], "MISS");
    assert_eq!(request_line["fields"]["method"], "GET");
}
