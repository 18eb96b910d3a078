//! A local upstream for the tests: serves tests/data/images by file name and by the paths of
//! tests/data/upstream-map.json, with fault prefixes, and counts requests per path.
//!
//! Prefixes (combinable, e.g. `/redirect/2/slow/wrongtype/x.jpg`):
//! `/slow/[SECONDS/]…` headers at once, body trickled over SECONDS (default 3);
//! `/delay/MS/…` the whole answer after MS milliseconds (a far-away host);
//! `/status/NNN[/…]`; `/redirect/N/…` N relative 302s; `/redirect/loop/…`;
//! `/redirect-to/<percent-encoded absolute URL>` one 302 to that URL;
//! `/truncate/…` full Content-Length, half the body, then the connection is cut;
//! `/wrongtype/…` served as text/html; `/nolength/…` no Content-Length (chunked).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body fed from a channel; an `Err` item cuts the connection. Shared with the blog origin.
pub(crate) struct ChannelBody {
    pub(crate) rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    pub(crate) exact: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.exact
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

fn boxed(b: impl Body<Data = Bytes, Error = BoxError> + Send + Sync + 'static) -> OriginBody {
    use http_body_util::BodyExt;
    b.boxed()
}

fn full(data: impl Into<Bytes>) -> OriginBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

struct State {
    images: PathBuf,
    map: HashMap<String, String>,
    hits: Mutex<HashMap<String, u64>>,
    headers: Mutex<HashMap<String, http::HeaderMap>>,
}

/// The running origin; it stops when the test's runtime ends.
#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    /// The port the pinned upstream URLs use: 80, or 443 over TLS.
    port: u16,
    state: Arc<State>,
}

#[derive(Default, Clone, Copy)]
struct Flags {
    slow: Option<f64>,
    delay: Duration,
    truncate: bool,
    wrongtype: bool,
    nolength: bool,
}

/// A certificate authority made for one test, and a server certificate it signed.
pub struct TestTls {
    pub ca_pem: String,
    /// The server certificate and its key, for servers that read them from files.
    pub cert_pem: String,
    pub key_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TestTls {
    /// A fresh CA and a certificate for `names` signed by it.
    pub fn new(names: &[&str]) -> TestTls {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        TestTls {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        }
    }
}

impl Origin {
    pub async fn start() -> Origin {
        Origin::serve(None).await
    }

    /// The same origin over https, with `tls`'s certificate; pins then name port 443.
    pub async fn start_tls(tls: &TestTls) -> Origin {
        Origin::serve(Some(tls)).await
    }

    async fn serve(tls: Option<&TestTls>) -> Origin {
        let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let map_text = std::fs::read_to_string(data.join("upstream-map.json")).unwrap();
        let map: HashMap<String, String> = serde_json::from_str(&map_text).unwrap();
        let state = Arc::new(State {
            images: data.join("images"),
            map,
            hits: Mutex::new(HashMap::new()),
            headers: Mutex::new(HashMap::new()),
        });
        let st = state.clone();
        let acceptor = tls.map(|t| t.acceptor.clone());
        let addr = super::serve::spawn(acceptor, move |req| {
            let st = st.clone();
            async move { handle(&st, req).await }
        })
        .await;
        let port = if tls.is_some() { 443 } else { 80 };
        Origin { addr, port, state }
    }

    /// Requests seen for exactly this path (query excluded).
    pub fn hits(&self, path: &str) -> u64 {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Request headers of the last request for this path.
    pub fn last_headers(&self, path: &str) -> Option<http::HeaderMap> {
        self.state.headers.lock().unwrap().get(path).cloned()
    }

    /// Requests seen in total.
    pub fn total(&self) -> u64 {
        self.state.hits.lock().unwrap().values().sum()
    }

    /// "host:port" = "127.0.0.1:PORT" pins for the given upstream host names.
    pub fn pins(&self, hosts: &[&str]) -> String {
        self.pin_list(hosts).into_iter().map(|p| p + "\n").collect()
    }

    /// The pins of several origins as one inline TOML table (for `IMGRELAY_UPSTREAM__RESOLVE`).
    pub fn pin_table(origins: &[&Origin], hosts: &[&str]) -> String {
        let pins: Vec<String> = origins.iter().flat_map(|o| o.pin_list(hosts)).collect();
        format!("{{ {} }}", pins.join(", "))
    }

    fn pin_list(&self, hosts: &[&str]) -> Vec<String> {
        hosts
            .iter()
            .map(|h| format!("\"{h}:{}\" = \"{}\"", self.port, self.addr))
            .collect()
    }
}

fn simple(status: u16, body: &str) -> Response<OriginBody> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
    r
}

fn redirect(location: &str) -> Response<OriginBody> {
    let mut r = simple(302, "redirect\n");
    r.headers_mut()
        .insert(header::LOCATION, location.parse().unwrap());
    r
}

async fn handle(st: &State, req: Request<Incoming>) -> Response<OriginBody> {
    let raw = req.uri().path().to_string();
    *st.hits.lock().unwrap().entry(raw.clone()).or_default() += 1;
    st.headers
        .lock()
        .unwrap()
        .insert(raw.clone(), req.headers().clone());
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut segs: Vec<&str> = raw.split('/').skip(1).collect();
    if raw == "/healthz" {
        return simple(200, "ok\n");
    }
    match segs.as_slice() {
        ["status", code, ..] => {
            return match code.parse::<u16>() {
                Ok(c) if (200..600).contains(&c) => simple(c, &format!("status {c}\n")),
                _ => simple(400, "bad status\n"),
            }
        }
        ["redirect-to", target] => {
            let target = percent_encoding::percent_decode_str(target).decode_utf8_lossy();
            return redirect(&target);
        }
        ["redirect", "loop", ..] => return redirect(&format!("{raw}{query}")),
        ["redirect", n, rest @ ..] if !rest.is_empty() => {
            let Ok(n) = n.parse::<u32>() else {
                return simple(400, "bad redirect count\n");
            };
            let rest = rest.join("/");
            if n > 0 {
                let next = if n > 1 {
                    format!("/redirect/{}/{rest}", n - 1)
                } else {
                    format!("/{rest}")
                };
                return redirect(&format!("{next}{query}"));
            }
            segs = raw.split('/').skip(3).collect();
        }
        _ => {}
    }
    let mut flags = Flags::default();
    while let Some(first) = segs.first().copied() {
        match first {
            "slow" => {
                segs.remove(0);
                flags.slow = Some(3.0);
                if let Some(secs) = segs.first().and_then(|s| s.parse::<f64>().ok()) {
                    flags.slow = Some(secs.clamp(0.0, 120.0));
                    segs.remove(0);
                }
            }
            "delay" => {
                segs.remove(0);
                if let Some(ms) = segs.first().and_then(|s| s.parse::<u64>().ok()) {
                    flags.delay = Duration::from_millis(ms.min(60_000));
                    segs.remove(0);
                }
            }
            "truncate" => {
                segs.remove(0);
                flags.truncate = true;
            }
            "wrongtype" => {
                segs.remove(0);
                flags.wrongtype = true;
            }
            "nolength" => {
                segs.remove(0);
                flags.nolength = true;
            }
            _ => break,
        }
    }
    let path = format!("/{}", segs.join("/"));
    let path = percent_encoding::percent_decode_str(&path)
        .decode_utf8_lossy()
        .into_owned();
    let name = st
        .map
        .get(&path)
        .cloned()
        .unwrap_or_else(|| path.trim_start_matches('/').to_string());
    if name.is_empty() || name.contains("..") || name.contains('/') {
        return simple(404, "not found\n");
    }
    tokio::time::sleep(flags.delay).await;
    let Ok(data) = tokio::fs::read(st.images.join(&name)).await else {
        return simple(404, "not found\n");
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&data))[..32]);
    if let Some(inm) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
        {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r.headers_mut().insert(header::ETAG, etag.parse().unwrap());
            return r;
        }
    }
    let ctype = if flags.wrongtype {
        "text/html; charset=utf-8"
    } else {
        match name.rsplit('.').next().unwrap_or("") {
            "jpg" | "jpeg" => "image/jpeg",
            "png" => "image/png",
            "gif" => "image/gif",
            "webp" => "image/webp",
            "avif" => "image/avif",
            "svg" => "image/svg+xml",
            _ => "application/octet-stream",
        }
    };
    let data = Bytes::from(data);
    let size = data.len() as u64;
    let (tx, rx) = mpsc::channel(4);
    let chunks: usize = if flags.slow.is_some() { 20 } else { 1 };
    let limit = if flags.truncate {
        data.len() / 2
    } else {
        data.len()
    };
    let delay = Duration::from_secs_f64(flags.slow.unwrap_or(0.0) / chunks as f64);
    let truncate = flags.truncate;
    if req.method() != http::Method::HEAD {
        tokio::spawn(async move {
            let step = limit.div_ceil(chunks).max(1);
            let mut sent = 0;
            while sent < limit {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let n = step.min(limit - sent);
                if tx.send(Ok(data.slice(sent..sent + n))).await.is_err() {
                    return;
                }
                sent += n;
            }
            if truncate {
                let _ = tx.send(Err("truncated on purpose".into())).await;
            }
        });
    }
    let exact = (!flags.nolength).then_some(size);
    let mut r = Response::new(boxed(ChannelBody { rx, exact }));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, ctype.parse().unwrap());
    h.insert(header::ETAG, etag.parse().unwrap());
    h.insert(header::CACHE_CONTROL, "public, max-age=60".parse().unwrap());
    if let Some(n) = exact {
        h.insert(header::CONTENT_LENGTH, n.into());
    }
    r
}
