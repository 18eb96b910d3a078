//! End to end behind real nginx, configured with the shipped deploy/nginx.conf:
//! nginx (127.0.0.1) → imgrelay serve → the local blog origin (corpus pages) and the local
//! image upstream (corpus images).
//!
//! Images whose upstream URL is https come from a second local upstream speaking TLS with a
//! certificate from a CA made for the test (`upstream.ca_files`).
//!
//! This build cannot decode AVIF: AVIF sources pass through when they fit the box (AVIF is
//! enabled here and accepted by the client) and are refused with 415 when they would need a
//! resize; the test expects exactly that.
//!
//! Without nginx the test fails when `CI` is set and is skipped (loudly) otherwise.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::origin::TestTls;
use common::{corpus_pages, Blog, Origin, Server, HOSTS};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The browser-like Accept sent for images (AVIF sources may then pass through).
const ACCEPT: &str = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";

fn nginx_binary() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v nginx"])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?;
            let path = path.trim();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
}

/// Replaces `from` (which must occur) in the shipped config.
/// The nginx binary; without one, says that `what` cannot run and gives `None` (outside CI:
/// in CI a missing nginx is a failure).
fn nginx_or_skip(what: &str) -> Option<PathBuf> {
    let binary = nginx_binary();
    if binary.is_none() {
        let message = format!(
            "nginx is not installed: {what} cannot run (`make test` installs it; or apt-get \
             install nginx)"
        );
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n");
    }
    binary
}

fn substitute(conf: &mut String, from: &str, to: &str) {
    assert!(
        conf.contains(from),
        "deploy/nginx.conf no longer contains {from:?}; update this test with it"
    );
    *conf = conf.replace(from, to);
}

/// The shipped config `file` (under deploy/) with its listen address, imgrelay address and file
/// paths moved into `dir`.
fn nginx_conf(file: &str, dir: &Path, listen: &str, imgrelay: &[String]) -> String {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    let mut conf = std::fs::read_to_string(shipped).unwrap();
    let d = dir.display();
    substitute(
        &mut conf,
        "listen 127.0.0.1:8081;",
        &format!("listen {listen};"),
    );
    match imgrelay {
        [one] => substitute(
            &mut conf,
            "server 127.0.0.1:8080;",
            &format!("server {one};"),
        ),
        several => {
            let start = conf
                .find("    upstream imgrelay {")
                .expect("deploy/nginx.conf has an upstream imgrelay block");
            let end = start + conf[start..].find("    }\n").unwrap() + "    }\n".len();
            conf.replace_range(start..end, &instances_block(several));
        }
    }
    substitute(
        &mut conf,
        "/run/nginx-imgrelay.pid",
        &format!("{d}/nginx.pid"),
    );
    substitute(&mut conf, "/var/log/nginx/", &format!("{d}/log/"));
    substitute(&mut conf, "/var/cache/nginx/", &format!("{d}/cache/"));
    if conf.contains("include mime.types;") {
        // Relative to the config file's directory, as /etc/nginx/mime.types is to nginx.conf.
        let types = std::fs::read_to_string("/etc/nginx/mime.types").unwrap_or_else(|_| {
            "types { text/html html; image/jpeg jpeg jpg; image/webp webp; }\n".into()
        });
        std::fs::write(dir.join("mime.types"), types).unwrap();
        substitute(&mut conf, "/var/www/blog/public", &format!("{d}/public"));
    }
    conf
}

/// The upstream block of deploy/nginx-instances.conf with its three servers at `addrs`.
fn instances_block(addrs: &[String]) -> String {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx-instances.conf");
    let text = std::fs::read_to_string(shipped).unwrap();
    let start = text
        .find("    upstream imgrelay {")
        .expect("an upstream block");
    let mut block = text[start..].to_string();
    assert_eq!(addrs.len(), 3, "the shipped block names three instances");
    for (i, addr) in addrs.iter().enumerate() {
        substitute(
            &mut block,
            &format!("server 127.0.0.1:809{} ", i + 1),
            &format!("server {addr} "),
        );
    }
    block
}

struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/imgrelay-error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx with the shipped config `file`; for the static config, `public` holds the site.
fn start_nginx(
    binary: &Path,
    file: &str,
    imgrelay: &[String],
    public: &[(&str, &[u8])],
) -> (Nginx, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("public")).unwrap();
    for (name, bytes) in public {
        std::fs::write(dir.path().join("public").join(name), bytes).unwrap();
    }
    // Workers of a root-started nginx run unprivileged: they must reach the cache directories.
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    std::fs::create_dir_all(dir.path().join("cache")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for sub in ["", "cache", "public"] {
        std::fs::set_permissions(dir.path().join(sub), std::fs::Permissions::from_mode(0o777))
            .unwrap();
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let conf = nginx_conf(file, dir.path(), &listen, imgrelay);
    let conf_file = dir.path().join("nginx.conf");
    std::fs::write(&conf_file, conf).unwrap();
    let check = Command::new(binary)
        .arg("-t")
        .arg("-c")
        .arg(&conf_file)
        .arg("-p")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t rejects the config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new(binary)
        .arg("-c")
        .arg(&conf_file)
        .arg("-p")
        .arg(dir.path())
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let nginx = Nginx { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen: {}",
            nginx.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (nginx, listen)
}

struct Fetched {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn fetch(listen: &str, path: &str, accept: Option<&str>) -> Fetched {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{listen}{path}"))
        .header("host", "blog.example");
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(req.body(Empty::new()).unwrap()),
    )
    .await
    .expect("answer within 30 s")
    .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Fetched {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn header<'a>(f: &'a Fetched, name: &str) -> &'a str {
    f.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Corpus image sizes (after EXIF orientation) and bytes, by upstream URL.
fn images_by_upstream() -> HashMap<String, (String, u32, u32)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifest.json");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sizes: HashMap<String, (u32, u32)> = m["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let dim = |k: &str| i[k].as_u64().unwrap_or(0) as u32;
            (
                i["file"].as_str().unwrap().to_string(),
                (dim("display_width"), dim("display_height")),
            )
        })
        .collect();
    let mut out = HashMap::new();
    for d in m["documents"].as_array().unwrap() {
        // On-demand documents list their references elsewhere.
        for r in d["refs"].as_array().into_iter().flatten() {
            let (Some(url), Some(image)) = (r["upstream_url_ascii"].as_str(), r["image"].as_str())
            else {
                continue;
            };
            if let Some(&(w, h)) = sizes.get(image) {
                out.insert(url.to_string(), (image.to_string(), w, h));
            }
        }
    }
    out
}

/// The size a fit into `(bw, bh)` (0 = unconstrained) gives, never upscaling.
fn fitted(w: u32, h: u32, bw: u32, bh: u32) -> (f64, f64) {
    let mut scale: f64 = 1.0;
    if bw > 0 {
        scale = scale.min(f64::from(bw) / f64::from(w));
    }
    if bh > 0 {
        scale = scale.min(f64::from(bh) / f64::from(h));
    }
    (f64::from(w) * scale, f64::from(h) * scale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_images_through_nginx() {
    let Some(binary) = nginx_or_skip("the nginx end-to-end test") else {
        return;
    };
    let origin = Origin::start().await;
    let tls = TestTls::new(HOSTS);
    let tls_origin = Origin::start_tls(&tls).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let ca_files = format!("[{:?}]", ca.display().to_string());
    let pins = Origin::pin_table(&[&origin, &tls_origin], HOSTS);
    let blog = Blog::start().await;
    let blog_url = blog.url();
    let server = Server::start(
        &origin,
        &[
            ("ORIGIN__URL", &blog_url),
            ("IMAGE__FORMATS", r#"["avif", "webp", "jpeg", "png"]"#),
            ("UPSTREAM__RESOLVE", &pins),
            ("UPSTREAM__CA_FILES", &ca_files),
        ],
    );
    let (nginx, listen) = start_nginx(&binary, "nginx.conf", &[server.addr.to_string()], &[]);
    let images = images_by_upstream();

    let mut fetched = 0;
    let mut avif_refused = 0;
    // Pages share images: each proxied URL is checked once, so its first fetch is a miss.
    let mut done = BTreeSet::new();
    let mut https = 0;
    for page in corpus_pages() {
        let path = format!("/pages/{}", page.file);
        let reply = fetch(&listen, &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{path}: {}",
            nginx.error_log()
        );
        let proxied = server.proxied(&reply.body);
        let sources: BTreeSet<String> = proxied
            .iter()
            .map(|(_, r)| r.source.as_str().to_string())
            .collect();
        for want in &page.must_rewrite {
            assert!(sources.contains(want), "{path}: {want} not rewritten");
        }
        // The origin saw nginx's forwarding headers, then imgrelay's hop appended.
        let seen = blog.seen(&path).unwrap();
        assert_eq!(seen["x-forwarded-host"], "blog.example");
        assert_eq!(seen["x-forwarded-for"], "127.0.0.1, 127.0.0.1");

        let unique: BTreeSet<&String> = proxied.iter().map(|(p, _)| p).collect();
        for image_path in unique {
            let request = &proxied.iter().find(|(p, _)| p == image_path).unwrap().1;
            if !done.insert(image_path.clone()) {
                continue;
            }
            https += usize::from(request.source.scheme() == "https");
            let (file, w, h) = images
                .get(request.source.as_str())
                .unwrap_or_else(|| panic!("{} not in the manifest", request.source))
                .clone();
            let (bw, bh) = request.options.target_box();
            let (ew, eh) = fitted(w, h, bw, bh);
            let first = fetch(&listen, image_path, Some(ACCEPT)).await;
            if !cfg!(feature = "avif")
                && file.ends_with(".avif")
                && (ew, eh) != (f64::from(w), f64::from(h))
            {
                assert_eq!(
                    first.status,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{image_path}"
                );
                avif_refused += 1;
                continue;
            }
            assert_eq!(
                first.status,
                StatusCode::OK,
                "{path}: {image_path} ({}): {:?}",
                request.source,
                String::from_utf8_lossy(&first.body)
            );
            let ctype = header(&first, "content-type").to_string();
            if ctype == "image/avif" {
                // AVIF is passed through only when it already fits.
                let original = std::fs::read(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/data/images")
                        .join(&file),
                )
                .unwrap();
                assert_eq!(first.body.as_ref(), original.as_slice(), "{image_path}");
                assert_eq!((f64::from(w), f64::from(h)), (ew, eh), "{image_path}");
            } else {
                let img = image::load_from_memory(&first.body)
                    .unwrap_or_else(|e| panic!("{image_path} ({ctype}) decodes: {e}"));
                assert!(
                    (f64::from(img.width()) - ew).abs() <= 1.0
                        && (f64::from(img.height()) - eh).abs() <= 1.0,
                    "{image_path} ({file} {w}x{h} in {bw}x{bh}): got {}x{}, want {ew:.1}x{eh:.1}",
                    img.width(),
                    img.height()
                );
            }
            assert_ne!(
                header(&first, "x-cache-status"),
                "HIT",
                "{image_path}: first fetch"
            );
            let second = fetch(&listen, image_path, Some(ACCEPT)).await;
            assert_eq!(second.status, StatusCode::OK);
            assert_eq!(
                header(&second, "x-cache-status"),
                "HIT",
                "{image_path}: second fetch"
            );
            assert_eq!(second.body, first.body);
            fetched += 1;
        }
    }
    eprintln!(
        "nginx e2e: {fetched} images fetched twice through nginx ({https} from https upstreams); \
         {avif_refused} AVIF resizes refused"
    );
    assert!(fetched >= 20, "only {fetched} images fetched");
    assert!(https >= 10, "only {https} https upstreams fetched");
    assert!(tls_origin.total() >= 10);
    drop(nginx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_and_imgrelay_make_one_format_decision() {
    let Some(binary) = nginx_or_skip("the format-decision test") else {
        return;
    };
    let origin = Origin::start().await;
    let blog = Blog::start().await;
    let blog_url = blog.url();
    let server = Server::start(&origin, &[("ORIGIN__URL", &blog_url)]);
    let (nginx, listen) = start_nginx(&binary, "nginx.conf", &[server.addr.to_string()], &[]);

    // Each first client fills nginx's cache for its key; a client of the other kind follows
    // and must get its own format, never the first one's.
    // (Accept, the type it must get), a JPEG source, WebP configured.
    const WEBP: &str = "image/webp";
    const JPEG: &str = "image/jpeg";
    let cases: [[(Option<&str>, &str); 2]; 6] = [
        [(Some("IMAGE/WEBP"), WEBP), (Some("image/png"), JPEG)],
        [(Some("image/webp;q=0"), JPEG), (Some("image/webp"), WEBP)],
        [
            (Some("image/webp; q=0.0"), JPEG),
            (Some("image/webp"), WEBP),
        ],
        [(Some("image/*"), JPEG), (Some("image/webp"), WEBP)],
        [(Some("*/*"), JPEG), (Some("IMAGE/WEBP"), WEBP)],
        [(None, JPEG), (Some("image/webp"), WEBP)],
    ];
    for (i, [first, second]) in cases.into_iter().enumerate() {
        let path = server.path(
            &common::upstream("photo-640x480.jpg"),
            &format!("{}x0", 100 + i),
        );
        for (round, (accept, want)) in [first, second, first, second].into_iter().enumerate() {
            let reply = fetch(&listen, &path, accept).await;
            assert_eq!(reply.status, StatusCode::OK, "{accept:?}");
            assert_eq!(
                header(&reply, "content-type"),
                want,
                "case {i} round {round}: Accept {accept:?} (first {:?})",
                first.0
            );
            if round >= 2 {
                assert_eq!(
                    header(&reply, "x-cache-status"),
                    "HIT",
                    "case {i} {accept:?}"
                );
            }
        }
    }

    // nginx exposes healthz and nothing else of imgrelay's own.
    assert_eq!(
        fetch(&listen, "/_imgrelay/healthz", None).await.status,
        StatusCode::OK
    );
    for path in ["/_imgrelay/metrics", "/_imgrelay/rewrite", "/_imgrelay/x"] {
        let reply = fetch(&listen, path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(blog.seen(path).is_none());
    }
    drop(nginx);
}

/// deploy/nginx-static.conf: a Hexo `public/` rewritten at publish time, served as files, with
/// the image prefix sent to imgrelay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_blog_through_nginx() {
    let Some(binary) = nginx_or_skip("the static-site nginx test") else {
        return;
    };
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let post = format!(
        "<!doctype html><meta charset=utf-8><title>post</title>\n<img src=\"{}\" data-size=\"640,480\">\n",
        format_args!(
            "https://cors.zfour.workers.dev/?{}",
            common::upstream("photo-640x480.jpg")
        )
    );
    // What publishing does: the page rewritten (here by the rewrite endpoint), written to public/.
    let rewritten = server
        .post_to(
            server.admin,
            "/_imgrelay/rewrite",
            "text/html",
            post.into_bytes(),
        )
        .await;
    assert_eq!(rewritten.status, StatusCode::OK);
    let (nginx, listen) = start_nginx(
        &binary,
        "nginx-static.conf",
        &[server.addr.to_string()],
        &[("index.html", &rewritten.body)],
    );

    let page = fetch(&listen, "/", None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", nginx.error_log());
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert_eq!(page.body, rewritten.body, "the file, byte for byte");
    let images = server.proxied(&page.body);
    assert_eq!(images.len(), 3, "src and a 320w/640w srcset");
    for (path, _) in &images {
        let image = fetch(&listen, path, Some(ACCEPT)).await;
        assert_eq!(
            image.status,
            StatusCode::OK,
            "{path}: {}",
            nginx.error_log()
        );
        assert_eq!(header(&image, "content-type"), "image/webp", "{path}");
    }
    let again = fetch(&listen, &images[0].0, Some(ACCEPT)).await;
    assert_eq!(header(&again, "x-cache-status"), "HIT");
    assert_eq!(
        fetch(&listen, "/missing.html", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fetch(&listen, "/_imgrelay/metrics", None).await.status,
        StatusCode::NOT_FOUND
    );
}

/// deploy/nginx.conf with deploy/nginx-instances.conf's upstream block in front of three
/// instances sharing one Redis: each URL goes to one instance, and when one dies every request
/// still gets its image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_consistent_hashing_survive_one_dying() {
    let Some(binary) = nginx_or_skip("the instances test") else {
        return;
    };
    if !common::redis::available() {
        return;
    }
    let redis = common::redis::Redis::start();
    let origin = Origin::start().await;
    let url = redis.url();
    let mut servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&origin, &[("SHARED_CACHE__URL", &url)]))
        .collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let (nginx, listen) = start_nginx(&binary, "nginx.conf", &addrs, &[]);
    let paths = |round: &str| -> Vec<String> {
        (0..30)
            .map(|i| {
                let source = common::upstream(&format!("photo-640x422.jpg?{round}={i}"));
                servers[0].path(&source, "320x0")
            })
            .collect::<Vec<_>>()
    };
    let (first, second) = (paths("a"), paths("b"));
    for path in &first {
        let f = fetch(&listen, path, Some(ACCEPT)).await;
        assert_eq!(f.status, StatusCode::OK, "{}", nginx.error_log());
    }
    const IMAGE_200: &str = "imgrelay_requests_total{route=\"image\",status=\"200\"}";
    let mut served = Vec::new();
    for s in &servers {
        served.push(s.metric(IMAGE_200).await);
    }
    assert_eq!(served.iter().sum::<u64>(), 30, "{served:?}");
    assert!(
        served.iter().all(|&n| n > 0),
        "hashing spreads URLs: {served:?}"
    );
    // The same URLs again, with a format nginx has not cached: each goes to the same instance.
    for path in &first {
        let f = fetch(&listen, path, None).await;
        assert_eq!(f.status, StatusCode::OK);
    }
    for (s, before) in servers.iter().zip(&served) {
        assert_eq!(
            s.metric(IMAGE_200).await,
            2 * before,
            "one URL, one instance"
        );
    }

    drop(servers.remove(1));
    for path in second.iter().chain(&first) {
        let f = fetch(&listen, path, Some("image/png")).await;
        assert_eq!(f.status, StatusCode::OK, "{path}: {}", nginx.error_log());
    }
    let mut transforms = 0;
    for s in &servers {
        transforms += s.metric("imgrelay_transforms_total").await;
    }
    assert!(
        transforms >= 30,
        "the new images were made by the instances left"
    );
}

/// `imgrelay rewrite --warm` through nginx: afterwards every variant the rewritten post
/// advertises is a hit in nginx's cache for each format set readers send, without imgrelay
/// transforming again, and a broken picture is reported, not hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_warm_fills_nginx_and_imgrelay() {
    let Some(binary) = nginx_or_skip("the warm-up test") else {
        return;
    };
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let (nginx, listen) = start_nginx(
        &binary,
        "nginx-static.conf",
        &[server.addr.to_string()],
        &[],
    );
    let wrap = |path: &str| format!("https://cors.zfour.workers.dev/?{}", common::upstream(path));
    let post = format!(
        "---\ntitle: warm\ncover: {}\n---\n<p>x</p>\n<img src=\"{}\" data-size=\"640,480\">\n\
         <img src=\"{}\" data-size=\"640,480\">\n<img src=\"{}\">\n",
        wrap("photo-1280x960.jpg"),
        wrap("photo-640x480.jpg"),
        wrap("photo-1280x960.jpg"),
        wrap("status/404/gone.jpg"),
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("imgrelay.key");
    std::fs::write(&key, common::KEY_HEX).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[server]\npublic_prefix = \"/img\"\n[signing]\nkey_file = {key:?}\n"),
    )
    .unwrap();
    let source = dir.path().join("post.md");
    std::fs::write(&source, &post).unwrap();
    let out_dir = dir.path().join("out");
    let args: Vec<String> = [
        "rewrite",
        "--config",
        config.to_str().unwrap(),
        "--warm",
        &format!("http://{listen}"),
        "--out",
        out_dir.to_str().unwrap(),
        source.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::cli::run(&args, b"")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{stderr}");
    let rewritten = std::fs::read(out_dir.join("post.md")).unwrap();
    let advertised: BTreeSet<String> = server
        .proxied(&rewritten)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    // The cover (no hint: one URL), two pictures hinted 640x480 (src, which is also the
    // srcset's 640w candidate, and 320w each), the missing one (no hint: one URL).
    assert_eq!(advertised.len(), 6, "{advertised:?}");
    let broken: Vec<&String> = advertised
        .iter()
        .filter(|p| imgrelay::urls::decode_source(p).is_some_and(|s| s.contains("gone.jpg")))
        .collect();
    assert_eq!(broken.len(), 1);
    // webp, jpeg and png configured: readers naming WebP and readers naming nothing.
    let variants = advertised.len() * 2;
    assert!(
        stderr.contains(&format!(
            "warmed {} variants of 6 images, 2 failed",
            variants - 2
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{} (WebP): HTTP", broken[0]))
            && stderr.contains(&format!("{} (no image format): HTTP", broken[0])),
        "{stderr}"
    );
    let transforms = server.metric("imgrelay_transforms_total").await;
    let fetches = server.metric("imgrelay_upstream_fetches_total").await;
    assert_eq!(fetches, 3, "each picture fetched once");
    for path in advertised.iter().filter(|p| !broken.contains(p)) {
        for accept in [Some(ACCEPT), None] {
            let first = fetch(&listen, path, accept).await;
            assert_eq!(first.status, StatusCode::OK, "{path}");
            assert_eq!(
                header(&first, "x-cache-status"),
                "HIT",
                "{path} with {accept:?}: {}",
                nginx.error_log()
            );
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let direct = server.request(Method::GET, path, &headers).await;
            assert_eq!(direct.header("x-cache"), "HIT", "{path} with {accept:?}");
        }
    }
    assert_eq!(
        server.metric("imgrelay_transforms_total").await,
        transforms,
        "nothing was made again"
    );
}
