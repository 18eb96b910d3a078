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
    limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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

/// The C codecs (libjpeg-turbo, libwebp, libdav1d) allocate through glibc, which gives every
/// thread that allocates its own arena (up to 8 per core); transforms hop between blocking-pool
/// threads, so each arena would keep its own high-water mark of freed image buffers. Two arenas
/// are plenty for this service's few transform workers.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
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
