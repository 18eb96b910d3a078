//! A local blog origin for the page proxy: serves tests/data/articles pages as HTML, raw files,
//! statuses, hop-by-hop headers, a request echo, slow answers and generated pages.
//!
//! Paths: `/pages/<file>` (text/html with the page's charset), `/bare/<file>` (text/html, no
//! charset parameter), `/browser/<file>` (tests/data/browser, text/html), `/files/<file>` (tests/data/images, untouched), `/missing` (404),
//! `/moved` (301), `/hop` (hop-by-hop response headers), `/echo` (records the request headers
//! and answers the body's length and SHA-256), `/slow-headers` (headers after 5 s),
//! `/trickle` (1 MB of HTML in 1 KB pieces 50 ms apart), `/huge` (100 MB of HTML, generated),
//! `/encoded/<coding>/<file>` (a page compressed anyway: `gzip`, `deflate`, `br` whose body
//! is [`encoded_body`], or `corrupt`: gzip with its second half damaged), `/cut` (4 KB of HTML, then the connection is cut), `/stall` (4 KB of HTML, then 10 s of
//! silence).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::origin::{BoxError, ChannelBody};

type BlogBody = BoxBody<Bytes, BoxError>;

/// A wrapped image the generated pages carry.
pub const WRAPPED: &str = "https://cors.zfour.workers.dev/?http://static.1sapp.com/qupost/img/2022/03/02/b8c5be25b34b6431263b3e6f8ead5506.jpeg";
/// Size of `/trickle` and of its pieces, and the pause between pieces.
pub const TRICKLE_BYTES: usize = 1024 * 1024;
pub const TRICKLE_PIECE: usize = 1024;
pub const TRICKLE_PAUSE: Duration = Duration::from_millis(50);
/// Size of `/huge`.
pub const HUGE_BYTES: usize = 100 * 1024 * 1024;

#[derive(Clone)]
pub struct Blog {
    pub addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, HeaderMap>>>,
}

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

impl Blog {
    pub async fn start() -> Blog {
        let seen: Arc<Mutex<HashMap<String, HeaderMap>>> = Arc::default();
        let st = seen.clone();
        let addr = super::serve::spawn(None, move |req| {
            let st = st.clone();
            async move { handle(&st, req).await }
        })
        .await;
        Blog { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request headers of the last request for this path.
    pub fn seen(&self, path: &str) -> Option<HeaderMap> {
        self.seen.lock().unwrap().get(path).cloned()
    }
}

fn full(data: impl Into<Bytes>) -> BlogBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

fn reply(status: u16, ctype: &str, body: impl Into<Bytes>) -> Response<BlogBody> {
    let body = body.into();
    let mut r = Response::new(full(body.clone()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, ctype.parse().unwrap());
    h.insert(header::CONTENT_LENGTH, body.len().into());
    r
}

/// The body of `/encoded/br/…`, a coding the proxy does not undo: a brotli-like first byte,
/// then HTML with a wrapped image.
pub fn encoded_body() -> Vec<u8> {
    let mut body = vec![0x8b];
    body.extend_from_slice(format!("<img src=\"{WRAPPED}\">").as_bytes());
    body
}

/// `page` compressed with `coding` (`gzip` as two members, as a server flushing early sends).
fn compress(coding: &str, page: &[u8]) -> Vec<u8> {
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;
    match coding {
        "gzip" => {
            let (a, b) = page.split_at(page.len() / 2);
            let mut out = Vec::new();
            for member in [a, b] {
                let mut enc = GzEncoder::new(Vec::new(), Compression::default());
                enc.write_all(member).unwrap();
                out.extend_from_slice(&enc.finish().unwrap());
            }
            out
        }
        _ => {
            let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
            enc.write_all(page).unwrap();
            enc.finish().unwrap()
        }
    }
}

/// A body fed by a task, so pages can be paced or generated without being held in memory; an
/// `Err` sent into the channel cuts the connection.
fn channel() -> (mpsc::Sender<Result<Bytes, BoxError>>, BlogBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChannelBody { rx, exact: None }.boxed())
}

fn html_response(body: BlogBody) -> Response<BlogBody> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/html; charset=utf-8".parse().unwrap(),
    );
    r
}

/// 1 MB of HTML: a wrapped image in the first piece, then filler paragraphs.
fn trickle_page() -> Vec<u8> {
    let mut page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>trickle</title></head><body>\n\
         <img src=\"{WRAPPED}\" data-size=\"640,422\">\n"
    )
    .into_bytes();
    while page.len() < TRICKLE_BYTES {
        page.extend_from_slice(
            b"<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>\n",
        );
    }
    page.truncate(TRICKLE_BYTES);
    page
}

/// One 8 KB block of the generated 100 MB page: an image and text.
fn huge_block() -> Bytes {
    let mut block =
        format!("<figure><img src=\"{WRAPPED}\" data-size=\"640,422\"></figure>\n").into_bytes();
    let para: &[u8] = b"<p>Sed ut perspiciatis unde omnis iste natus error sit.</p>\n";
    while block.len() + para.len() <= 8192 {
        block.extend_from_slice(para);
    }
    // Padding, not a cut tag: the blocks stay well-formed however many follow.
    block.resize(8192, b'\n');
    Bytes::from(block)
}

async fn handle(
    seen: &Mutex<HashMap<String, HeaderMap>>,
    req: Request<Incoming>,
) -> Response<BlogBody> {
    let path = req.uri().path().to_string();
    seen.lock()
        .unwrap()
        .insert(path.clone(), req.headers().clone());
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    match segs.as_slice() {
        ["browser", file] if !file.contains("..") => {
            match tokio::fs::read(data().join("browser").join(file)).await {
                Ok(bytes) => reply(200, "text/html; charset=utf-8", bytes),
                Err(_) => reply(404, "text/plain", "no such page\n"),
            }
        }
        ["pages" | "bare", file] if !file.contains("..") => {
            let Ok(bytes) = tokio::fs::read(data().join("articles/pages").join(file)).await else {
                return reply(404, "text/plain", "no such page\n");
            };
            let ctype = if segs[0] == "bare" {
                "text/html"
            } else if file.contains("gbk") {
                "text/html; charset=GBK"
            } else {
                "text/html; charset=utf-8"
            };
            let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..16]);
            let mut r = reply(200, ctype, bytes);
            r.headers_mut().insert(header::ETAG, etag.parse().unwrap());
            r.headers_mut()
                .insert(header::CACHE_CONTROL, "public, max-age=60".parse().unwrap());
            r
        }
        ["files", file] if !file.contains("..") => {
            let Ok(bytes) = tokio::fs::read(data().join("images").join(file)).await else {
                return reply(404, "text/plain", "no such file\n");
            };
            let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..16]);
            let mut r = reply(200, "application/octet-stream", bytes);
            r.headers_mut().insert(header::ETAG, etag.parse().unwrap());
            r
        }
        ["encoded", coding, file] if !file.contains("..") => {
            // Compressed anyway, despite `Accept-Encoding: identity`.
            let Ok(page) = tokio::fs::read(data().join("articles/pages").join(file)).await else {
                return reply(404, "text/plain", "no such page\n");
            };
            let (label, body) = match *coding {
                "br" => ("br", encoded_body()),
                "corrupt" => {
                    let mut body = compress("deflate", &page);
                    let half = body.len() / 2;
                    body[half..].iter_mut().for_each(|b| *b = !*b);
                    ("deflate", body)
                }
                other => (other, compress(other, &page)),
            };
            let mut r = reply(200, "text/html; charset=utf-8", body);
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, label.parse().unwrap());
            r
        }
        ["missing"] => reply(404, "text/html", "<p>not here</p>\n"),
        ["moved"] => {
            let mut r = reply(
                301,
                "text/html",
                "<a href=\"/pages/page-utf8.html\">moved</a>\n",
            );
            r.headers_mut().insert(
                header::LOCATION,
                "http://blog.example/pages/page-utf8.html?from=moved"
                    .parse()
                    .unwrap(),
            );
            r
        }
        ["hop"] => {
            let mut r = reply(200, "text/plain", "hop\n");
            let h = r.headers_mut();
            h.insert(header::CONNECTION, "x-hop-secret".parse().unwrap());
            h.insert("x-hop-secret", "1".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("proxy-agent", "blog".parse().unwrap());
            h.insert("x-end-to-end", "kept".parse().unwrap());
            r
        }
        ["echo"] => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = format!(
                "len={} sha={}\n",
                body.len(),
                hex::encode(Sha256::digest(&body))
            );
            reply(200, "text/plain", text)
        }
        ["slow-headers"] => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            reply(200, "text/html", "<p>late</p>\n")
        }
        ["trickle"] => {
            let (tx, body) = channel();
            tokio::spawn(async move {
                let page = Bytes::from(trickle_page());
                for start in (0..page.len()).step_by(TRICKLE_PIECE) {
                    let end = (start + TRICKLE_PIECE).min(page.len());
                    if tx.send(Ok(page.slice(start..end))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(TRICKLE_PAUSE).await;
                }
            });
            html_response(body)
        }
        ["huge"] => {
            let (tx, body) = channel();
            tokio::spawn(async move {
                let block = huge_block();
                // 64 KB frames of identical blocks; nothing is held beyond one frame.
                let frame: Bytes = block.repeat(8).into();
                let mut sent = 0;
                while sent < HUGE_BYTES {
                    if tx.send(Ok(frame.clone())).await.is_err() {
                        return;
                    }
                    sent += frame.len();
                }
            });
            html_response(body)
        }
        ["cut" | "stall"] => {
            let (tx, body) = channel();
            let cut = segs[0] == "cut";
            tokio::spawn(async move {
                let head = Bytes::from(trickle_page()).slice(..4096);
                let _ = tx.send(Ok(head)).await;
                if cut {
                    let _ = tx.send(Err("cut on purpose".into())).await;
                } else {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            });
            html_response(body)
        }
        _ => reply(404, "text/plain", "not found\n"),
    }
}
