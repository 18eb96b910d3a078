//! Key files through the CLI: modes that let others write or read them, placeholder keys, and
//! relative paths resolved next to the config file whatever the working directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::bin;
use common::KEY_HEX;

/// A config in `dir` whose key file is the relative `imgrelay.key`, holding `key` with `mode`.
fn setup(dir: &Path, key: &str, mode: u32) -> std::path::PathBuf {
    let key_file = dir.join("imgrelay.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\
         [signing]\nkey_file = \"imgrelay.key\"\n",
    )
    .unwrap();
    config
}

/// `imgrelay sign` run from `cwd`.
fn sign(config: &Path, cwd: &Path) -> std::process::Output {
    bin()
        .args(["sign", "--size", "64x0", "--config"])
        .arg(config)
        .arg("http://static.1sapp.com/a.jpg")
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn key_files_others_may_read_warn_and_others_may_write_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), KEY_HEX, 0o600);
    let private = sign(&config, elsewhere.path());
    assert!(private.status.success(), "{private:?}");
    assert!(private.stderr.is_empty(), "{private:?}");

    std::fs::set_permissions(
        dir.path().join("imgrelay.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let readable = sign(&config, elsewhere.path());
    assert!(readable.status.success());
    assert_eq!(readable.stdout, private.stdout, "same key, same URL");
    let stderr = String::from_utf8_lossy(&readable.stderr);
    assert!(stderr.contains("readable by group or others"), "{stderr}");

    for mode in [0o664, 0o646] {
        std::fs::set_permissions(
            dir.path().join("imgrelay.key"),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
        let writable = sign(&config, elsewhere.path());
        assert_eq!(writable.status.code(), Some(1), "{mode:o}");
        assert!(writable.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&writable.stderr);
        assert!(stderr.contains("writable by group or others"), "{stderr}");
    }
}

#[test]
fn an_all_zero_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &"0".repeat(64), 0o600);
    let out = sign(&config, dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("all zeros"));
}

#[test]
fn serve_started_elsewhere_uses_the_key_next_to_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), KEY_HEX, 0o600);
    let effective = bin()
        .args(["check-config", "--config"])
        .arg(&config)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&effective.stdout);
    let expected = format!(
        "key_file = {:?}",
        dir.path().join("imgrelay.key").display().to_string()
    );
    assert!(text.contains(&expected), "{text}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_imgrelay"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(elsewhere.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("listening")) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("serve did not start: {lines:?}"));
        lines.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("created a new signing key")),
        "{lines:?}"
    );
    assert!(!elsewhere.path().join("imgrelay.key").exists());
    let key = std::fs::read_to_string(dir.path().join("imgrelay.key")).unwrap();
    assert_eq!(key.trim(), KEY_HEX);
}
