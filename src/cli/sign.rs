//! `imgrelay sign`: proxied URLs for upstream (or wrapped) URLs.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use crate::config::Settings;
use crate::urls::{Format, Options, MAX_DIMENSION};

use super::{EXIT_FAILED, EXIT_USAGE};

/// Parses `WxH` (either may be 0 = unconstrained).
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("--size {s:?}: expected WxH, e.g. 640x0 (each 0..={MAX_DIMENSION})");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let dim = |v: &str| v.parse::<u32>().ok().filter(|&n| n <= MAX_DIMENSION);
    Ok((dim(w).ok_or_else(bad)?, dim(h).ok_or_else(bad)?))
}

pub struct SignArgs {
    pub size: Option<(u32, u32)>,
    pub format: Option<Format>,
    pub url: Option<String>,
}

pub fn run(settings: Settings, args: SignArgs) -> ExitCode {
    let ctx = match super::context(settings) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let (width, height) = args.size.unwrap_or((0, 0));
    let options = Options {
        format: args.format,
        ..Options::sized(width, height)
    };
    let sign = |url: &str| -> Result<String, String> {
        let upstream = ctx.upstream_of(url)?;
        Ok(ctx.signer().url_for(&upstream, &options))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Some(url) = args.url {
        return match sign(&url) {
            Ok(signed) => match writeln!(out, "{signed}").and_then(|_| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("imgrelay: cannot write output: {e}");
                    ExitCode::from(EXIT_FAILED)
                }
            },
            Err(reason) => {
                eprintln!("imgrelay: {url}: {reason}");
                ExitCode::from(EXIT_USAGE)
            }
        };
    }
    let mut failed = false;
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("imgrelay: cannot read stdin: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        };
        let url = line.trim();
        if url.is_empty() {
            continue;
        }
        match sign(url) {
            Ok(signed) => {
                if let Err(e) = writeln!(out, "{signed}") {
                    eprintln!("imgrelay: cannot write output: {e}");
                    return ExitCode::from(EXIT_FAILED);
                }
            }
            Err(reason) => {
                eprintln!("imgrelay: line {}: {url}: {reason}", n + 1);
                failed = true;
            }
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("imgrelay: cannot write output: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    if failed {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
