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

/// What is wrong with `doc`'s output, if anything, given the sources of its proxied URLs.
fn check(doc: &Doc, output: &str, sources: &[String]) -> Vec<String> {
    let mut wrong = Vec::new();
    if sources.len() != doc.proxied {
        wrong.push(format!(
            "{}: {} proxied URLs, expected {}",
            doc.name,
            sources.len(),
            doc.proxied
        ));
    }
    if !doc.sources.is_empty() && sources != doc.sources {
        wrong.push(format!(
            "{}: sources {sources:?}, expected {:?}",
            doc.name, doc.sources
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
        let sources: Vec<String> = cli::proxied(&out)
            .into_iter()
            .map(|r| r.source.to_string())
            .collect();
        wrong.extend(check(&doc, &text, &sources));
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
        let sources: Vec<String> = server
            .proxied(&reply.body)
            .into_iter()
            .map(|(_, r)| r.source.to_string())
            .collect();
        wrong.extend(check(&doc, &out, &sources));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_unusable_wrapped_url_is_reported_with_what_to_fix() {
    let env = cli::env("");
    let report = env.dir.path().join("report.jsonl");
    let out = cli::run(
        &[
            "rewrite",
            "--config",
            env.config.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            dir().join("wrapper-forms.html").to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let skipped: Vec<_> = lines.iter().filter(|l| l["action"] == "skipped").collect();
    assert_eq!(skipped.len(), 1, "{lines:?}");
    let reason = skipped[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("\"images/e.jpeg\" is not absolute"),
        "{reason}"
    );
}
