//! The CLI tests' side of the harness: a temporary key and config, running the binary, and
//! the proxied URLs in its output.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use imgrelay::urls::{ProxyRequest, UrlSigner};

use super::{key_ring, proxied_paths, KEY_HEX};

/// A prefix that occurs nowhere in the corpus, so every occurrence in output is ours.
pub const PREFIX: &str = "/p9x";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// A key file and a config using it; `extra` is appended to the `[rewrite]` section.
pub fn env(extra_rewrite: &str) -> Env {
    env_with(extra_rewrite, "")
}

pub fn env_with(extra_rewrite: &str, extra_sections: &str) -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("imgrelay.key");
    std::fs::write(&key, format!("{KEY_HEX}\n")).expect("key");
    // A key file others may read gets a warning; tests keep theirs private, as operators do.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("key mode");
    let config = dir.path().join("config.toml");
    let text = format!(
        "[server]\npublic_prefix = \"{PREFIX}\"\n[signing]\nkey_file = {key:?}\n[rewrite]\n{extra_rewrite}\n{extra_sections}\n"
    );
    std::fs::write(&config, text).expect("config");
    Env { dir, config }
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgrelay"))
}

/// Runs `imgrelay ARGS` with `stdin` as input.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgrelay");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    out
}

/// `imgrelay rewrite --config … ` over stdin.
pub fn rewrite(env: &Env, input: &[u8]) -> Vec<u8> {
    let out = run(
        &["rewrite", "--config", env.config.to_str().unwrap()],
        input,
    );
    assert!(
        out.status.success(),
        "rewrite failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn signer() -> UrlSigner {
    UrlSigner::new(key_ring(), PREFIX)
}

/// Every proxied URL in `output`, verified with the key; panics on a bad one.
pub fn proxied(output: &[u8]) -> Vec<ProxyRequest> {
    proxied_paths(output, PREFIX, &signer())
        .into_iter()
        .map(|(_, request)| request)
        .collect()
}
