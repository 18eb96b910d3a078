//! `imgrelay serve`: logging, key ring, listener, signals.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::server::connections::{connection_budget, ConnLimits};
use crate::server::{self, AppState, Listeners};
use crate::signing::KeyRing;
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
    for warning in keys.warnings() {
        tracing::warn!("signing key file {warning}");
    }
    if created {
        tracing::warn!(
            path = %config.signing.key_file.display(),
            "created a new signing key file; keep it: published URLs depend on it"
        );
    }
    let state = Arc::new(AppState::new(&config, keys).map_err(|e| e.to_string())?);
    if state.page_proxy_on() && config.upstream.allowed_hosts.is_empty() {
        tracing::warn!(
            "the page proxy signs every wrapped image URL in the origin's pages, user comments \
             included, and upstream.allowed_hosts is empty: any host written into a page can be \
             fetched through this server; list the image hosts in upstream.allowed_hosts"
        );
    }
    let server = &config.server;
    // Descriptors beyond client connections: upstream fetches, origin connections, the control
    // plane, files and the runtime's own.
    let reserve = config.upstream.max_fetches as u64 + server::CONTROL_MAX_CONNECTIONS as u64 + 64;
    let (max_connections, fd_limit) = connection_budget(server.max_connections, reserve);
    if max_connections < server.max_connections {
        tracing::warn!(
            configured = server.max_connections,
            effective = max_connections,
            fd_limit,
            "server.max_connections lowered to fit the open-file limit (ulimit -n)"
        );
    }
    let public = tokio::net::TcpListener::bind(&server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", server.listen))?;
    let addr = public
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let control = if server.admin_listen.is_empty() {
        tracing::info!("control plane off (server.admin_listen is empty)");
        None
    } else {
        let control = tokio::net::TcpListener::bind(&server.admin_listen)
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on {} (server.admin_listen): {e}",
                    server.admin_listen
                )
            })?;
        let admin_addr = control
            .local_addr()
            .map_err(|e| format!("control listener address: {e}"))?;
        if !admin_addr.ip().is_loopback() && server.admin_token_file.as_os_str().is_empty() {
            tracing::warn!(
                %admin_addr,
                "the control plane listens beyond loopback without server.admin_token_file: \
                 whoever reaches it can have URLs signed"
            );
        }
        tracing::info!(%admin_addr, "control plane listening");
        Some(control)
    };
    tracing::info!(%addr, max_connections, "listening");
    let limits = ConnLimits {
        max_connections,
        header_timeout: Duration::from_secs(server.header_timeout_s),
        keepalive_timeout: Duration::from_secs(server.keepalive_timeout_s),
        send_timeout: Duration::from_secs(server.send_timeout_s),
        http2_ping_interval: Duration::from_secs(server.http2_ping_interval_s),
    };
    server::serve(
        Listeners {
            public,
            public_limits: limits,
            control,
        },
        state,
        shutdown_signal(),
        Duration::from_secs(server.shutdown_grace_s),
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
