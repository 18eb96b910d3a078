//! The decoding rules through `imgrelay serve`, on the generated files of tests/data/images/gen-*
//! (see tests/common/hostile.rs): what browsers decode is decoded, what they refuse is refused,
//! and no image costs more than its limits allow.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hostile::{self, gradient, PALETTE};
use common::{upstream, Origin, Server};
use http::{Method, StatusCode};

const WEBP: &str = "image/webp,image/*;q=0.8";

fn images_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/images")
}

#[test]
fn generated_files_match_their_generator() {
    let regenerate = std::env::var_os("IMGRELAY_REGENERATE").is_some();
    for (name, bytes) in hostile::files() {
        let path = images_dir().join(name);
        if regenerate {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{name}: {e} (IMGRELAY_REGENERATE=1 writes it)"));
        assert!(
            stored == bytes,
            "{name} differs from what the generator builds"
        );
    }
}

async fn get(server: &Server, file: &str, options: &str, accept: Option<&str>) -> common::Reply {
    let path = server.path(&upstream(file), options);
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    server.request(Method::GET, &path, &headers).await
}

fn text(r: &common::Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_bombs_are_refused_at_once_while_normal_requests_keep_their_latency() {
    let origin = Origin::start().await;
    let server = Arc::new(Server::in_process(&origin, &[]));
    let normal = |w: u32| {
        let server = server.clone();
        async move {
            let started = Instant::now();
            let r = get(&server, "photo-1280x960.jpg", &format!("{w}x0"), None).await;
            assert_eq!(r.status, StatusCode::OK);
            started.elapsed()
        }
    };
    let alone = normal(640).await;
    let bomb = |w: u32| {
        let server = server.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = get(
                &server,
                "gen-scan-bomb-7000x7000.jpg",
                &format!("{w}x0"),
                None,
            )
            .await;
            (r.status, text(&r), started.elapsed())
        })
    };
    let (b1, b2) = (bomb(640), bomb(320));
    let beside = normal(480).await;
    for b in [b1, b2] {
        let (status, body, took) = b.await.unwrap();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert!(body.contains("300 scans"), "{body}");
        assert!(took < Duration::from_secs(1), "bomb answered in {took:?}");
    }
    assert!(
        beside < alone * 3 + Duration::from_millis(300),
        "a normal request took {beside:?} beside two bombs, {alone:?} alone"
    );
    let r = get(&server, "gen-many-scans-1000x1000.jpg", "320x0", None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", text(&r));
    assert!(text(&r).contains("image.max_jpeg_scans"));
    // An ordinary progressive JPEG is untouched by the rule.
    let r = get(&server, "progressive-800x600.jpg", "320x0", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpegs_decode_through_recoverable_warnings_but_not_missing_data() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    for (file, w, h) in [
        ("gen-stray-before-dht-1800x1200.jpg", 1800, 1200),
        ("gen-stray-before-sos-1800x1200.jpg", 1800, 1200),
        ("gen-bad-sos-params-640x480.jpg", 640, 480),
    ] {
        let r = get(&server, file, "0x0,png", None).await;
        assert_eq!(r.status, StatusCode::OK, "{file}: {}", text(&r));
        let img = hostile::decode(&r.body).to_rgb8();
        assert_eq!(img.dimensions(), (w, h), "{file}");
        // The picture itself, not grey padding: compare with what was encoded.
        let want = gradient(w, h);
        let off: u64 = img
            .as_raw()
            .iter()
            .zip(&want)
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = off as f64 / want.len() as f64;
        assert!(mean < 4.0, "{file}: mean difference {mean}");
    }
    let r = get(&server, "gen-cut-mid-scan-640x480.jpg", "320x0", None).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", text(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pngs_decode_once_every_row_is_there() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let gradient = gradient(300, 200);
    let intact = std::fs::read(images_dir().join("interlaced-300x200.png")).unwrap();
    let interlaced = hostile::decode(&intact).to_rgb8().into_raw();
    for (file, want) in [
        ("gen-no-iend-300x200.png", &gradient),
        ("gen-interlaced-no-iend-300x200.png", &interlaced),
        ("gen-cut-after-rows-300x200.png", &gradient),
        ("gen-trailing-garbage-300x200.png", &gradient),
        ("gen-bad-crc-after-rows-300x200.png", &gradient),
    ] {
        let r = get(&server, file, "0x0,png", None).await;
        assert_eq!(r.status, StatusCode::OK, "{file}: {}", text(&r));
        let img = hostile::decode(&r.body).to_rgb8();
        assert_eq!(img.dimensions(), (300, 200), "{file}");
        assert!(
            img.as_raw() == want,
            "{file}: pixels differ from the source's"
        );
    }
    let r = get(&server, "gen-cut-mid-rows-300x200.png", "100x0", None).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", text(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webp_that_libwebp_refuses_is_refused_and_never_passed_through() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    for accept in [Some(WEBP), None] {
        for (file, options) in [
            ("gen-corrupt-lossless-320x240.webp", "320x240"),
            ("gen-corrupt-lossless-320x240.webp", "100x0"),
            ("gen-corrupt-frame-animated-120x90.webp", "120x90"),
            ("gen-corrupt-frame-animated-120x90.webp", "60x0"),
        ] {
            let r = get(&server, file, options, accept).await;
            assert_eq!(
                r.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{file} {options} {accept:?}: {}",
                text(&r)
            );
            assert_ne!(
                r.header("cache-control"),
                "public, max-age=31536000, immutable"
            );
        }
    }
    // Healthy WebPs still go through.
    let r = get(&server, "lossless-alpha-320x240.webp", "160x0", Some(WEBP)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&server, "animated-200x150.webp", "200x150", Some(WEBP)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifs_decode_within_their_own_limits() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    for (file, options) in [
        ("gen-offset-frames-1000x1000.gif", "200x0"),
        ("gen-offset-frames-1000x1000.gif", "1000x1000"),
        ("gen-many-frames-472x298.gif", "236x0"),
        ("gen-no-trailer-64x48.gif", "32x0"),
        ("gen-trailing-garbage-64x48.gif", "32x0"),
    ] {
        let r = get(&server, file, options, None).await;
        assert_eq!(r.status, StatusCode::OK, "{file} {options}: {}", text(&r));
        assert_eq!(r.header("content-type"), "image/gif", "{file}");
    }
    let tight = Server::in_process(&origin, &[("IMAGE__MAX_ANIMATION_PIXELS", "50000000")]);
    let r = get(&tight, "gen-many-frames-472x298.gif", "236x0", None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = text(&r);
    assert!(body.contains("380 frames of 472x298"), "{body}");
    assert!(body.contains("image.max_animation_pixels"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palette_and_tiny_sources_keep_their_colours() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    for (file, size) in [
        ("gen-icon-8x8-palette.png", 8u32),
        ("gen-checker-64x64-palette.png", 64),
    ] {
        for accept in [Some(WEBP), None] {
            let r = get(&server, file, &format!("{size}x{size}"), accept).await;
            assert_eq!(r.status, StatusCode::OK, "{file}");
            let img = hostile::decode(&r.body).to_rgb8();
            assert_eq!(img.dimensions(), (size, size));
            for p in img.pixels() {
                assert!(
                    PALETTE.contains(&p.0),
                    "{file} as {}: colour {:?} is not in the palette",
                    r.header("content-type"),
                    p.0
                );
            }
        }
    }
}
