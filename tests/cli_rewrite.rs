//! `imgrelay rewrite` and `imgrelay sign` as users run them.

mod common;

use common::cli::{bin, env, proxied, run, signer, Env, PREFIX};
use common::data;
use imgrelay::urls::{decode_source, Format, Options};
use url::Url;

fn cfg(env: &Env) -> &str {
    env.config.to_str().unwrap()
}

#[test]
fn seed_article_front_matter_and_sized_image() {
    let env = env("");
    let path = data("seed/000_65910dd6f91e206f.txt");
    let out = bin()
        .args(["rewrite", "--config", cfg(&env)])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let upstream =
        "http://static.1sapp.com/qupost/img/2022/03/25/f226a1eb1166275c128ff666c3bdb6b3.jpeg";
    let s = signer();
    let unsized_url = s.url_for(&Url::parse(upstream).unwrap(), &Options::sized(1280, 0));
    for key in ["headimg", "thumbnail"] {
        assert!(
            text.contains(&format!("\n{key}: '{unsized_url}'\n")),
            "{key} not rewritten in place"
        );
    }
    let src = s.url_for(&Url::parse(upstream).unwrap(), &Options::sized(640, 422));
    let small = s.url_for(&Url::parse(upstream).unwrap(), &Options::sized(320, 0));
    let img = format!(
        "<img src=\"{src}\" data-size=\"640,422\" referrerpolicy=\"no-referrer\" width=\"640\" height=\"422\" srcset=\"{small} 320w, {src} 640w\" sizes=\"(max-width: 640px) 100vw, 640px\" data-canonical-url=\"https://cors.zfour.workers.dev/?{upstream}\">"
    );
    assert!(text.contains(&img), "first image not rewritten as expected");
    // Later images are lazy; the first one is not.
    assert_eq!(
        text.matches("loading=\"lazy\" decoding=\"async\"").count(),
        1
    );
    // Everything but the rewritten lines and tags is unchanged.
    let input = std::fs::read_to_string(&path).unwrap();
    let kept = |t: &str| {
        t.lines()
            .filter(|l| !l.contains("cors.zfour.workers.dev") && !l.contains(PREFIX))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&text), kept(&input));
    for r in proxied(text.as_bytes()) {
        assert!(r
            .source
            .as_str()
            .starts_with("http://static.1sapp.com/qupost/img/2022/03/25/"));
    }
}

#[test]
fn report_lists_every_reference() {
    let env = env("");
    let report = env.dir.path().join("report.jsonl");
    let outdir = env.dir.path().join("out");
    let files = [
        data("articles/posts/must-not.md"),
        data("articles/posts/dimensions.md"),
    ];
    let out = bin()
        .args(["rewrite", "--config", cfg(&env), "--out"])
        .arg(&outdir)
        .arg("--report")
        .arg(&report)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "quiet when not on a terminal");
    assert!(outdir.join("must-not.md").exists() && outdir.join("dimensions.md").exists());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        for key in [
            "file",
            "place",
            "original",
            "action",
            "reason",
            "upstream",
            "size_hint",
        ] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    let action = |file: &str, needle: &str| {
        lines
            .iter()
            .find(|l| {
                l["file"].as_str().unwrap().ends_with(file)
                    && l["original"].as_str().unwrap().contains(needle)
            })
            .map(|l| l["action"].as_str().unwrap().to_string())
    };
    assert_eq!(
        action("must-not.md", "www.example.org").as_deref(),
        Some("kept")
    );
    assert_eq!(
        action("must-not.md", "cors.zfour.workers.dev").as_deref(),
        Some("rewritten")
    );
    assert!(lines.iter().any(|l| l["size_hint"]["status"] == "malformed"
        && l["reason"].as_str().unwrap().contains("malformed")));
    assert!(lines
        .iter()
        .any(|l| l["size_hint"]["status"] == "whitespace"));
}

#[test]
fn in_place_rewrites_files_and_failures_are_named() {
    let env = env("");
    let a = env.dir.path().join("a.md");
    std::fs::copy(data("articles/posts/canonical.md"), &a).unwrap();
    let missing = env.dir.path().join("missing.md");
    let out = bin()
        .args(["rewrite", "--config", cfg(&env), "--in-place"])
        .arg(&missing)
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.md"), "{stderr}");
    let rewritten = std::fs::read(&a).unwrap();
    assert_eq!(
        proxied(&rewritten).len(),
        2 + 2 * 3,
        "two front matter keys, then src + two srcset widths per image"
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn bad_usage_exits_2_and_missing_key_is_named() {
    let env = env("");
    let c = cfg(&env);
    for args in [
        vec!["rewrite", "--config", c, "a", "b"],
        vec!["rewrite", "--config", c, "--in-place"],
        vec!["rewrite", "--config", c, "--in-place", "--out", "d", "a"],
        vec!["rewrite", "--bogus"],
        vec![
            "sign",
            "--config",
            c,
            "--size",
            "12",
            "http://a.example/x.jpg",
        ],
        vec![
            "sign",
            "--config",
            c,
            "--format",
            "gif",
            "http://a.example/x.jpg",
        ],
    ] {
        let out = run(&args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let key = dir.path().join("nokey.hex");
    std::fs::write(&config, format!("[signing]\nkey_file = {key:?}\n")).unwrap();
    for sub in ["rewrite", "sign"] {
        let out = run(
            &[sub, "--config", config.to_str().unwrap()],
            b"http://a.example/x.jpg\n",
        );
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("nokey.hex"), "{sub}: {stderr}");
    }
}

#[test]
fn bad_input_never_panics() {
    let env = env("");
    let check = |name: &str, input: &[u8], unchanged: bool| -> Vec<u8> {
        let out = run(&["rewrite", "--config", cfg(&env)], input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        if unchanged {
            assert!(out.stdout == input, "{name}: output differs from input");
        }
        out.stdout
    };
    let mut garbage = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..300_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x >> 24) as u8);
    }
    check("binary garbage", &garbage, false);
    let gbk_undeclared = encoding_rs::GBK
        .encode("<p>没有声明的编码</p><img src=\"/x.jpg\">")
        .0;
    check("undeclared GBK", &gbk_undeclared, true);

    let unterminated = b"---\ntitle: x\nheadimg: 'https://cors.zfour.workers.dev/?http://static.1sapp.com/a.jpg'\n<p>no end";
    let out = run(&["rewrite", "--config", cfg(&env)], unterminated);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, unterminated);
    assert!(String::from_utf8_lossy(&out.stderr).contains("front matter"));

    let long_url = format!(
        "<img src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/{}.jpg\">",
        "a".repeat(8192)
    );
    let out = check("8 KB URL", long_url.as_bytes(), false);
    assert_eq!(proxied(&out).len(), 1);

    let attrs: String = (0..150).map(|i| format!(" data-a{i}=\"{i}\"")).collect();
    let many = format!(
        "<img{attrs} src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/b.jpg\">"
    );
    let out = check("150 attributes", many.as_bytes(), false);
    assert_eq!(proxied(&out).len(), 1);
    assert!(String::from_utf8_lossy(&out).contains(" data-a149=\"149\""));

    let data_url = format!(
        "<p>x</p><img src=\"data:image/png;base64,{}\"><img src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/c.jpg\">",
        "QUJD".repeat(5 * 1024 * 1024 / 4)
    );
    let out = run(&["rewrite", "--config", cfg(&env)], data_url.as_bytes());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, data_url.as_bytes(), "passed through unchanged");
    assert!(String::from_utf8_lossy(&out.stderr).contains("passed through unchanged"));

    // UTF-16 is rewritten and written back in UTF-16 (tests/rewrite_conformance.rs has the rest).
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            "<img src=\"https://cors.zfour.workers.dev/?http://a.example/x.jpg\">"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let out = run(&["rewrite", "--config", cfg(&env)], &utf16);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.starts_with(&[0xFF, 0xFE]));
    let text = common::conformance::utf16_text(&out.stdout[2..], false).expect("UTF-16LE out");
    assert_eq!(proxied(text.as_bytes()).len(), 1, "{text}");
}

#[test]
fn sign_prints_verifiable_urls_and_unwraps() {
    let env = env("");
    let upstream =
        "http://static.1sapp.com/qupost/img/2022/03/25/f226a1eb1166275c128ff666c3bdb6b3.jpeg";
    let sign = |url: &str, extra: &[&str]| -> String {
        let mut args = vec!["sign", "--config", cfg(&env)];
        args.extend_from_slice(extra);
        args.push(url);
        let out = run(&args, b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    };
    let bare = sign(upstream, &["--size", "640x0", "--format", "webp"]);
    let req = signer()
        .verify_path(bare.strip_prefix(&format!("{PREFIX}/")).unwrap())
        .unwrap();
    assert_eq!(req.source.as_str(), upstream);
    assert_eq!(
        req.options,
        Options {
            format: Some(Format::Webp),
            ..Options::sized(640, 0)
        }
    );
    for wrapped in [
        format!("https://cors.zfour.workers.dev/?{upstream}"),
        format!("https://cors-anywhere.herokuapp.com/{upstream}"),
        format!(
            "https://corsproxy.io/?{}",
            percent_encoding::utf8_percent_encode(upstream, percent_encoding::NON_ALPHANUMERIC)
        ),
    ] {
        assert_eq!(
            sign(&wrapped, &["--size", "640x0", "--format", "webp"]),
            bare,
            "{wrapped}"
        );
    }
    // One per line from stdin; a bad line is named and the rest still printed.
    let input = format!("{upstream}\nnot a url\n\nhttps://cors.zfour.workers.dev/?{upstream}\n");
    let out = run(&["sign", "--config", cfg(&env)], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], lines[1]);
    assert_eq!(decode_source(lines[0]).as_deref(), Some(upstream));
}

#[test]
fn config_options_shape_the_markup() {
    let env = common::cli::env_with(
        "fetchpriority = true\nlazy = false\ncanonical_attr = false\nmax_width = 320\nsrcset_widths = [160, 320]",
        "",
    );
    // public_base_url lives in [server]; write the whole file again with it.
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "[server]\n",
        "[server]\npublic_base_url = \"https://blog.example.com/\"\n",
    );
    std::fs::write(&env.config, text).unwrap();
    let input = concat!(
        "<html><head><meta property=\"og:image\" content=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/og.jpg\"></head><body>",
        "<img src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/a.jpg?x=1&amp;y=2\" data-size=\"4000,3000\">",
        "<img src=\"https://cors.zfour.workers.dev/?http://static.1sapp.com/b.jpg\" data-size=\"640,480\" width=\"10\">",
        "<script>var u='https://cors.zfour.workers.dev/?http://static.1sapp.com/c.jpg';</script>",
        "</body></html>"
    );
    let out = String::from_utf8(common::cli::rewrite(&env, input.as_bytes())).unwrap();
    assert!(
        out.contains("<meta property=\"og:image\" content=\"https://blog.example.com/p9x/"),
        "{out}"
    );
    let reqs = proxied(out.as_bytes());
    let sources: Vec<&str> = reqs.iter().map(|r| r.source.as_str()).collect();
    // Entities are decoded before the URL is taken apart.
    assert!(
        sources.contains(&"http://static.1sapp.com/a.jpg?x=1&y=2"),
        "{sources:?}"
    );
    // 4000x3000 capped to 320 wide keeps its aspect; srcset stops at the target.
    assert!(
        out.contains("width=\"320\" height=\"240\" srcset=\""),
        "{out}"
    );
    assert!(reqs.iter().any(|r| r.options == Options::sized(320, 240)));
    assert!(reqs.iter().any(|r| r.options == Options::sized(160, 0)));
    assert!(out.contains("fetchpriority=\"high\""));
    assert!(!out.contains("loading=") && !out.contains("data-canonical-url"));
    // An existing width is kept and no height is invented next to it.
    assert!(out.contains(" width=\"10\"") && !out.contains("height=\"480\""));
    assert!(out.contains(
        "<script>var u='https://cors.zfour.workers.dev/?http://static.1sapp.com/c.jpg';</script>"
    ));
}

#[test]
fn write_failures_are_reported() {
    let env = env("");
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return;
    };
    let out = bin()
        .args(["rewrite", "--config", cfg(&env)])
        .arg(data("articles/posts/canonical.md"))
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canonical.md") && stderr.contains("cannot write"),
        "{stderr}"
    );
}

/// A pseudo-terminal: the master end to read, the path of the slave end to hand a child.
fn pty() -> (std::fs::File, std::path::PathBuf) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain POSIX calls on a descriptor this function owns; ptsname's buffer is
    // copied before any other call can reuse it. A test's helper, not the product: the
    // standard library has no safe way to open a pseudo-terminal.
    #[allow(unsafe_code)]
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0, "grantpt");
        assert_eq!(libc::unlockpt(master), 0, "unlockpt");
        let name = libc::ptsname(master);
        assert!(!name.is_null(), "ptsname");
        let path = std::ffi::CStr::from_ptr(name).to_str().unwrap().into();
        (std::fs::File::from_raw_fd(master), path)
    }
}

#[test]
fn progress_is_shown_on_a_terminal_only() {
    use std::io::Read;
    let env = env("");
    let out_dir = env.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut files = Vec::new();
    for name in ["one.md", "two.md", "three.md"] {
        let path = env.dir.path().join(name);
        std::fs::copy(data("articles/posts/canonical.md"), &path).unwrap();
        files.push(path);
    }
    let (mut master, slave) = pty();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave)
        .unwrap();
    let mut child = bin()
        .args(["rewrite", "--config", cfg(&env), "--out"])
        .arg(&out_dir)
        .args(&files)
        .stderr(terminal)
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success());
    // Only the child held the terminal: once it is gone, reading ends (EIO on Linux).
    let mut shown = Vec::new();
    let _ = master.read_to_end(&mut shown);
    let shown = String::from_utf8_lossy(&shown);
    for step in ["[1/3] ", "[2/3] ", "[3/3] ", "3 of 3 files rewritten"] {
        assert!(shown.contains(step), "{step:?} missing in {shown:?}");
    }
    assert!(shown.contains("three.md"), "{shown:?}");
    // Without a terminal there is nothing to redraw.
    let quiet = bin()
        .args(["rewrite", "--config", cfg(&env), "--out"])
        .arg(&out_dir)
        .args(&files)
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert!(
        quiet.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&quiet.stderr)
    );
}
