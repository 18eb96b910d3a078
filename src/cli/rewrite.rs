//! `imgrelay rewrite`: the streaming rewriter over files or stdin.

use std::collections::HashSet;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Settings;
use crate::rewrite::{DocKind, Probes, RefReport, RewriteContext, Rewriter, Summary};

use super::probe::{ProbeArgs, Tally};

use super::{EXIT_FAILED, EXIT_USAGE};

const CHUNK: usize = 64 * 1024;

pub struct RewriteArgs {
    pub in_place: bool,
    pub out: Option<PathBuf>,
    pub report: Option<PathBuf>,
    /// The server whose caches are filled afterwards (`--warm`).
    pub warm: Option<url::Url>,
    /// Probe every upstream first (`--probe`).
    pub probe: Option<ProbeArgs>,
    pub files: Vec<PathBuf>,
}

/// Exit status of `--fail-on-broken` when a rewritten reference points at a broken picture.
pub const EXIT_BROKEN: u8 = 3;

/// What to collect from each document besides its output, and what it is rewritten with.
#[derive(Debug, Clone)]
struct Collect {
    report: bool,
    advertised: bool,
    probes: Option<Arc<Probes>>,
    placeholder: bool,
}

/// Where one document's output goes.
enum Target {
    Stdout,
    /// Written to a temporary file next to `dest`, renamed over it when complete.
    File {
        dest: PathBuf,
    },
}

#[derive(Serialize)]
struct ReportLine<'a> {
    file: &'a str,
    #[serde(flatten)]
    entry: &'a RefReport,
}

pub fn run(settings: Settings, args: RewriteArgs) -> ExitCode {
    if let Err(message) = check_usage(&args) {
        eprintln!("imgrelay rewrite: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let preference = settings.serve.image.transform.preference.clone();
    let fetch = settings.serve.fetch.clone();
    let limits = settings.serve.image.transform.limits;
    let ctx = match super::context(settings) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let mut report = match &args.report {
        Some(path) => match File::create(path) {
            Ok(f) => Some(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!(
                    "imgrelay rewrite: cannot create report {}: {e}",
                    path.display()
                );
                return ExitCode::from(EXIT_FAILED);
            }
        },
        None => None,
    };
    if let Some(dir) = &args.out {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("imgrelay rewrite: cannot create {}: {e}", dir.display());
            return ExitCode::from(EXIT_FAILED);
        }
    }
    // Probing reads every input twice, so stdin is read into memory first.
    let mut stdin_bytes = Vec::new();
    if args.files.is_empty() && args.probe.is_some() {
        if let Err(e) = std::io::stdin().lock().read_to_end(&mut stdin_bytes) {
            eprintln!("imgrelay rewrite: -: cannot read: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    }
    let probed = match &args.probe {
        Some(probe_args) => {
            let mut upstreams = Vec::new();
            if args.files.is_empty() {
                upstreams.extend(upstreams_of(&ctx, &mut &stdin_bytes[..]));
            }
            for path in &args.files {
                // A file that cannot be read is reported by the rewrite pass.
                if let Ok(mut f) = File::open(path) {
                    upstreams.extend(upstreams_of(&ctx, &mut f));
                }
            }
            match super::probe::run(fetch.clone(), limits, upstreams, probe_args) {
                Ok(run) => Some(run),
                Err(message) => {
                    eprintln!("imgrelay rewrite: {message}");
                    return ExitCode::from(EXIT_FAILED);
                }
            }
        }
        None => None,
    };
    let collect = Collect {
        report: report.is_some() || probed.is_some(),
        advertised: args.warm.is_some(),
        probes: probed.as_ref().map(|(probes, _, _)| probes.clone()),
        placeholder: args.probe.as_ref().is_some_and(|p| p.placeholder),
    };
    let mut failed = 0usize;
    let mut advertised = Vec::new();
    let mut tally = Tally::default();
    if args.files.is_empty() {
        let outcome = if probed.is_some() {
            process(&ctx, &mut &stdin_bytes[..], &Target::Stdout, &collect)
        } else {
            process(
                &ctx,
                &mut std::io::stdin().lock(),
                &Target::Stdout,
                &collect,
            )
        };
        failed += finish("-", outcome, report.as_mut(), &mut advertised, &mut tally);
    } else {
        let progress = args.files.len() > 1 && std::io::stderr().is_terminal();
        let total = args.files.len();
        for (i, path) in args.files.iter().enumerate() {
            let name = path.display().to_string();
            if progress {
                eprint!("\r\x1b[K[{}/{total}] {name}", i + 1);
            }
            let target = if args.in_place {
                Target::File { dest: path.clone() }
            } else if let Some(dir) = &args.out {
                Target::File {
                    dest: dir.join(path.file_name().unwrap_or(path.as_os_str())),
                }
            } else {
                Target::Stdout
            };
            let outcome = match File::open(path) {
                Ok(mut f) => process(&ctx, &mut f, &target, &collect),
                Err(e) => Err(format!("cannot read: {e}")),
            };
            if progress && outcome.is_err() {
                eprintln!();
            }
            failed += finish(&name, outcome, report.as_mut(), &mut advertised, &mut tally);
        }
        if progress {
            eprintln!("\r\x1b[K{} of {total} files rewritten", total - failed);
        }
    }
    if let Some(mut r) = report {
        if let Err(e) = r.flush() {
            eprintln!("imgrelay rewrite: cannot write report: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    }
    if let Some((probes, requests, elapsed)) = &probed {
        eprintln!(
            "imgrelay rewrite: {}",
            tally.line(probes.len(), *requests, *elapsed)
        );
    }
    if let Some(base) = &args.warm {
        // Only here: reading the system's root certificates takes time every run would pay.
        let tls = crate::fetch::tls_config(&fetch.extra_roots);
        if !warm(base, &advertised, &preference, tls) {
            return ExitCode::from(EXIT_FAILED);
        }
    }
    if failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else if args.probe.as_ref().is_some_and(|p| p.fail_on_broken) && tally.broken() > 0 {
        ExitCode::from(EXIT_BROKEN)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_usage(args: &RewriteArgs) -> Result<(), String> {
    if args.in_place && args.out.is_some() {
        return Err("--in-place and --out cannot be combined".into());
    }
    let to_files = args.in_place || args.out.is_some();
    if to_files && args.files.is_empty() {
        return Err("--in-place and --out need FILE arguments (stdin goes to stdout)".into());
    }
    if !to_files && args.files.len() > 1 {
        return Err("several files need --in-place or --out DIR".into());
    }
    if args.out.is_some() {
        let mut seen = HashSet::new();
        for f in &args.files {
            let name = f
                .file_name()
                .ok_or_else(|| format!("{} is not a file name", f.display()))?;
            if !seen.insert(name.to_owned()) {
                return Err(format!(
                    "two inputs named {} would overwrite each other in --out",
                    name.to_string_lossy()
                ));
            }
        }
    }
    Ok(())
}

/// Warms `base` with the advertised URLs of each document and says how it went; `false` when
/// the warm-up could not run at all. Variants that fail are reported and do not fail the run:
/// the rewritten files are written and valid either way.
fn warm(
    base: &url::Url,
    advertised: &[Vec<String>],
    preference: &[crate::pipeline::Format],
    tls: rustls::ClientConfig,
) -> bool {
    match super::warm::warm(base, advertised, preference, tls) {
        Ok(summary) => {
            for (url, accept, reason) in &summary.failed {
                eprintln!("imgrelay rewrite: warm: {url} ({accept}): {reason}");
            }
            eprintln!(
                "imgrelay rewrite: warmed {} variants of {} images, {} failed, in {:.1} s",
                summary.warmed,
                summary.urls,
                summary.failed.len(),
                summary.elapsed.as_secs_f64()
            );
            true
        }
        Err(message) => {
            eprintln!("imgrelay rewrite: {message}");
            false
        }
    }
}

/// Reports one document's outcome and keeps its advertised URLs; returns 1 when it failed.
fn finish(
    name: &str,
    outcome: Result<Summary, String>,
    report: Option<&mut std::io::BufWriter<File>>,
    advertised: &mut Vec<Vec<String>>,
    tally: &mut Tally,
) -> usize {
    match outcome {
        Ok(mut summary) => {
            tally.add(&summary.refs);
            if !summary.advertised.is_empty() {
                advertised.push(std::mem::take(&mut summary.advertised));
            }
            if let Some(p) = &summary.passthrough {
                eprintln!("imgrelay rewrite: {name}: {p}");
            }
            if let Some(r) = report {
                for entry in &summary.refs {
                    let line = ReportLine { file: name, entry };
                    let written = serde_json::to_writer(&mut *r, &line)
                        .map_err(std::io::Error::other)
                        .and_then(|_| r.write_all(b"\n"));
                    if let Err(e) = written {
                        eprintln!("imgrelay rewrite: cannot write report: {e}");
                        return 1;
                    }
                }
            }
            0
        }
        Err(message) => {
            eprintln!("imgrelay rewrite: {name}: {message}");
            1
        }
    }
}

/// A temporary output file next to its destination, renamed over it on commit and removed
/// otherwise, so a failed run never leaves a half-written file in place.
struct TempOut {
    path: PathBuf,
    dest: PathBuf,
    file: std::io::BufWriter<File>,
    committed: bool,
}

impl TempOut {
    fn create(dest: &Path) -> std::io::Result<TempOut> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let path = dir.join(format!(".{name}.imgrelay-{}.tmp", std::process::id()));
        let file = File::create(&path)?;
        if let Ok(meta) = std::fs::metadata(dest) {
            let _ = std::fs::set_permissions(&path, meta.permissions());
        }
        Ok(TempOut {
            path,
            dest: dest.to_path_buf(),
            file: std::io::BufWriter::with_capacity(CHUNK, file),
            committed: false,
        })
    }

    fn commit(mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        std::fs::rename(&self.path, &self.dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempOut {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Streams one document through the rewriter into `target`.
fn process(
    ctx: &Arc<RewriteContext>,
    input: &mut dyn Read,
    target: &Target,
    collect: &Collect,
) -> Result<Summary, String> {
    let write_err = |e: std::io::Error| format!("cannot write output: {e}");
    match target {
        Target::Stdout => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(CHUNK, stdout.lock());
            let summary = stream(ctx, input, &mut out, collect)?;
            out.flush().map_err(write_err)?;
            Ok(summary)
        }
        Target::File { dest } => {
            let cannot = |e: std::io::Error| format!("cannot write {}: {e}", dest.display());
            let mut temp = TempOut::create(dest).map_err(cannot)?;
            let summary = stream(ctx, input, &mut temp.file, collect)?;
            temp.commit().map_err(cannot)?;
            Ok(summary)
        }
    }
}

/// The upstreams `input` would have proxied, in document order (the first pass of `--probe`;
/// a document that cannot be read is reported by the second).
fn upstreams_of(ctx: &Arc<RewriteContext>, input: &mut dyn Read) -> Vec<String> {
    let collect = Collect {
        report: true,
        advertised: false,
        probes: None,
        placeholder: false,
    };
    match stream(ctx, input, &mut std::io::sink(), &collect) {
        Ok(summary) => super::probe::rewritten_upstreams(summary.refs).collect(),
        Err(_) => Vec::new(),
    }
}

/// Reads `input` in chunks into the rewriter, whose output goes to `out`.
fn stream(
    ctx: &Arc<RewriteContext>,
    input: &mut dyn Read,
    out: &mut dyn Write,
    collect: &Collect,
) -> Result<Summary, String> {
    // The sink cannot fail, so the first write error is kept and reported at the end.
    let mut write_error: Option<std::io::Error> = None;
    let sink = |bytes: &[u8]| {
        if write_error.is_none() {
            if let Err(e) = out.write_all(bytes) {
                write_error = Some(e);
            }
        }
    };
    let mut rw = Rewriter::new(ctx.clone(), DocKind::Auto, None, sink)
        .collect_report(collect.report)
        .collect_advertised(collect.advertised)
        .placeholder(collect.placeholder);
    if let Some(probes) = &collect.probes {
        rw = rw.with_probes(probes.clone());
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read: {e}")),
        };
        rw.write(&buf[..n]);
    }
    let summary = rw.end();
    match write_error {
        Some(e) => Err(format!("cannot write output: {e}")),
        None => Ok(summary),
    }
}
