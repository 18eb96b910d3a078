//! The `imgrelay` command line: argument parsing and dispatch only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imgrelay::cli::{self, rewrite, serve, sign};
use imgrelay::config::{Config, Overrides, Settings};
use imgrelay::urls::Format;

#[derive(Parser)]
#[command(
    name = "imgrelay",
    version,
    about = "Image proxy and streaming HTML rewriter"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Config file (default: ./config.toml when it exists).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    /// The effective config and the settings parsed from it, or why not (exit 2).
    fn load(&self, overrides: &Overrides) -> Result<(Config, Settings), ExitCode> {
        let loaded = match &self.config {
            Some(path) => Config::load(path, true, overrides),
            None => Config::load(std::path::Path::new("config.toml"), false, overrides),
        };
        loaded
            .and_then(|config| Settings::from_config(&config).map(|settings| (config, settings)))
            .map_err(|e| {
                eprintln!("imgrelay: {e}");
                ExitCode::from(cli::EXIT_USAGE)
            })
    }

    fn settings(&self) -> Result<Settings, ExitCode> {
        self.load(&Overrides::default())
            .map(|(_, settings)| settings)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the effective config (defaults < file < environment < flags), secrets masked.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run the image proxy.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Rewrite wrapped image URLs in HTML pages and Hexo posts (stdin to stdout without FILE).
    Rewrite {
        #[command(flatten)]
        config: ConfigArg,
        /// Replace each FILE with its rewritten version.
        #[arg(long, conflicts_with = "out")]
        in_place: bool,
        /// Write each rewritten FILE into DIR under its own name.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Write one JSON object per image reference found to FILE.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Then request every variant the output advertises from the server at URL (normally
        /// nginx in front of imgrelay), for each format set readers negotiate.
        #[arg(long, value_name = "URL", value_parser = imgrelay::cli::warm::parse_base)]
        warm: Option<url::Url>,
        /// First fetch every upstream picture once: real sizes for pictures without a usable
        /// data-size, srcset up to each picture's width, the result in --report, a summary.
        #[arg(long)]
        probe: bool,
        /// With --probe: exit with status 3 when a rewritten reference points at a broken
        /// picture.
        #[arg(long, requires = "probe")]
        fail_on_broken: bool,
        /// With --probe: each picture's dominant colour as its <img>'s background while it
        /// loads (off by default: a strict style-src CSP blocks inline styles).
        #[arg(long, requires = "probe")]
        placeholder: bool,
        /// With --probe: where results are kept between runs.
        #[arg(long, value_name = "FILE", requires = "probe", default_value = imgrelay::cli::probe::DEFAULT_CACHE)]
        probe_cache: PathBuf,
        /// With --probe: how many hours a kept result is trusted (0: probe everything again).
        #[arg(long, value_name = "HOURS", requires = "probe", default_value_t = 168)]
        probe_max_age: u64,
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the proxied URL for an upstream or wrapped URL (one per stdin line without URL).
    Sign {
        #[command(flatten)]
        config: ConfigArg,
        /// Target box, e.g. 640x0 (0 = unconstrained).
        #[arg(long, value_name = "WxH", value_parser = sign::parse_size)]
        size: Option<(u32, u32)>,
        /// Force an output format: jpeg, png, webp or avif.
        #[arg(long, value_name = "F")]
        format: Option<Format>,
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    imgrelay::allocator::tune();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::CheckConfig { config } => match config.load(&Overrides::default()) {
            Ok((config, _)) => {
                print!("{}", config.to_masked_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config, listen } => match config.load(&Overrides { listen }) {
            Ok((_, settings)) => serve::run(settings),
            Err(code) => code,
        },
        Command::Rewrite {
            config,
            in_place,
            out,
            report,
            warm,
            probe,
            fail_on_broken,
            placeholder,
            probe_cache,
            probe_max_age,
            files,
        } => match config.settings() {
            Ok(settings) => rewrite::run(
                settings,
                rewrite::RewriteArgs {
                    in_place,
                    out,
                    report,
                    warm,
                    probe: probe.then(|| imgrelay::cli::probe::ProbeArgs {
                        cache: probe_cache,
                        max_age: std::time::Duration::from_secs(probe_max_age.saturating_mul(3600)),
                        fail_on_broken,
                        placeholder,
                    }),
                    files,
                },
            ),
            Err(code) => code,
        },
        Command::Sign {
            config,
            size,
            format,
            url,
        } => match config.settings() {
            Ok(settings) => sign::run(settings, sign::SignArgs { size, format, url }),
            Err(code) => code,
        },
    }
}
