//! The whole corpus through `imgrelay rewrite`, checked against tests/data/manifest.json.

mod common;

use std::collections::BTreeSet;

use common::cli::{env, proxied, rewrite, Env};
use common::{count, data};
use serde_json::Value;
use url::Url;

fn manifest() -> Value {
    let text = std::fs::read_to_string(data("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn documents(m: &Value) -> Vec<&Value> {
    m["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["on_demand"].as_bool() != Some(true))
        .collect()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn flag(v: &Value, key: &str) -> bool {
    v[key].as_bool().unwrap_or(false)
}

fn ascii(url: &str) -> String {
    Url::parse(url).unwrap().as_str().to_string()
}

/// Which references a policy turns into proxied URLs.
#[derive(Clone, Copy, PartialEq)]
enum Policy {
    /// Defaults: wrapped URLs only; direct upstream URLs are kept.
    WrappedOnly,
    /// `direct_hosts` lists every upstream host: direct upstream URLs are proxied too.
    DirectHosts,
}

/// Checks one document's output; returns the number of references found rewritten.
fn check_document(doc: &Value, input: &[u8], output: &[u8], policy: Policy) -> usize {
    let id = s(doc, "id");
    if flag(doc, "expect_identical_output") {
        assert_eq!(output, input, "{id}: output must equal input");
        return 0;
    }
    let refs = doc["refs"].as_array().unwrap();
    let sources: BTreeSet<String> = proxied(output)
        .into_iter()
        .map(|r| r.source.as_str().to_string())
        .collect();

    // Whether a reference must, may or must not become a proxied URL under `policy`.
    let direct = |r: &Value| r["wrapper"].is_null();
    let must = |r: &Value| {
        (flag(r, "must_rewrite") && !flag(r, "policy_dependent"))
            || (policy == Policy::DirectHosts && flag(r, "policy_dependent") && direct(r))
    };
    let may = |r: &Value| flag(r, "policy_dependent") && !direct(r) && flag(r, "must_rewrite");

    let mut allowed = BTreeSet::new();
    for r in refs {
        if must(r) || may(r) {
            let up = ascii(s(r, "upstream_url_ascii"));
            allowed.insert(up.clone());
            if must(r) {
                assert!(
                    sources.contains(&up),
                    "{}: {} ({}) not rewritten to {up}",
                    s(r, "id"),
                    s(r, "original"),
                    s(r, "context")
                );
            }
        }
    }
    for src in &sources {
        assert!(
            allowed.contains(src),
            "{id}: unexpected proxied source {src}"
        );
    }

    // Exact accounting: every original string disappears once per rewritten reference
    // containing it and stays everywhere else (data-canonical-url is off here).
    // Originals are text; the files hold them in the document's encoding.
    let encoding =
        encoding_rs::Encoding::for_label(s(doc, "encoding").trim_end_matches("-bom").as_bytes())
            .unwrap_or(encoding_rs::UTF_8);
    let bytes = |r: &Value| encoding.encode(s(r, "original")).0.into_owned();
    let originals: BTreeSet<Vec<u8>> = refs.iter().map(bytes).collect();
    for o in &originals {
        let o = o.as_slice();
        let base = count(input, o)
            .checked_sub(
                refs.iter()
                    .filter(|r| must(r))
                    .map(|r| count(&bytes(r), o))
                    .sum::<usize>(),
            )
            .unwrap_or_else(|| panic!("{id}: {:?} counted wrongly", String::from_utf8_lossy(o)));
        let optional: usize = refs
            .iter()
            .filter(|r| may(r))
            .map(|r| count(&bytes(r), o))
            .sum();
        let got = count(output, o);
        assert!(
            got <= base && got + optional >= base,
            "{id}: {:?} occurs {got} times in the output, expected {base} (-{optional} optional)",
            String::from_utf8_lossy(o)
        );
    }

    // Preserved ranges appear unchanged and in order.
    let mut at = 0;
    for p in doc["preserve"].as_array().unwrap() {
        let off = p["offset"].as_u64().unwrap() as usize;
        let len = p["length"].as_u64().unwrap() as usize;
        let bytes = &input[off..off + len];
        match memchr::memmem::find(&output[at..], bytes) {
            Some(found) => at += found + len,
            None => panic!(
                "{id}: preserved {} range at {off} ({:?}) missing or out of order",
                s(p, "kind"),
                String::from_utf8_lossy(bytes)
            ),
        }
    }
    check_front_matter_quoting(id, refs, output, &must);
    refs.iter().filter(|r| must(r)).count()
}

/// Rewritten front matter values keep their YAML quoting style.
fn check_front_matter_quoting(
    id: &str,
    refs: &[Value],
    output: &[u8],
    must: &dyn Fn(&Value) -> bool,
) {
    let Some(close) = memchr::memmem::find(output.get(4..).unwrap_or_default(), b"\n---") else {
        return;
    };
    let fm = &output[..close + 4];
    let style_count = |style: &str| {
        refs.iter()
            .filter(|r| s(r, "context") == "front-matter" && must(r) && s(r, "yaml_style") == style)
            .count()
    };
    let p = common::cli::PREFIX;
    let plain = count(fm, format!(": {p}/").as_bytes()) + count(fm, format!("- {p}/").as_bytes());
    assert_eq!(
        count(fm, format!("'{p}/").as_bytes()),
        style_count("single"),
        "{id}: single-quoted"
    );
    assert_eq!(
        count(fm, format!("\"{p}/").as_bytes()),
        style_count("double"),
        "{id}: double-quoted"
    );
    assert_eq!(plain, style_count("plain"), "{id}: plain scalars");
}

fn run_corpus(env: &Env, policy: Policy) -> (usize, usize) {
    let m = manifest();
    let mut docs = 0;
    let mut rewritten = 0;
    for doc in documents(&m) {
        let input = std::fs::read(data(s(doc, "path"))).unwrap();
        let output = rewrite(env, &input);
        rewritten += check_document(doc, &input, &output, policy);
        docs += 1;
    }
    (docs, rewritten)
}

#[test]
fn corpus_wrapped_urls_become_signed_proxy_urls() {
    let env = env("canonical_attr = false");
    let (docs, rewritten) = run_corpus(&env, Policy::WrappedOnly);
    let m = manifest();
    assert_eq!(docs, documents(&m).len());
    assert!(docs >= 29, "corpus has {docs} documents");
    let expected: usize = documents(&m)
        .iter()
        .flat_map(|d| d["refs"].as_array().unwrap())
        .filter(|r| flag(r, "must_rewrite") && !flag(r, "policy_dependent"))
        .count();
    assert_eq!(rewritten, expected);
}

#[test]
fn corpus_with_direct_hosts_proxies_direct_upstream_urls() {
    let m = manifest();
    let hosts: Vec<String> = m["upstream_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{:?}", h.as_str().unwrap()))
        .collect();
    let env = env(&format!(
        "canonical_attr = false\ndirect_hosts = [{}]",
        hosts.join(", ")
    ));
    run_corpus(&env, Policy::DirectHosts);
}

#[test]
fn gbk_page_stays_gbk() {
    let env = env("");
    let input = std::fs::read(data("articles/pages/page-gbk.html")).unwrap();
    let output = rewrite(&env, &input);
    assert!(std::str::from_utf8(&input).is_err(), "fixture is GBK");
    assert!(
        std::str::from_utf8(&output).is_err(),
        "output must not become UTF-8"
    );
    let (text, _, had_errors) = encoding_rs::GBK.decode(&output);
    assert!(!had_errors, "output is not valid GBK");
    assert!(text.contains("charset=\"gbk\"") || text.to_ascii_lowercase().contains("gbk"));
    assert!(!proxied(&output).is_empty());
    let (input_text, _, _) = encoding_rs::GBK.decode(&input);
    // All non-ASCII text survives: the same CJK characters in the same order.
    let cjk = |t: &str| t.chars().filter(|c| !c.is_ascii()).collect::<String>();
    assert_eq!(cjk(&text), cjk(&input_text));
}

#[test]
fn canonical_attribute_keeps_the_original_url() {
    let env = env("");
    let input = std::fs::read(data("articles/posts/canonical.md")).unwrap();
    let output = String::from_utf8(rewrite(&env, &input)).unwrap();
    assert!(output.contains(
        "data-canonical-url=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/qupost/img/2022/03/02/b8c5be25b34b6431263b3e6f8ead5506.jpeg\""
    ));
}
