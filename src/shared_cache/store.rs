//! The Redis connection behind the shared tier: made in the background (start-up never waits
//! for Redis), every command bounded by a timeout, and the tier skipped for a while after a
//! failure, so that a dead or stalled Redis costs at most one timeout per retry period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, TlsCertificates, Value};

use crate::sync::lock;

/// Where the tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server (`redis://` or `rediss://`).
    Server(String),
    /// A Redis Cluster, by its seed nodes.
    Cluster(Vec<String>),
}

impl Target {
    /// Checks the URLs the way the client will read them.
    pub fn check(&self) -> Result<(), String> {
        let urls: &[String] = match self {
            Target::Server(url) => std::slice::from_ref(url),
            Target::Cluster(nodes) => nodes,
        };
        for url in urls {
            redis::Client::open(url.as_str()).map_err(|e| format!("{url}: {e}"))?;
        }
        Ok(())
    }
}

/// Why a command did not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("not connected yet")]
    Unconnected,
    /// Left alone after a recent failure.
    #[error("skipped after a recent failure")]
    Resting,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Either kind of connection; both multiplex commands and reconnect by themselves once made.
#[derive(Clone)]
pub(crate) enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Bounds of the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreTimeouts {
    pub command: Duration,
    pub connect: Duration,
    pub retry: Duration,
}

pub(crate) struct Store {
    conn: Mutex<Option<Conn>>,
    /// Becomes true once connected, for start-up to wait on.
    connected: tokio::sync::watch::Sender<bool>,
    timeouts: StoreTimeouts,
    /// Milliseconds since `epoch` before which commands are not sent.
    resting_until: AtomicU64,
    epoch: Instant,
}

impl Store {
    /// A store that connects to `target` in the background, retrying until it succeeds.
    /// `ca_pem`: the roots TLS connections trust instead of the system's.
    pub(crate) fn start(
        target: Target,
        ca_pem: Option<Vec<u8>>,
        timeouts: StoreTimeouts,
    ) -> Arc<Store> {
        let store = Arc::new(Store {
            conn: Mutex::new(None),
            connected: tokio::sync::watch::Sender::new(false),
            timeouts,
            resting_until: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let weak = Arc::downgrade(&store);
        tokio::spawn(async move {
            loop {
                match connect(&target, ca_pem.as_deref(), timeouts).await {
                    Ok(conn) => {
                        if let Some(store) = weak.upgrade() {
                            tracing::info!("shared cache connected");
                            *lock(&store.conn) = Some(conn);
                            store.connected.send_replace(true);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::cause::chain(&e), "shared cache: cannot connect; retrying");
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(timeouts.retry).await;
            }
        });
        store
    }

    /// Waits until connected, at most the connect timeout: an instance started beside a
    /// running Redis then serves its first requests from it, and one started while Redis is
    /// down starts anyway.
    pub(crate) async fn wait_connected(&self) -> bool {
        let mut connected = self.connected.subscribe();
        tokio::time::timeout(self.timeouts.connect, connected.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Connected and not resting after a failure.
    pub(crate) fn up(&self) -> bool {
        lock(&self.conn).is_some() && self.now_ms() >= self.resting_until.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs one command (or pipeline) within the command timeout. A failure rests the tier for
    /// the retry period.
    pub(crate) async fn run<T, F, Fut>(&self, command: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.now_ms() < self.resting_until.load(Ordering::Relaxed) {
            return Err(StoreError::Resting);
        }
        let conn = lock(&self.conn).clone().ok_or(StoreError::Unconnected)?;
        let result = match tokio::time::timeout(self.timeouts.command, command(conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => StoreError::Redis(e),
            Err(_) => StoreError::Timeout(self.timeouts.command),
        };
        let retry_ms = u64::try_from(self.timeouts.retry.as_millis()).unwrap_or(u64::MAX);
        self.resting_until
            .store(self.now_ms().saturating_add(retry_ms), Ordering::Relaxed);
        Err(result)
    }

    /// One command's reply.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        self.run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }
}

async fn connect(
    target: &Target,
    ca_pem: Option<&[u8]>,
    timeouts: StoreTimeouts,
) -> redis::RedisResult<Conn> {
    let certs = |ca: &[u8]| TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    };
    match target {
        Target::Server(url) => {
            let client = match ca_pem {
                Some(ca) => redis::Client::build_with_tls(url.as_str(), certs(ca))?,
                None => redis::Client::open(url.as_str())?,
            };
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeouts.connect))
                .set_response_timeout(Some(timeouts.command))
                // Reconnects are tried again on the next command; a command never waits
                // through a series of them.
                .set_number_of_retries(1)
                .set_max_delay(timeouts.retry);
            Ok(Conn::Server(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        Target::Cluster(nodes) => {
            let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                .connection_timeout(timeouts.connect)
                .response_timeout(timeouts.command)
                .retries(1);
            if let Some(ca) = ca_pem {
                builder = builder.certs(certs(ca));
            }
            let client = builder.build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
    }
}
