//! The rewriter sees a document as a browser's parser does: after inline SVG or MathML, raw
//! text (`<script>`, `<style>`, `<textarea>` …) stays raw and is never rewritten, and every
//! `<img>` a browser would create is. Through the CLI and the HTTP rewrite endpoint.

mod common;

use std::path::PathBuf;

use common::conformance::{documents, Doc};
use common::{cli, Origin, Server};
use http::StatusCode;

fn dir() -> PathBuf {
    common::data("conformance")
}

#[test]
fn generated_documents_match_their_generator() {
    let regenerate = std::env::var_os("IMGRELAY_REGENERATE").is_some();
    for doc in documents() {
        let path = dir().join(doc.name);
        if regenerate {
            std::fs::write(&path, &doc.html).unwrap();
            continue;
        }
        let stored = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (IMGRELAY_REGENERATE=1 writes it)", doc.name));
        assert!(
            stored == doc.html,
            "{} differs from what the generator builds",
            doc.name
        );
    }
}

/// What is wrong with `doc`'s output, if anything.
fn check(doc: &Doc, output: &str, proxied: usize) -> Vec<String> {
    let mut wrong = Vec::new();
    if proxied != doc.proxied {
        wrong.push(format!(
            "{}: {proxied} proxied URLs, expected {}",
            doc.name, doc.proxied
        ));
    }
    for kept in doc.kept.iter().filter(|k| !output.contains(k.as_str())) {
        wrong.push(format!("{}: {kept} was changed", doc.name));
    }
    wrong
}

#[test]
fn foreign_content_is_parsed_as_browsers_do_through_the_cli() {
    let env = cli::env("");
    let mut wrong = Vec::new();
    for doc in documents() {
        let input = std::fs::read(dir().join(doc.name)).unwrap();
        let out = cli::rewrite(&env, &input);
        let text = String::from_utf8(out.clone()).unwrap();
        wrong.extend(check(&doc, &text, cli::proxied(&out).len()));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_content_is_parsed_as_browsers_do_through_the_endpoint() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let mut wrong = Vec::new();
    for doc in documents() {
        let input = std::fs::read(dir().join(doc.name)).unwrap();
        let reply = server
            .post_to(server.admin, "/_imgrelay/rewrite", "text/html", input)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", doc.name);
        let out = String::from_utf8(reply.body.to_vec()).unwrap();
        wrong.extend(check(&doc, &out, server.proxied(&reply.body).len()));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
