//! `imgrelay serve`: logging, key ring, listener, signals.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use imgrelay::config::Config;
use imgrelay::server::{self, AppState};
use imgrelay::signing::KeyRing;
use tracing_subscriber::EnvFilter;

pub fn run(config: Config) -> ExitCode {
    init_logging(&config);
    // Transforms run on the blocking pool (at most `workers` at once) beside the DNS look-ups.
    // Every thread keeps its own allocator heap, so a small fixed set of long-lived threads, not
    // tokio's default of up to 512 short-lived ones, keeps memory beyond the caches bounded.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(config.image.workers() + 8)
        .thread_keep_alive(Duration::from_secs(300))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("imgrelay: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    // RUST_LOG wins over log.level so one run can be debugged without editing the config.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn serve(config: Config) -> Result<(), String> {
    let (keys, created) =
        KeyRing::load_or_create(&config.signing).map_err(|e| format!("signing key: {e}"))?;
    if created {
        tracing::warn!(
            path = %config.signing.key_file.display(),
            "created a new signing key file; keep it: published URLs depend on it"
        );
    }
    let state = Arc::new(AppState::new(&config, keys).map_err(|e| e.to_string())?);
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    tracing::info!(%addr, "listening");
    server::serve(
        listener,
        state,
        shutdown_signal(),
        Duration::from_secs(config.server.shutdown_grace_s),
    )
    .await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                tracing::warn!("cannot install signal handlers; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
