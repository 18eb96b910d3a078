//! The two planes through a real `imgrelay serve`: the public listener serves images, healthz
//! and the page proxy and nothing that signs or reveals; the control plane (its own listener,
//! optionally behind a bearer token) serves the rewrite endpoint and metrics.

mod common;

use common::{Blog, Origin, Server};
use http::{Method, StatusCode};

const WRAPPED_ANY_HOST: &str =
    "<img src=\"https://cors.zfour.workers.dev/?http://any-host.example/x.jpg\">";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_signs_nothing_and_reveals_nothing() {
    let origin = Origin::start().await;
    let blog = Blog::start().await;
    let url = blog.url();
    let server = Server::in_process(&origin, &[("ORIGIN__URL", &url)]);
    for (method, path) in [
        (Method::POST, "/_imgrelay/rewrite"),
        (Method::GET, "/_imgrelay/metrics"),
        (Method::GET, "/_imgrelay/anything"),
    ] {
        let r = server
            .request(method.clone(), path, &[("content-type", "text/html")])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(blog.seen(path).is_none(), "{path} went to the origin");
    }
    assert_eq!(
        server.get("/_imgrelay/healthz").await.status,
        StatusCode::OK
    );
    // The control plane has them, and serves no images or pages.
    assert_eq!(
        server.admin_get("/_imgrelay/healthz").await.status,
        StatusCode::OK
    );
    let metrics = server.admin_get("/_imgrelay/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&metrics.body).contains("imgrelay_requests_total"));
    let image = server.path(&common::upstream("photo-640x480.jpg"), "64x64");
    let r = server
        .request_to(server.admin, Method::GET, &image, &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = server
        .request_to(server.admin, Method::GET, "/pages/x.html", &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// A rewrite of a page with a wrapped URL for any host on the control plane, with `auth` as
/// the Authorization header.
async fn rewrite(server: &Server, auth: Option<&str>) -> (StatusCode, String) {
    let mut headers = vec![("content-type", "text/html")];
    headers.extend(auth.map(|a| ("authorization", a)));
    let reply = server
        .post_with(
            server.admin,
            "/_imgrelay/rewrite",
            &headers,
            WRAPPED_ANY_HOST.as_bytes().to_vec(),
        )
        .await;
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_token_is_required_when_configured() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "c0ntrol-plane-t0ken-for-tests\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let origin = Origin::start().await;
    let token = token_file.display().to_string();
    let server = Server::in_process(&origin, &[("SERVER__ADMIN_TOKEN_FILE", &token)]);
    let (status, _) = rewrite(&server, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = rewrite(&server, Some("Bearer wrong-token-of-some-length")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = rewrite(&server, Some("Bearer c0ntrol-plane-t0ken-for-tests")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.proxied(body.as_bytes()).len(), 1, "{body}");
    let metrics = server.admin_get("/_imgrelay/metrics").await;
    assert_eq!(metrics.status, StatusCode::UNAUTHORIZED);
    assert!(metrics.header("www-authenticate").starts_with("Bearer"));
    // Probes need no token.
    assert_eq!(
        server.admin_get("/_imgrelay/healthz").await.status,
        StatusCode::OK
    );
}

#[test]
fn a_token_file_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "c0ntrol-plane-t0ken-for-tests\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let key = dir.path().join("imgrelay.key");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             admin_token_file = {:?}\n[signing]\nkey_file = {:?}\n",
            token_file.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgrelay"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("writable by group or others"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_proxy_without_an_allow_list_is_warned_about() {
    let origin = Origin::start().await;
    let blog = Blog::start().await;
    let url = blog.url();
    let open = Server::start(&origin, &[("ORIGIN__URL", &url)]);
    open.wait_for_log(|l| l.contains("upstream.allowed_hosts is empty"));
    let listed = Server::start(
        &origin,
        &[
            ("ORIGIN__URL", &url),
            ("UPSTREAM__ALLOWED_HOSTS", "[\"*.1sapp.com\"]"),
        ],
    );
    assert_eq!(
        listed.get("/_imgrelay/healthz").await.status,
        StatusCode::OK
    );
    assert!(!listed
        .logs()
        .iter()
        .any(|l| l.contains("upstream.allowed_hosts is empty")));
    // With the allow-list, a wrapped URL to another host in a page is signed but never fetched.
    let stranger = open.path("http://any-host.example/x.jpg", "64x64");
    let r = listed.get(&stranger).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
