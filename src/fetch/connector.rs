//! The one place where upstream connections are opened: resolve, check every address, connect.
//!
//! TLS wraps this connector, and redirects reuse the same client, so no connection can bypass
//! the address check.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::guard::is_forbidden;

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("address {0} is not public")]
    Forbidden(IpAddr),
    #[error("URL has no host")]
    NoHost,
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("connect timed out")]
    Timeout,
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug)]
struct Inner {
    pins: BTreeMap<String, SocketAddr>,
    allow_private: bool,
    connect_timeout: Duration,
}

/// A `tower::Service<Uri>` for hyper-util's client that refuses non-public addresses.
#[derive(Debug, Clone)]
pub(crate) struct GuardedConnector {
    inner: Arc<Inner>,
}

impl GuardedConnector {
    /// `pins` maps lower-cased "host:port" to an operator-chosen address, which is trusted as is.
    pub(crate) fn new(
        pins: BTreeMap<String, SocketAddr>,
        allow_private: bool,
        connect_timeout: Duration,
    ) -> GuardedConnector {
        GuardedConnector {
            inner: Arc::new(Inner {
                pins,
                allow_private,
                connect_timeout,
            }),
        }
    }

    /// Every address `host:port` may be connected to, in resolver order.
    pub(crate) async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ConnectError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let key = format!("{}:{port}", host.to_ascii_lowercase());
        if let Some(pinned) = self.inner.pins.get(&key) {
            return Ok(vec![*pinned]);
        }
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| ConnectError::Resolve {
                    host: host.to_string(),
                    source,
                })?
                .collect(),
        };
        if self.inner.allow_private {
            return if addrs.is_empty() {
                Err(ConnectError::NoAddress(host.to_string()))
            } else {
                Ok(addrs)
            };
        }
        let first = addrs.first().copied();
        let public: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| !is_forbidden(a.ip()))
            .collect();
        match (public.is_empty(), first) {
            (false, _) => Ok(public),
            (true, Some(first)) => Err(ConnectError::Forbidden(first.ip())),
            (true, None) => Err(ConnectError::NoAddress(host.to_string())),
        }
    }

    async fn connect(self, uri: Uri) -> Result<TokioIo<TcpStream>, ConnectError> {
        let host = uri.host().ok_or(ConnectError::NoHost)?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let addrs = self.resolve(host, port).await?;
        let mut last = ConnectError::NoAddress(host.to_string());
        for addr in addrs {
            match tokio::time::timeout(self.inner.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(TokioIo::new(stream));
                }
                Ok(Err(e)) => last = ConnectError::Io(e),
                Err(_) => last = ConnectError::Timeout,
            }
        }
        Err(last)
    }
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow_private: bool) -> GuardedConnector {
        let mut pins = BTreeMap::new();
        pins.insert(
            "pinned.example:80".to_string(),
            "127.0.0.1:9".parse().unwrap(),
        );
        GuardedConnector::new(pins, allow_private, Duration::from_millis(200))
    }

    #[tokio::test]
    async fn literal_private_addresses_are_refused_before_connecting() {
        let g = guard(false);
        for host in [
            "127.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "0.0.0.0",
            "169.254.169.254",
            "10.0.0.1",
            "192.168.0.1",
            "[fe80::1]",
            "[64:ff9b::a00:1]",
        ] {
            let err = g.resolve(host, 80).await.unwrap_err();
            assert!(matches!(err, ConnectError::Forbidden(_)), "{host}: {err}");
            // The service refuses too, without opening a socket.
            let uri: Uri = format!("http://{host}/x").parse().unwrap();
            let err = g.clone().connect(uri).await.unwrap_err();
            assert!(matches!(err, ConnectError::Forbidden(_)), "{host}: {err}");
        }
    }

    #[tokio::test]
    async fn localhost_name_is_refused() {
        let err = guard(false).resolve("localhost", 80).await.unwrap_err();
        assert!(
            matches!(
                err,
                ConnectError::Forbidden(_) | ConnectError::Resolve { .. }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn pins_are_trusted_and_matched_case_insensitively() {
        let g = guard(false);
        let addrs = g.resolve("Pinned.Example", 80).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:9".parse().unwrap()]);
    }

    #[tokio::test]
    async fn allow_private_lets_loopback_through() {
        let addrs = guard(true).resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:80".parse().unwrap()]);
    }
}
