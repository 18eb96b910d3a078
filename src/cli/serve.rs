//! `imgrelay serve`: logging, key ring, listener, signals.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{LogSettings, Settings};
use crate::log_line::LineFormat;
use crate::log_writer::{LogDrops, LogGuard, LogWriter};
use crate::server::connections::{burst, connection_budget, ConnLimits};
use crate::server::{self, AppState, Listeners};
use crate::signing::KeyRing;
use tracing_subscriber::EnvFilter;

pub fn run(settings: Settings) -> ExitCode {
    // The guard is held to the end: dropping it flushes the lines still queued.
    let (_log, log_drops) = match init_logging(&settings.log, std::io::stderr()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("imgrelay: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    // Transforms run on the blocking pool (at most `workers` at once) beside the DNS look-ups.
    // Every thread keeps its own allocator heap, so a small fixed set of long-lived threads, not
    // tokio's default of up to 512 short-lived ones, keeps memory beyond the caches bounded.
    let burst_limit = settings.serve.worker_burst;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(settings.serve.image.workers + 8)
        .thread_keep_alive(Duration::from_secs(300))
        .on_thread_start(move || burst::thread_started(burst_limit))
        .on_thread_park(burst::thread_parked)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings, log_drops)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("imgrelay: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Requests format their line into the log writer's buffer; its thread writes the buffer to
/// `out`, many lines per write while the server is busy.
pub(crate) fn init_logging(
    log: &LogSettings,
    out: impl std::io::Write + Send + 'static,
) -> std::io::Result<(LogGuard, LogDrops)> {
    // RUST_LOG wins over log.level so one run can be debugged without editing the config.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = LogWriter::start(out)?;
    let drops = writer.drops();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if log.json {
        builder.json().try_init()
    } else {
        builder.event_format(LineFormat).try_init()
    };
    Ok((guard, drops))
}

async fn serve(settings: Settings, log_drops: LogDrops) -> Result<(), String> {
    let (keys, created) =
        KeyRing::load_or_create(&settings.keys).map_err(|e| format!("signing key: {e}"))?;
    for warning in keys.warnings() {
        tracing::warn!("signing key file {warning}");
    }
    if created {
        tracing::warn!(
            path = %settings.keys.signing.display(),
            "created a new signing key file; keep it: published URLs depend on it"
        );
    }
    let serve = settings.serve;
    if serve.origin.is_some() && serve.fetch.allowed_hosts.is_empty() {
        tracing::warn!(
            "the page proxy signs every wrapped image URL in the origin's pages, user comments \
             included, and upstream.allowed_hosts is empty: any host written into a page can be \
             fetched through this server; list the image hosts in upstream.allowed_hosts"
        );
    }
    let state = Arc::new(AppState::new(&serve, settings.rewrite, keys));
    state.count_log_drops(log_drops);
    state.connect_shared_cache().await;
    // Descriptors beyond client connections: upstream fetches, origin connections, the control
    // plane, files and the runtime's own.
    let reserve = serve.image.max_fetches as u64 + server::CONTROL_MAX_CONNECTIONS as u64 + 64;
    let configured = serve.connections.max_connections;
    let (max_connections, fd_limit) = connection_budget(configured, reserve);
    if max_connections < configured {
        tracing::warn!(
            configured,
            effective = max_connections,
            fd_limit,
            "server.max_connections lowered to fit the open-file limit (ulimit -n)"
        );
    }
    let public = tokio::net::TcpListener::bind(serve.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", serve.listen))?;
    let addr = public
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let control = match serve.admin_listen {
        None => {
            tracing::info!("control plane off (server.admin_listen is empty)");
            None
        }
        Some(admin) => {
            let control = tokio::net::TcpListener::bind(admin)
                .await
                .map_err(|e| format!("cannot listen on {admin} (server.admin_listen): {e}"))?;
            let admin_addr = control
                .local_addr()
                .map_err(|e| format!("control listener address: {e}"))?;
            if !admin_addr.ip().is_loopback() && serve.admin_token.is_none() {
                tracing::warn!(
                    %admin_addr,
                    "the control plane listens beyond loopback without server.admin_token_file: \
                     whoever reaches it can have URLs signed"
                );
            }
            tracing::info!(%admin_addr, "control plane listening");
            Some(control)
        }
    };
    tracing::info!(%addr, max_connections, "listening");
    server::serve(
        Listeners {
            public,
            public_limits: ConnLimits {
                max_connections,
                ..serve.connections
            },
            control,
        },
        state,
        shutdown_signal(),
        serve.shutdown_grace,
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
