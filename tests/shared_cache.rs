//! Several instances sharing one Redis (and a Redis Cluster): what one instance fetched and
//! made, the others serve; concurrent first requests across instances cost one fetch and one
//! transform; a restarted instance serves from Redis; Redis dying costs speed, never a request.
//!
//! Each test starts its own `redis-server` (or three cluster nodes) on free loopback ports and
//! three `imgrelay serve` processes; nothing routes between them, so every cross-instance hit
//! comes from the shared tier.

mod common;

use std::time::{Duration, Instant};

use common::redis::{Cluster, Redis};
use common::{upstream, Origin, Server};
use http::StatusCode;

/// Real images of the corpus; each is asked under ten query strings, as ten distinct sources.
const IMAGES: [&str; 3] = [
    "photo-640x422.jpg",
    "lossy-640x480.webp",
    "interlaced-300x200.png",
];

fn sources(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| upstream(&format!("{}?v={i}", IMAGES[i % IMAGES.len()])))
        .collect()
}

/// Bounds that a machine busy with every test at once cannot exceed: these tests count fetches
/// and transforms, which a timed-out command or a connection not made yet (rightly) add to.
const PATIENT: [(&str, &str); 2] = [
    ("SHARED_CACHE__TIMEOUT_MS", "3000"),
    ("SHARED_CACHE__CONNECT_TIMEOUT_MS", "10000"),
];

/// The tier at `url`, with [`PATIENT`] bounds.
fn tier(url: &str) -> [(&str, &str); 3] {
    [("SHARED_CACHE__URL", url), PATIENT[0], PATIENT[1]]
}

fn instances(origin: &Origin, env: &[(&str, &str)]) -> Vec<Server> {
    (0..3).map(|_| Server::start(origin, env)).collect()
}

async fn sum(servers: &[Server], metric: &str) -> u64 {
    let mut total = 0;
    for s in servers {
        total += s.metric(metric).await;
    }
    total
}

/// The shared-cache lines of every instance's metrics, for failure messages.
async fn tier_metrics(servers: &[Server]) -> String {
    let mut out = String::new();
    for s in servers {
        let page = s.admin_get("/_imgrelay/metrics").await.body;
        for line in String::from_utf8_lossy(&page).lines() {
            if line.starts_with("imgrelay_shared_cache") && !line.ends_with(" 0") {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("--\n");
    }
    out
}

/// Asks every instance in turn for each of `n` new images; all answers equal.
async fn each_from_all(servers: &[Server], sources: &[String]) {
    for source in sources {
        let path = servers[0].path(source, "320x0");
        let mut etags = Vec::new();
        for s in servers {
            let reply = s.get(&path).await;
            assert_eq!(reply.status, StatusCode::OK, "{source}: {:?}", reply.body);
            etags.push(reply.header("etag").to_string());
        }
        assert!(etags.iter().all(|e| *e == etags[0]), "{source}: {etags:?}");
    }
}

const VARIANT_HITS: &str = "imgrelay_shared_cache_lookups_total{tier=\"variants\",result=\"hit\"}";
const VARIANT_ERRORS: &str =
    "imgrelay_shared_cache_lookups_total{tier=\"variants\",result=\"error\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_fetch_and_transform_each_image_once() {
    if !common::redis::available() {
        return;
    }
    let redis = Redis::start();
    let origin = Origin::start().await;
    let url = redis.url();
    let servers = instances(&origin, &tier(&url));
    let sources = sources(30);
    each_from_all(&servers, &sources).await;
    assert_eq!(
        origin.total(),
        30,
        "upstream requests\n{}",
        tier_metrics(&servers).await
    );
    assert_eq!(sum(&servers, "imgrelay_upstream_fetches_total").await, 30);
    assert_eq!(sum(&servers, "imgrelay_transforms_total").await, 30);
    assert_eq!(sum(&servers, VARIANT_HITS).await, 60);
    assert_eq!(sum(&servers, VARIANT_ERRORS).await, 0);
    let health = servers[0].get("/_imgrelay/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&health.body).contains("shared cache: up"));
    eprintln!(
        "redis used_memory after 30 images: {} bytes",
        redis.used_memory()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_on_three_instances_cost_one_fetch_and_one_transform() {
    if !common::redis::available() {
        return;
    }
    let redis = Redis::start();
    let origin = Origin::start().await;
    let url = redis.url();
    let servers = instances(&origin, &tier(&url));
    // The upstream trickles its body over a second, so all ten requests arrive while the first
    // instance is still fetching.
    let source = upstream("slow/1/photo-640x480.jpg");
    let path = servers[0].path(&source, "200x0");
    let servers = std::sync::Arc::new(servers);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (servers, path) = (servers.clone(), path.clone());
            tokio::spawn(async move { servers[i % 3].get(&path).await })
        })
        .collect();
    let mut etags = std::collections::BTreeSet::new();
    for t in tasks {
        let reply = t.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        etags.insert(reply.header("etag").to_string());
    }
    assert_eq!(etags.len(), 1, "{etags:?}");
    assert_eq!(origin.hits("/slow/1/photo-640x480.jpg"), 1);
    assert_eq!(sum(&servers, "imgrelay_transforms_total").await, 1);
    assert_eq!(
        sum(
            &servers,
            "imgrelay_shared_cache_leases_total{outcome=\"acquired\"}"
        )
        .await,
        1
    );
    assert_eq!(
        sum(
            &servers,
            "imgrelay_shared_cache_leases_total{outcome=\"waited_for_result\"}"
        )
        .await,
        2,
        "one lease wait per other instance (each coalesces its own requests)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_serves_from_redis_without_upstream() {
    if !common::redis::available() {
        return;
    }
    let redis = Redis::start();
    let origin = Origin::start().await;
    let url = redis.url();
    let env = tier(&url);
    let first = Server::start(&origin, &env);
    let sources = sources(6);
    let paths: Vec<String> = sources.iter().map(|s| first.path(s, "240x0")).collect();
    let mut etags = Vec::new();
    for path in &paths {
        let reply = first.get(path).await;
        assert_eq!(reply.status, StatusCode::OK);
        etags.push(reply.header("etag").to_string());
    }
    // Another size of the same pictures needs their sources, which Redis has too.
    assert!(first.terminate().success());
    let fetched = origin.total();
    let restarted = Server::start(&origin, &env);
    for (path, etag) in paths.iter().zip(&etags) {
        let reply = restarted.get(path).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("etag"), etag);
    }
    for source in &sources {
        let reply = restarted.get(&restarted.path(source, "100x0")).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(origin.total(), fetched, "nothing fetched upstream again");
    assert_eq!(restarted.metric("imgrelay_upstream_fetches_total").await, 0);
    assert_eq!(restarted.metric("imgrelay_transforms_total").await, 6);
    assert_eq!(restarted.metric(VARIANT_HITS).await, 6);
    assert_eq!(
        restarted
            .metric("imgrelay_shared_cache_lookups_total{tier=\"sources\",result=\"hit\"}")
            .await,
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_corrupt_values_read_as_misses() {
    if !common::redis::available() {
        return;
    }
    let redis = Redis::start();
    let origin = Origin::start().await;
    let url = redis.url();
    let env = tier(&url);
    let first = Server::start(&origin, &env);
    let path = first.path(&upstream("photo-640x480.jpg"), "160x0");
    let good = first.get(&path).await;
    assert_eq!(good.status, StatusCode::OK);
    // The tier is written after the answer, without delaying it: wait for both entries.
    let mut conn = redis.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    let keys: Vec<String> = loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("imgrelay:*")
            .query(&mut conn)
            .unwrap();
        let both = keys.iter().any(|k| k.ends_with(":v")) && keys.iter().any(|k| k.ends_with(":s"));
        if both || Instant::now() > deadline {
            break keys;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(first);
    // Every stored value is replaced: truncated, another key's entry, and plain text.
    let values: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| redis::cmd("GET").arg(k).query(&mut conn).unwrap())
        .collect();
    assert!(keys.iter().any(|k| k.ends_with(":v")) && keys.iter().any(|k| k.ends_with(":s")));
    for (i, key) in keys.iter().enumerate() {
        let forged: Vec<u8> = match i % 3 {
            0 => values[i][..values[i].len() / 2].to_vec(),
            1 => values[(i + 1) % values.len()].clone(),
            _ => b"<script>alert(1)</script>".to_vec(),
        };
        let () = redis::cmd("SET")
            .arg(key)
            .arg(forged)
            .query(&mut conn)
            .unwrap();
    }
    let second = Server::start(&origin, &env);
    let reply = second.get(&path).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, good.body);
    assert_eq!(reply.header("content-type"), "image/jpeg");
    assert_eq!(second.metric(VARIANT_HITS).await, 0);
    assert!(
        second
            .metric("imgrelay_shared_cache_lookups_total{tier=\"variants\",result=\"corrupt\"}")
            .await
            >= 1
    );
    assert_eq!(second.metric("imgrelay_upstream_fetches_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_costs_no_request() {
    if !common::redis::available() {
        return;
    }
    let mut redis = Redis::start();
    let origin = Origin::start().await;
    let url = redis.url();
    let servers = instances(&origin, &tier(&url));
    let sources = sources(12);
    each_from_all(&servers, &sources[..6]).await;
    assert_eq!(sum(&servers, "imgrelay_transforms_total").await, 6);
    redis.kill();
    let started = Instant::now();
    each_from_all(&servers, &sources[6..]).await;
    let elapsed = started.elapsed();
    // Without the tier each instance makes each image itself.
    assert_eq!(sum(&servers, "imgrelay_transforms_total").await, 6 + 18);
    assert!(sum(&servers, VARIANT_ERRORS).await >= 1);
    // 18 requests, each within the command timeout of the one failure that rests the tier.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    for s in &servers {
        let health = s.get("/_imgrelay/healthz").await;
        assert_eq!(health.status, StatusCode::OK);
    }
    let health = servers[0].get("/_imgrelay/healthz").await;
    assert!(String::from_utf8_lossy(&health.body).contains("shared cache: degraded"));
    assert_eq!(servers[0].metric("imgrelay_shared_cache_up").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_costs_at_most_its_timeout() {
    if !common::redis::available() {
        return;
    }
    let redis = Redis::start();
    let origin = Origin::start().await;
    let url = redis.url();
    let servers = instances(
        &origin,
        &[
            ("SHARED_CACHE__URL", &url),
            ("SHARED_CACHE__TIMEOUT_MS", "300"),
            ("SHARED_CACHE__RETRY_MS", "60000"),
        ],
    );
    let sources = sources(8);
    each_from_all(&servers, &sources[..2]).await;
    redis.run(false);
    // The first request of each instance waits for one command timeout, then the tier rests:
    // the rest are served without waiting for Redis at all.
    for source in &sources[2..] {
        let path = servers[0].path(source, "320x0");
        for s in &servers {
            let started = Instant::now();
            let reply = s.get(&path).await;
            let elapsed = started.elapsed();
            assert_eq!(reply.status, StatusCode::OK);
            assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
        }
    }
    assert_eq!(sum(&servers, "imgrelay_transforms_total").await, 2 + 6 * 3);
    for s in &servers {
        assert_eq!(
            s.metric(VARIANT_ERRORS).await,
            1,
            "one timeout, then resting"
        );
        assert!(
            s.metric("imgrelay_shared_cache_lookups_total{tier=\"variants\",result=\"skipped\"}")
                .await
                >= 5
        );
    }
    redis.run(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_then_up_later() {
    if !common::redis::available() {
        return;
    }
    let origin = Origin::start().await;
    // Nothing listens there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let server = Server::start(
        &origin,
        &[
            ("SHARED_CACHE__URL", &url),
            ("SHARED_CACHE__RETRY_MS", "200"),
        ],
    );
    let reply = server
        .get(&server.path(&upstream("photo-640x480.jpg"), "120x0"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let health = server.get("/_imgrelay/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&health.body).contains("degraded"));
    assert_eq!(server.metric("imgrelay_shared_cache_up").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_redis_is_shared_when_its_ca_is_trusted() {
    if !common::redis::available() {
        return;
    }
    let tls = common::origin::TestTls::new(&["localhost"]);
    let redis = Redis::start_tls(&tls);
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("redis-ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let url = format!("rediss://localhost:{}/", redis.port);
    let ca = ca.display().to_string();
    let trusting: Vec<Server> = (0..2)
        .map(|_| {
            Server::start(
                &origin,
                &[
                    ("SHARED_CACHE__URL", &url),
                    ("SHARED_CACHE__CA_FILE", &ca),
                    PATIENT[0],
                    PATIENT[1],
                ],
            )
        })
        .collect();
    each_from_all(&trusting, &sources(3)).await;
    assert_eq!(sum(&trusting, "imgrelay_transforms_total").await, 3);
    assert_eq!(sum(&trusting, VARIANT_HITS).await, 3);
    // Without the CA the certificate is not trusted: no connection, images served all the same.
    let doubting = Server::start(
        &origin,
        &[
            ("SHARED_CACHE__URL", &url),
            ("SHARED_CACHE__CONNECT_TIMEOUT_MS", "2000"),
        ],
    );
    let reply = doubting.get(&doubting.path(&sources(1)[0], "320x0")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(doubting.metric("imgrelay_shared_cache_up").await, 0);
    assert_eq!(doubting.metric(VARIANT_HITS).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_a_redis_cluster() {
    if !common::redis::available() {
        return;
    }
    let cluster = Cluster::start();
    let origin = Origin::start().await;
    let nodes = cluster.nodes_toml();
    let servers = instances(
        &origin,
        &[
            ("SHARED_CACHE__CLUSTER_NODES", &nodes),
            PATIENT[0],
            PATIENT[1],
        ],
    );
    let sources = sources(30);
    each_from_all(&servers, &sources).await;
    assert_eq!(origin.total(), 30, "{}", tier_metrics(&servers).await);
    assert_eq!(sum(&servers, "imgrelay_transforms_total").await, 30);
    assert_eq!(sum(&servers, VARIANT_HITS).await, 60);
    // 30 variants and 30 sources spread over the three masters.
    let keys = cluster.keys_per_node();
    assert_eq!(keys.iter().sum::<u64>(), 60, "{keys:?}");
    assert!(keys.iter().all(|&k| k > 0), "{keys:?}");
}
