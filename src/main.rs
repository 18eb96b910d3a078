//! The `imgrelay` command line: argument parsing and dispatch only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imgrelay::config::{Config, Overrides};

mod serve;

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
    fn load(&self, overrides: &Overrides) -> Result<Config, imgrelay::config::ConfigError> {
        match &self.config {
            Some(path) => Config::load(path, true, overrides),
            None => Config::load(std::path::Path::new("config.toml"), false, overrides),
        }
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
}

fn main() -> ExitCode {
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
            Ok(cfg) => {
                print!("{}", cfg.to_masked_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("imgrelay: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve { config, listen } => {
            let cfg = match config.load(&Overrides { listen }) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("imgrelay: {e}");
                    return ExitCode::from(2);
                }
            };
            serve::run(cfg)
        }
    }
}
