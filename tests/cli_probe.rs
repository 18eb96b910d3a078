//! `imgrelay rewrite --probe` against a local origin: every kind of picture a post can point
//! at, what the markup, the report and the summary say of each, the probe cache on disk, and
//! `--fail-on-broken`.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{cli, upstream, Origin, HOSTS, KEY_HEX};

fn wrap(path: &str) -> String {
    format!("https://cors.zfour.workers.dev/?{}", upstream(path))
}

/// A config signing with the test key, its hosts pinned to `origin`, a 1 s fetch timeout.
fn config(dir: &Path, origin: &Origin) -> std::path::PathBuf {
    let key = dir.join("imgrelay.key");
    std::fs::write(&key, KEY_HEX).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_prefix = \"{}\"\n[signing]\nkey_file = {key:?}\n\
             [upstream]\ntimeout_ms = 1000\n[upstream.resolve]\n{}",
            cli::PREFIX,
            origin.pins(HOSTS)
        ),
    )
    .unwrap();
    config
}

struct Run {
    code: Option<i32>,
    stderr: String,
    output: String,
    report: Vec<serde_json::Value>,
}

/// `imgrelay rewrite --probe … post.md` in `dir`, off the runtime that serves the origin.
async fn rewrite(dir: &Path, config: &Path, extra: &'static [&'static str]) -> Run {
    let (dir, config) = (dir.to_path_buf(), config.to_path_buf());
    tokio::task::spawn_blocking(move || rewrite_blocking(&dir, &config, extra))
        .await
        .unwrap()
}

fn rewrite_blocking(dir: &Path, config: &Path, extra: &[&str]) -> Run {
    let post = dir.join("post.md");
    let out = dir.join("out");
    let report = dir.join("report.jsonl");
    let mut args = vec![
        "rewrite".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--probe".into(),
        "--probe-cache".into(),
        dir.join("probes.json").display().to_string(),
        "--report".into(),
        report.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(post.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = cli::run(&args, b"");
    let report = std::fs::read_to_string(&report)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Run {
        code: run.status.code(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
        output: std::fs::read_to_string(out.join("post.md")).unwrap_or_default(),
        report,
    }
}

/// The `<img>` tag whose `data-canonical-url` is `wrapped`.
fn tag<'a>(output: &'a str, wrapped: &str) -> &'a str {
    let at = output
        .find(&format!("data-canonical-url=\"{wrapped}\""))
        .unwrap_or_else(|| panic!("no tag for {wrapped} in {output}"));
    let start = output[..at].rfind("<img").unwrap();
    let end = at + output[at..].find('>').unwrap();
    &output[start..=end]
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// The widths of a srcset value's candidates.
fn widths(srcset: &str) -> Vec<u32> {
    srcset
        .split(", ")
        .map(|c| {
            c.rsplit(' ')
                .next()
                .unwrap()
                .trim_end_matches('w')
                .parse()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_sizes_reports_and_caches_every_picture() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &origin);
    let wrong_hint = wrap("photo-640x480.jpg");
    let wide = wrap("photo-1280x960.jpg");
    let narrow = wrap("photo-640x422.jpg");
    let unhinted = wrap("photo-640x480.jpg?unhinted");
    let missing = wrap("status/404/gone.jpg");
    let slow = wrap("slow/4/photo-640x422.jpg");
    let not_image = wrap("html-page.jpg");
    let cover = wrap("photo-1280x960.jpg?cover");
    let post = format!(
        "---\ntitle: probe\ncover: {cover}\n---\n\
         <img src=\"{wrong_hint}\" data-size=\"640,422\">\n\
         <img src=\"{wide}\" data-size=\"640,480\">\n\
         <img src=\"{narrow}\" data-size=\"1280,844\">\n\
         <img src=\"{unhinted}\">\n\
         <img src=\"{missing}\" data-size=\"640,480\">\n\
         <img src=\"{slow}\" data-size=\"640,422\">\n\
         <img src=\"{not_image}\" data-size=\"640,480\">\n"
    );
    std::fs::write(dir.path().join("post.md"), &post).unwrap();

    let first = rewrite(dir.path(), &config, &[]).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let out = &first.output;

    // The hint has another shape than the picture: the picture's own size wins.
    let t = tag(out, &wrong_hint);
    assert_eq!(
        (attr(t, "width"), attr(t, "height")),
        (Some("640"), Some("480")),
        "{t}"
    );
    // Twice as wide as its hint: laid out at the hint, srcset up to the picture's width.
    let t = tag(out, &wide);
    assert_eq!(
        (attr(t, "width"), attr(t, "height")),
        (Some("640"), Some("480")),
        "{t}"
    );
    assert_eq!(
        widths(attr(t, "srcset").unwrap()),
        [320, 640, 960, 1280],
        "{t}"
    );
    // Narrower than its hint: no candidate wider than the picture.
    let t = tag(out, &narrow);
    assert_eq!(
        (attr(t, "width"), attr(t, "height")),
        (Some("1280"), Some("844")),
        "{t}"
    );
    assert_eq!(widths(attr(t, "srcset").unwrap()), [320, 640], "{t}");
    // No hint: sized from the picture.
    let t = tag(out, &unhinted);
    assert_eq!(
        (attr(t, "width"), attr(t, "height")),
        (Some("640"), Some("480")),
        "{t}"
    );
    assert_eq!(widths(attr(t, "srcset").unwrap()), [320, 640], "{t}");
    // Broken pictures are still rewritten, as without probing (the proxy answers for them and
    // retries the upstream later), and reported.
    for broken in [&missing, &slow, &not_image] {
        let t = tag(out, broken);
        assert!(attr(t, "src").unwrap().starts_with(cli::PREFIX), "{t}");
    }

    let by_upstream: HashMap<String, &serde_json::Value> = first
        .report
        .iter()
        .map(|r| (r["upstream"].as_str().unwrap_or_default().to_string(), r))
        .collect();
    let entry = |wrapped: &str| {
        let url = wrapped.split_once("/?").unwrap().1;
        by_upstream
            .get(url)
            .unwrap_or_else(|| panic!("no report for {url}: {:?}", first.report))
    };
    let e = entry(&wrong_hint);
    assert_eq!(e["probe"]["status"], "ok");
    assert_eq!(e["probe"]["format"], "image/jpeg");
    assert_eq!(
        (e["probe"]["width"].as_u64(), e["probe"]["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert!(e["probe"]["bytes"].as_u64().unwrap() > 1000);
    assert_eq!(e["hint"], "mismatch");
    assert_eq!(entry(&wide)["hint"], "same-shape");
    assert_eq!(entry(&narrow)["hint"], "same-shape");
    assert!(entry(&unhinted).get("hint").is_none());
    let e = entry(&cover);
    assert_eq!(e["place"], "front-matter:cover");
    assert_eq!(
        (e["probe"]["width"].as_u64(), e["probe"]["height"].as_u64()),
        (Some(1280), Some(960))
    );
    assert_eq!(entry(&missing)["probe"]["status"], "not-found");
    assert_eq!(entry(&slow)["probe"]["status"], "timeout");
    assert_eq!(entry(&not_image)["probe"]["status"], "not-an-image");
    assert!(entry(&missing).get("hint").is_none());

    assert!(
        first
            .stderr
            .contains("probed 8 pictures (8 upstream requests) in ")
            && first.stderr.contains(
                ": 8 references, 8 rewritten, 3 broken (not-an-image 1, not-found 1, timeout 1), \
             1 hint mismatches"
            ),
        "{}",
        first.stderr
    );
    assert_eq!(origin.total(), 8, "one request per picture");
    assert_eq!(origin.hits("/status/404/gone.jpg"), 1);

    // Again with the cache: only the broken pictures are asked for again; `--fail-on-broken`.
    let second = rewrite(dir.path(), &config, &["--fail-on-broken"]).await;
    assert_eq!(second.code, Some(3), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("probed 8 pictures (3 upstream requests)"),
        "{}",
        second.stderr
    );
    assert_eq!(
        second.output, first.output,
        "the cache answers what a probe would"
    );
    assert_eq!(origin.total(), 11);
    assert_eq!(
        origin.hits("/photo-640x480.jpg"),
        2,
        "the two pictures at this path"
    );
    assert_eq!(origin.hits("/status/404/gone.jpg"), 2);
}

/// The dominant colour an independent decoder finds: the fullest cell of a 4-bit-per-channel
/// histogram over every pixel, averaged.
fn dominant(path: &str) -> [u8; 3] {
    let image = image::open(common::data(&format!("images/{path}")))
        .unwrap()
        .to_rgb8();
    let mut cells: HashMap<[u8; 3], (u64, [u64; 3])> = HashMap::new();
    for px in image.pixels() {
        let (n, sum) = cells.entry(px.0.map(|v| v >> 4)).or_default();
        *n += 1;
        for (s, v) in sum.iter_mut().zip(px.0) {
            *s += u64::from(v);
        }
    }
    let (n, sum) = cells.values().max_by_key(|(n, _)| *n).unwrap();
    sum.map(|s| (s / n) as u8)
}

fn hex(colour: &str) -> [u8; 3] {
    let c = colour.strip_prefix('#').unwrap();
    [0, 2, 4].map(|i| u8::from_str_radix(&c[i..i + 2], 16).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholders_are_each_pictures_dominant_colour() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &origin);
    let plain = wrap("gray-640x480.jpg");
    let lazy = wrap("photo-640x422.jpg");
    let styled = wrap("photo-1280x960.jpg");
    let post = format!(
        "<img src=\"{plain}\" data-size=\"640,480\">\n\
         <img class=\"lazyload\" src=\"data:image/gif;base64,R0lGODlhAQABAAAAACw=\" \
         data-src=\"{lazy}\" data-size=\"640,422\">\n\
         <img src=\"{styled}\" style=\"border:0\">\n"
    );
    std::fs::write(dir.path().join("post.md"), &post).unwrap();
    let run = rewrite(dir.path(), &config, &["--placeholder"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.output;
    let colour = |t: &str, prefix: &str| {
        let style = attr(t, "style").unwrap_or_else(|| panic!("no style: {t}"));
        hex(style
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{style}")))
    };
    let close =
        |got: [u8; 3], want: [u8; 3]| got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 16);
    let got = colour(tag(out, &plain), "background-color: ");
    assert!(close(got, dominant("gray-640x480.jpg")), "{got:?}");
    // A lazy picture keeps its box's shape as well.
    let got = colour(
        tag(out, &lazy),
        "aspect-ratio: 640 / 422; background-color: ",
    );
    assert!(close(got, dominant("photo-640x422.jpg")), "{got:?}");
    // The author's own style stays as written.
    assert_eq!(attr(tag(out, &styled), "style"), Some("border:0"));
    // The colour is in the report, and a run without --placeholder adds none.
    let rewritten: Vec<_> = run
        .report
        .iter()
        .filter(|r| r["action"] == "rewritten")
        .collect();
    assert_eq!(rewritten.len(), 3);
    assert!(
        rewritten.iter().all(|r| r["probe"]["colour"].is_string()),
        "{rewritten:?}"
    );
    let plain_run = rewrite(dir.path(), &config, &[]).await;
    assert!(
        !plain_run.output.contains("background-color"),
        "{}",
        plain_run.output
    );
}
