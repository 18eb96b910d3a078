//! Pieces benchmarks and tests reach into; not part of the API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Settings};
use crate::rewrite::RewriteContext;
use crate::server::{self, AppState, Listeners};
use crate::signing::{Key, KeyRing};

#[cfg(feature = "_internals")]
pub use crate::pipeline::stages;
#[cfg(feature = "_internals")]
pub use crate::server::error::image_status;

/// The one rewrite context of tests and benchmarks: the default config with `prefix` and
/// `max_memory_kb`, signed with the key `key_hex`.
pub fn rewrite_context(key_hex: &str, prefix: &str, max_memory_kb: usize) -> Arc<RewriteContext> {
    let mut config = Config::default();
    config.server.public_prefix = prefix.into();
    config.rewrite.max_memory_kb = max_memory_kb;
    let settings = Settings::from_config(&config).expect("the default config with a prefix");
    let key = Key::from_hex(key_hex).expect("a test key");
    RewriteContext::new(settings.rewrite, KeyRing::new(key, vec![]))
}

/// The server run inside the test process, on its own thread and runtime, over the same
/// routes, listeners and connection handling as `imgrelay serve`; dropped, it shuts down.
pub struct InProcess {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    pub fn start(settings: Settings, keys: KeyRing) -> std::io::Result<InProcess> {
        let serve = settings.serve;
        let bind = |addr: SocketAddr| {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(listener)
        };
        let public = bind(serve.listen)?;
        let control = serve.admin_listen.map(bind).transpose()?;
        let addr = public.local_addr()?;
        let admin = control.as_ref().map(|c| c.local_addr()).transpose()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // Inside the runtime: the shared cache, when configured, connects in a task of its own.
        let (state, listeners) = {
            let _entered = runtime.enter();
            let state = Arc::new(AppState::new(&serve, settings.rewrite, keys));
            let listeners = Listeners {
                public: tokio::net::TcpListener::from_std(public)?,
                public_limits: serve.connections,
                control: control.map(tokio::net::TcpListener::from_std).transpose()?,
            };
            (state, listeners)
        };
        let thread = std::thread::spawn(move || {
            let shutdown = async {
                let _ = stopped.await;
            };
            runtime.block_on(server::serve(
                listeners,
                state,
                shutdown,
                Duration::from_secs(1),
            ));
        });
        Ok(InProcess {
            addr,
            admin,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Installs `imgrelay serve`'s logging (its subscriber, its writer thread) over `out`, at
/// `log.level` unless `RUST_LOG` says otherwise; lines are written until the guard is dropped.
pub fn log_to(
    log: &crate::config::LogSettings,
    out: impl std::io::Write + Send + 'static,
) -> std::io::Result<impl Drop> {
    crate::cli::serve::init_logging(log, out).map(|(guard, _)| guard)
}
