//! The rewriter sees a document as a browser's parser does: after inline SVG or MathML, raw
//! text (`<script>`, `<style>`, `<textarea>` …) stays raw and is never rewritten, and every
//! `<img>` a browser would create is. Through the CLI and the HTTP rewrite endpoint.

mod common;

use std::path::PathBuf;

use common::conformance::{documents, Doc, THEME_UPSTREAMS};
use common::{cli, Origin, Server};
use http::StatusCode;
use imgrelay::urls::{Options, ProxyRequest, UrlSigner};
use yaml_rust2::{Yaml, YamlLoader};

fn dir() -> PathBuf {
    common::data("conformance")
}

#[test]
fn generated_documents_match_their_generator() {
    let regenerate = std::env::var_os("IMGRELAY_REGENERATE").is_some();
    for doc in documents() {
        let path = dir().join(doc.name);
        if regenerate {
            std::fs::write(&path, doc.bytes()).unwrap();
            continue;
        }
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (IMGRELAY_REGENERATE=1 writes it)", doc.name));
        assert!(
            stored == doc.bytes(),
            "{} differs from what the generator builds",
            doc.name
        );
    }
}

/// A post's front matter (between its `---` lines) and the rest.
fn split_post(text: &str) -> (&str, &str) {
    let Some(rest) = text.strip_prefix("---") else {
        return ("", text);
    };
    let close = rest.find("\n---").expect("a closing --- line");
    let body = &rest[close + 4..];
    (&rest[..close], body)
}

/// How a YAML loader reads one key: its string, or its sequence's strings.
fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(items) => items.iter().flat_map(strings).collect(),
        other => vec![format!("{other:?}")],
    }
}

fn load(front_matter: &str) -> Vec<(String, Vec<String>)> {
    let docs = YamlLoader::load_from_str(front_matter)
        .unwrap_or_else(|e| panic!("front matter does not load: {e}\n{front_matter}"));
    let Some(Yaml::Hash(map)) = docs.into_iter().next() else {
        panic!("front matter is not a mapping:\n{front_matter}");
    };
    map.iter()
        .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), strings(v)))
        .collect()
}

/// An independent loader reads the rewritten front matter: image keys hold proxied URLs of
/// the expected upstreams, every other key holds what it held.
fn check_front_matter(
    doc: &Doc,
    input: &str,
    output: &str,
    prefix: &str,
    signer: &UrlSigner,
) -> Vec<String> {
    let before = load(split_post(input).0);
    let after = load(split_post(output).0);
    let mut wrong = Vec::new();
    if before.iter().map(|k| &k.0).ne(after.iter().map(|k| &k.0)) {
        wrong.push(format!("{}: keys changed", doc.name));
    }
    for ((key, old), (_, new)) in before.iter().zip(&after) {
        let Some((_, upstreams)) = doc.front_matter.iter().find(|(k, _)| k == key) else {
            if old != new {
                wrong.push(format!("{}: {key} changed: {old:?} -> {new:?}", doc.name));
            }
            continue;
        };
        let got: Vec<String> = new
            .iter()
            .map(
                |value| match common::proxied_paths(value.as_bytes(), prefix, signer)[..] {
                    [(ref path, ref request)] if path == value => request.source.to_string(),
                    _ => format!("not proxied: {value}"),
                },
            )
            .collect();
        if got != *upstreams {
            wrong.push(format!(
                "{}: {key}: {got:?}, expected {upstreams:?}",
                doc.name
            ));
        }
    }
    wrong
}

/// What is wrong with `doc`'s output, if anything, given the sources of its proxied URLs.
fn check(doc: &Doc, input: &str, output: &str, prefix: &str, signer: &UrlSigner) -> Vec<String> {
    let mut wrong = Vec::new();
    let (_, body) = split_post(output);
    let sources: Vec<String> = common::proxied_paths(body.as_bytes(), prefix, signer)
        .into_iter()
        .map(|(_, r)| r.source.to_string())
        .collect();
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
        wrong.push(format!("{}: {kept:?} was changed", doc.name));
    }
    if !doc.front_matter.is_empty() {
        wrong.extend(check_front_matter(doc, input, output, prefix, signer));
    }
    wrong
}

/// The text of a rewritten document, which must come out in the encoding and with the BOM it
/// went in with.
fn text_of(doc: &Doc, output: Vec<u8>) -> Result<String, String> {
    let Some(big_endian) = doc.utf16 else {
        return String::from_utf8(output).map_err(|e| format!("{}: {e}", doc.name));
    };
    let bom: &[u8] = if big_endian { b"\xFE\xFF" } else { b"\xFF\xFE" };
    let Some(body) = output.strip_prefix(bom) else {
        return Err(format!("{}: not UTF-16 with its BOM", doc.name));
    };
    let text = common::conformance::utf16_text(body, big_endian)
        .ok_or_else(|| format!("{}: not valid UTF-16", doc.name))?;
    if common::conformance::utf16_bytes(&text, big_endian) != body {
        return Err(format!("{}: not in its byte order", doc.name));
    }
    Ok(text)
}

/// Posts go to the endpoint as Markdown, pages as HTML.
fn content_type(doc: &Doc) -> &'static str {
    if doc.name.ends_with(".md") {
        "text/markdown"
    } else {
        "text/html"
    }
}

#[test]
fn foreign_content_is_parsed_as_browsers_do_through_the_cli() {
    let env = cli::env("");
    let mut wrong = Vec::new();
    for doc in documents() {
        let input = std::fs::read(dir().join(doc.name)).unwrap();
        match text_of(&doc, cli::rewrite(&env, &input)) {
            Ok(out) => wrong.extend(check(&doc, &doc.html, &out, cli::PREFIX, &cli::signer())),
            Err(e) => wrong.push(e),
        }
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
            .post_to(
                server.admin,
                "/_imgrelay/rewrite",
                content_type(&doc),
                input,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", doc.name);
        match text_of(&doc, reply.body.to_vec()) {
            Ok(out) => wrong.extend(check(&doc, &doc.html, &out, "/img", &server.signer)),
            Err(e) => wrong.push(e),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A UTF-16 page known only from its transport charset (no BOM) comes back without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf16_from_the_transport_charset_is_rewritten_without_a_bom() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let page = format!("<p><img src=\"{}\"></p>", common::conformance::WRAPPED);
    let input = common::conformance::utf16_bytes(&page, true);
    let reply = server
        .post_to(
            server.admin,
            "/_imgrelay/rewrite",
            "text/html; charset=utf-16be",
            input,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = common::conformance::utf16_text(&reply.body, true).expect("UTF-16BE out");
    assert!(text.starts_with("<p><img src=\"/img/"), "{text}");
    assert_eq!(server.proxied(text.as_bytes()).len(), 1);
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

/// What a Hexo theme's output must show: Hexo's own `open_graph()` scan finds the proxied URL,
/// lazy loaders get a `data-srcset` (and `data-sizes="auto"` for lazysizes) and an aspect ratio
/// beside their placeholder, and density candidates are signed for their density.
fn check_theme(output: &str, proxied: &[(String, ProxyRequest)], prefix: &str) {
    // hexo/lib/plugins/helper/open_graph.js
    let og = regex::Regex::new(r#"<img [^>]*src=['"]([^'"]+)"#).unwrap();
    let first = og.captures(output).expect("an img for open_graph()")[1].to_string();
    assert!(
        first.starts_with(&format!("{prefix}/")),
        "open_graph() takes {first}"
    );

    let tags: Vec<&str> = output.split("<img ").skip(1).collect();
    assert_eq!(tags.len(), 4);
    let lazy = tags[1];
    assert!(lazy.contains("data-sizes=\"auto\""), "{lazy}");
    assert!(
        lazy.contains("style=\"aspect-ratio: 1280 / 720\""),
        "{lazy}"
    );
    assert!(lazy.contains(" 1280w\""), "{lazy}");
    let original = tags[2];
    assert!(original.contains("data-srcset=\""), "{original}");
    assert!(
        original.contains("sizes=\"(max-width: 800px) 100vw, 800px\""),
        "{original}"
    );
    assert!(
        original.contains("style=\"aspect-ratio: 800 / 600\""),
        "{original}"
    );
    // The plain image keeps its shape through width/height, without a style.
    assert!(!tags[0].contains("style="), "{}", tags[0]);

    let of = |upstream: &str| -> Vec<Options> {
        proxied
            .iter()
            .filter(|(_, r)| r.source.as_str() == upstream)
            .map(|(_, r)| r.options)
            .collect()
    };
    let dprs: Vec<u8> = of(THEME_UPSTREAMS[3]).iter().map(|o| o.dpr).collect();
    assert_eq!(dprs, [1, 1, 2, 3], "src, then 1x, 2x, 3x");
    assert!(of(THEME_UPSTREAMS[3])
        .iter()
        .all(|o| (o.width, o.height) == (320, 200)));
    let lazy_widths: Vec<u32> = of(THEME_UPSTREAMS[1]).iter().map(|o| o.width).collect();
    assert_eq!(lazy_widths, [1280, 320, 640, 960, 1280]);
}

#[test]
fn theme_and_lazy_loader_markup_through_the_cli() {
    let env = cli::env("");
    let input = std::fs::read(dir().join("hexo-theme.html")).unwrap();
    let out = String::from_utf8(cli::rewrite(&env, &input)).unwrap();
    let proxied = common::proxied_paths(out.as_bytes(), cli::PREFIX, &cli::signer());
    check_theme(&out, &proxied, cli::PREFIX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn theme_and_lazy_loader_markup_through_the_endpoint() {
    let origin = Origin::start().await;
    let server = Server::in_process(&origin, &[]);
    let input = std::fs::read(dir().join("hexo-theme.html")).unwrap();
    let reply = server
        .post_to(server.admin, "/_imgrelay/rewrite", "text/html", input)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let out = String::from_utf8(reply.body.to_vec()).unwrap();
    check_theme(&out, &server.proxied(&reply.body), "/img");
}
