//! The test harness: one key, a local origin, `imgrelay serve` as a subprocess or in process,
//! the CLI runner, and one scanner for the proxied URLs in any output.
#![allow(dead_code, unreachable_pub)]

pub mod blog;
pub mod cli;
pub mod conformance;
pub mod hostile;
pub mod origin;
pub mod redis;
pub mod serve;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use imgrelay::signing::{Key, KeyRing};
use imgrelay::urls::{Options, UrlSigner};

#[allow(unused_imports)]
pub use blog::Blog;
pub use origin::Origin;

/// Upstream host names pinned to the origin in every test server.
pub const HOSTS: &[&str] = &[
    "static.1sapp.com",
    "img.example.com",
    "public.example.net",
    "img.qupost.example",
    "pic.newsfeed.example.cn",
    "p3.imgcdn.example.com",
];
/// The one signing key of every test.
pub const KEY_HEX: &str = "5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1";

pub fn key_ring() -> KeyRing {
    KeyRing::new(Key::from_hex(KEY_HEX).unwrap(), vec![])
}

/// A file of tests/data.
pub fn data(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// Where the server under test runs.
enum Process {
    /// `imgrelay serve`: for signals, logs, HTTP/2 and resource limits.
    Child(Child),
    /// The same routes and listeners inside the test process: for route tests.
    InProcess(imgrelay::internals::InProcess),
}

pub struct Server {
    process: Process,
    pub addr: SocketAddr,
    /// The control plane (rewrite endpoint, metrics).
    pub admin: SocketAddr,
    pub signer: UrlSigner,
    logs: Arc<Mutex<Vec<String>>>,
    client: Client<HttpConnector, Empty<Bytes>>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Server {
    /// Starts `imgrelay serve` with upstream pins to `origin` and `env` overrides
    /// (`("UPSTREAM__TIMEOUT_MS", "1000")` sets `IMGRELAY_UPSTREAM__TIMEOUT_MS`).
    pub fn start(origin: &Origin, env: &[(&str, &str)]) -> Server {
        Self::start_under(origin, env, &[])
    }

    /// Like [`Server::start`], with the server inside the test process: the same config, routes
    /// and listeners, without a process (no logs, signals or exit status).
    pub fn in_process(origin: &Origin, env: &[(&str, &str)]) -> Server {
        use imgrelay::config::{Config, Overrides, Settings};
        let (dir, config_file) = write_config(origin);
        let text = std::fs::read_to_string(&config_file).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (format!("IMGRELAY_{k}"), v.to_string()));
        let config = Config::from_parts(Some((&config_file, &text)), env, &Overrides::default())
            .expect("test config");
        let settings = Settings::from_config(&config).expect("test settings");
        let keys = KeyRing::load(&settings.keys).expect("test key");
        let server = imgrelay::internals::InProcess::start(settings, keys).expect("in process");
        Server {
            addr: server.addr,
            admin: server.admin.expect("control plane"),
            process: Process::InProcess(server),
            signer: UrlSigner::new(key_ring(), "/img"),
            logs: Arc::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    /// Like [`Server::start`], with the server run through `launcher` (a command that ends by
    /// executing its arguments, e.g. `bash -c 'ulimit -n 256 && exec "$@"' --`).
    pub fn start_under(origin: &Origin, env: &[(&str, &str)], launcher: &[&str]) -> Server {
        let (dir, config_file) = write_config(origin);
        let binary = env!("CARGO_BIN_EXE_imgrelay");
        let mut cmd = match launcher.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_file)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("IMGRELAY_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(format!("IMGRELAY_{k}"), v);
        }
        let mut child = cmd.spawn().expect("imgrelay serve starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        // Keep draining stderr for the server's whole life so logging never blocks it.
        std::thread::spawn(move || {
            let mut admin = None;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = logged_field(&line, "admin_addr") {
                    admin = Some(a);
                } else if let Some(addr) = logged_field(&line, "addr") {
                    let _ = tx.send((addr, admin.take()));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (addr, admin) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((a, admin)) => (
                a.parse().unwrap(),
                admin.expect("control plane address logged before the listening line"),
            ),
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {:?}", logs.lock().unwrap());
            }
        };
        let admin = admin.parse().unwrap();
        Server {
            process: Process::Child(child),
            addr,
            admin,
            signer: UrlSigner::new(key_ring(), "/img"),
            logs,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    /// The signed path for `source` with canonical `options`.
    pub fn path(&self, source: &str, options: &str) -> String {
        let url = url::Url::parse(source).unwrap();
        self.signer.url_for(&url, &Options::parse(options).unwrap())
    }

    pub async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request_to(self.addr, method, path, headers).await
    }

    /// A GET to the control plane.
    pub async fn admin_get(&self, path: &str) -> Reply {
        self.request_to(self.admin, Method::GET, path, &[]).await
    }

    pub async fn request_to(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).unwrap();
        let fut = async {
            let resp = self.client.request(req).await.expect("request");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .expect("reply within 60 s")
    }

    /// POSTs `body` as `content_type` to `path` on `addr`.
    pub async fn post_to(
        &self,
        addr: SocketAddr,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        self.post_with(addr, path, &[("content-type", content_type)], body)
            .await
    }

    /// POSTs `body` with `headers` to `path` on `addr`.
    pub async fn post_with(
        &self,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let client =
            Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
        let mut req = Request::post(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        let fut = async {
            let resp = client.request(req).await.expect("request");
            let (parts, body) = resp.into_parts();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body: body.collect().await.expect("body").to_bytes(),
            }
        };
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .expect("reply within 60 s")
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[]).await
    }

    /// Value of an unlabelled or labelled metric line, e.g. `imgrelay_transforms_total` or
    /// `imgrelay_cache_bytes{cache="variants"}`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.admin_get("/_imgrelay/metrics").await.body;
        let text = String::from_utf8_lossy(&text).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
    }

    /// The server's process id (for /proc figures).
    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Child(child) => child.id(),
            Process::InProcess(_) => panic!("an in-process server has no process"),
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The first log line matching `pred`, waiting for stderr to be read (up to 10 s).
    pub fn wait_for_log(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no matching log line in {:?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.process {
            Process::Child(child) => child,
            Process::InProcess(_) => panic!("an in-process server has no process"),
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// Sends SIGTERM without waiting for the process to exit.
    pub fn sigterm(&self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// Waits (at most 15 s) for the process to exit.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Process::Child(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A key file and a config serving on free loopback ports with the test hosts pinned to
/// `origin`.
fn write_config(origin: &Origin) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("imgrelay.key");
    std::fs::write(&key_file, KEY_HEX).unwrap();
    // A key file others may read gets a warning; tests keep theirs private, as operators do.
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace_s = 5\n\
         [signing]\nkey_file = {key:?}\n\
         [upstream.resolve]\n{pins}",
        key = key_file.display().to_string(),
        pins = origin.pins(HOSTS),
    );
    let config_file = dir.path().join("config.toml");
    std::fs::write(&config_file, config).unwrap();
    (dir, config_file)
}

/// `http://static.1sapp.com/<path>` (pinned to the origin).
pub fn upstream(path: &str) -> String {
    format!("http://static.1sapp.com/{}", path.trim_start_matches('/'))
}

/// A field of a startup log line (`addr`, `admin_addr`), in the text or the JSON log format.
fn logged_field(line: &str, field: &str) -> Option<String> {
    let prefix = format!("{field}=");
    if let Some(addr) = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
    {
        return Some(addr.to_string());
    }
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    json["fields"][field].as_str().map(str::to_string)
}

/// One corpus page: its file name and the upstream URLs its rewritten form must proxy.
pub struct CorpusPage {
    pub file: String,
    pub must_rewrite: std::collections::BTreeSet<String>,
}

/// The stored HTML pages of tests/data/manifest.json (on-demand ones excluded).
pub fn corpus_pages() -> Vec<CorpusPage> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifest.json");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    m["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "html-page" && d["on_demand"].as_bool() != Some(true))
        .map(|d| CorpusPage {
            file: d["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string(),
            must_rewrite: d["refs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["must_rewrite"].as_bool() == Some(true))
                .map(|r| r["upstream_url_ascii"].as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

/// Every proxied path (`{prefix}/{sig}/{options}/{source}`) in `body` with its request, each
/// verified with `signer`; panics on one that does not verify. Only occurrences that start an
/// attribute value (quoted, or after an entity such as `&quot;`), a srcset entry or a CSS/YAML
/// value count, so upstream paths such as
/// `/qupost/img/…` do not, and only those of three segments, so local files like `/img/x.gif`
/// do not.
pub fn proxied_paths(
    body: &[u8],
    prefix: &str,
    signer: &UrlSigner,
) -> Vec<(String, imgrelay::urls::ProxyRequest)> {
    let needle = format!("{prefix}/");
    memchr::memmem::find_iter(body, needle.as_bytes())
        .filter(|&at| {
            at == 0
                || matches!(
                    body[at - 1],
                    b'"' | b'\'' | b' ' | b'(' | b'=' | b'\n' | b';'
                )
        })
        .filter_map(|at| {
            let rest = &body[at + needle.len()..];
            let len = rest
                .iter()
                .position(|b| {
                    !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b',' | b'/'))
                })
                .unwrap_or(rest.len());
            // A srcset separator may follow the source, which never contains a comma.
            let path = std::str::from_utf8(&rest[..len])
                .unwrap()
                .trim_end_matches(',');
            (path.split('/').count() >= 3).then_some(path)
        })
        .map(|path| {
            let request = signer
                .verify_path(path)
                .unwrap_or_else(|e| panic!("proxied URL {path} does not verify: {e}"));
            (format!("{prefix}/{path}"), request)
        })
        .collect()
}

impl Server {
    /// Every proxied image path (`/img/…`) in `body`; see [`proxied_paths`].
    pub fn proxied(&self, body: &[u8]) -> Vec<(String, imgrelay::urls::ProxyRequest)> {
        proxied_paths(body, "/img", &self.signer)
    }
}

/// Occurrences of `needle` in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    memchr::memmem::find_iter(hay, needle).count()
}
