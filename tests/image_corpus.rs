//! Every image of tests/data/images through `imgrelay serve`, as the manifest expects.

mod common;

use std::time::{Duration, Instant};

use common::{upstream, Origin, Server};
use http::{Method, StatusCode};
use serde_json::Value;

const BOX: u32 = 200;

fn manifest_images() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/manifest.json");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["on_demand"] != Value::Bool(true))
        // Without the `avif` feature AVIF cannot be decoded: see
        // avif_sources_pass_through_only_when_they_fit.
        .filter(|i| cfg!(feature = "avif") || i["format"] != "avif")
        .cloned()
        .collect()
}

/// The size a fit into `bw`x`bh` gives, never upscaled.
fn fitted(w: u32, h: u32, bw: u32, bh: u32) -> (f64, f64) {
    let scale = (f64::from(bw) / f64::from(w))
        .min(f64::from(bh) / f64::from(h))
        .min(1.0);
    (f64::from(w) * scale, f64::from(h) * scale)
}

/// The start of a body, for failure messages.
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned()
}

fn expected_status(reason: &str) -> StatusCode {
    match reason {
        "too-many-pixels" | "too-large-bytes" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_image_is_served_or_refused_as_the_manifest_says() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let mut failures = Vec::new();
    for accept in ["image/webp,image/*;q=0.8,*/*;q=0.5", "image/*"] {
        for img in manifest_images() {
            let file = img["file"].as_str().unwrap();
            let path = server.path(&upstream(file), &format!("{BOX}x{BOX}"));
            let started = Instant::now();
            let r = server
                .request(Method::GET, &path, &[("accept", accept)])
                .await;
            let took = started.elapsed();
            if img["expected"] == "ok" {
                if r.status != StatusCode::OK {
                    failures.push(format!("{file}: {} {}", r.status, snippet(&r.body)));
                    continue;
                }
                let out = match image::load_from_memory(&r.body) {
                    Ok(out) => out,
                    Err(e) => {
                        failures.push(format!("{file}: does not decode: {e}"));
                        continue;
                    }
                };
                let (dw, dh) = (
                    img["display_width"].as_u64().unwrap() as u32,
                    img["display_height"].as_u64().unwrap() as u32,
                );
                let (ew, eh) = fitted(dw, dh, BOX, BOX);
                let (w, h) = (out.width(), out.height());
                if w > BOX
                    || h > BOX
                    || (f64::from(w) - ew).abs() > 1.0
                    || (f64::from(h) - eh).abs() > 1.0
                {
                    failures.push(format!(
                        "{file}: {w}x{h}, expected about {ew:.0}x{eh:.0} ({accept})"
                    ));
                }
                if !r.header("content-type").starts_with("image/")
                    || r.header("content-type") == "image/svg+xml"
                {
                    failures.push(format!("{file}: content-type {}", r.header("content-type")));
                }
            } else {
                let reason = img["reject_reason"].as_str().unwrap();
                if r.status != expected_status(reason) {
                    failures.push(format!(
                        "{file} ({reason}): {} {}",
                        r.status,
                        snippet(&r.body)
                    ));
                }
                if r.header("cache-control") != "no-store" {
                    failures.push(format!("{file}: error without no-store"));
                }
                // Refusals come from headers and magic bytes, not from decoding everything.
                if took > Duration::from_secs(5) {
                    failures.push(format!("{file}: refusal took {took:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_upstream_paths_resolve_to_their_images() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/upstream-map.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let (upath, file) = map
        .iter()
        .find(|(_, f)| f.as_str() == "photo-640x422.jpg")
        .expect("the map names photo-640x422.jpg");
    let r = server.get(&server.path(&upstream(upath), "320x0")).await;
    assert_eq!(r.status, StatusCode::OK, "{upath} -> {file}");
    let out = image::load_from_memory(&r.body).unwrap();
    assert_eq!((out.width(), out.height()), (320, 211));
    assert_eq!(origin.hits(upath), 1);
}

#[cfg(not(feature = "avif"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avif_sources_pass_through_only_when_they_fit() {
    let origin = Origin::start().await;
    let server = Server::in_process(
        &origin,
        &[("IMAGE__FORMATS", "[\"avif\", \"webp\", \"jpeg\", \"png\"]")],
    );
    let source = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/images/photo-640x480.avif"
    ))
    .unwrap();
    let fits = server.path(&upstream("photo-640x480.avif"), "800x800");
    let r = server
        .request(
            Method::GET,
            &fits,
            &[("accept", "image/avif,image/webp,*/*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "image/avif");
    assert_eq!(&r.body[..], &source[..], "served unchanged");
    // A client without AVIF support, or a resize, cannot be served from an AVIF source.
    let r = server
        .request(Method::GET, &fits, &[("accept", "image/webp,*/*")])
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let smaller = server.path(&upstream("photo-640x480.avif"), "320x0");
    let r = server
        .request(Method::GET, &smaller, &[("accept", "image/avif")])
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}
