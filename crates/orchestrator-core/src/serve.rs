//! Serving a router over TCP with the connection-level limits: a header read
//! timeout, bounded header sizes, and a graceful shutdown with a grace
//! period.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::IngressConfig;

/// How a [`serve`] call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOutcome {
    /// Connections still open when shutdown began.
    pub connections_at_shutdown: usize,
    /// Connections closed by force because the grace period ran out.
    pub connections_aborted: usize,
}

/// Serves `router` on `listener` over HTTP/1.1 until `shutdown_signal`
/// completes, then shuts down gracefully.
///
/// - A client gets [`IngressConfig::header_read_timeout_ms`] to send each
///   request's headers (also the idle timeout of keep-alive connections),
///   at most [`IngressConfig::max_header_count`] headers, and a read buffer
///   bounded by [`IngressConfig::max_header_bytes`]; hyper answers `431` past
///   those before the router sees anything.
/// - On shutdown it stops accepting at once, lets requests in flight finish,
///   closes idle keep-alive connections, and after
///   [`IngressConfig::shutdown_grace_ms`] closes whatever is left.
///
/// - A request from one of [`IngressConfig::trusted_proxies`] carries, as
///   its `ConnectInfo`, the client address the proxy put in
///   `X-Forwarded-For` (port 0); any other carries its peer's address.
///
/// HTTP/2 and TLS are left to a reverse proxy in front (`docs/http.md`).
/// The caller flushes the [`RecordBuffer`](crate::RecordBuffer) after this
/// returns.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    config: &IngressConfig,
    shutdown_signal: F,
) -> ServeOutcome
where
    F: Future<Output = ()> + Send,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout())
        .max_header_size(config.max_header_bytes)
        // hyper's read buffer must hold a whole header block; its minimum is 8 KiB.
        .max_buf_size(config.max_header_bytes.max(8 * 1024));
    if config.max_header_count != 100 {
        // hyper keeps 100 header slots on the stack; any other number costs
        // a heap allocation per request, so only ask for it when needed.
        http.max_headers(config.max_header_count);
    }

    // For the per-connection services, which must be `'static`.
    let shared_config = std::sync::Arc::new(config.clone());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown_signal = std::pin::pin!(shutdown_signal);
    loop {
        tokio::select! {
            // Checked first: once shutdown is asked for, nothing more is accepted.
            biased;
            () = &mut shutdown_signal => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: waiting lets
                        // running requests finish and free some.
                        tracing::warn!(%error, "cannot accept a connection; retrying in 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                }
                // Handlers may extract the client's address (`ConnectInfo`),
                // for example to rate-limit log-in attempts per address: the
                // peer's, or the one a trusted proxy forwarded. It is
                // added to each request here rather than by layering the
                // router, which would wrap every route again per connection
                // and box one more service per request.
                let router = router.clone();
                let behind_proxy = config.is_trusted_proxy(peer.ip());
                let config = shared_config.clone();
                let service = hyper::service::service_fn(
                    move |mut request: hyper::Request<hyper::body::Incoming>| {
                        let client = if behind_proxy {
                            forwarded_client(request.headers(), &config)
                                .map_or(peer, |address| SocketAddr::new(address, 0))
                        } else {
                            peer
                        };
                        request.extensions_mut().insert(axum::extract::ConnectInfo(client));
                        // A router is always ready: its `poll_ready` returns
                        // `Ready` at once, so it is called directly.
                        tower_service::Service::call(&mut router.clone(), request)
                    },
                );
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection closed with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);

    let connections_at_shutdown = connections.len();
    tracing::info!(
        connections = connections_at_shutdown,
        "stopped accepting connections; letting requests in flight finish"
    );
    let mut connections_aborted = 0;
    if tokio::time::timeout(config.shutdown_grace(), graceful.shutdown())
        .await
        .is_err()
    {
        connections_aborted = connections.len();
        tracing::warn!(
            connections = connections_aborted,
            grace_ms = config.shutdown_grace_ms,
            "the grace period ran out; closing the remaining connections"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
    ServeOutcome {
        connections_at_shutdown,
        connections_aborted,
    }
}

/// The client behind a trusted proxy: the rightmost `X-Forwarded-For` entry
/// that is not itself a trusted proxy (each proxy appends the address it got
/// the request from, so entries further left are the client's to invent).
/// `None` when the header is missing or an entry before that one is not an
/// address.
fn forwarded_client(headers: &axum::http::HeaderMap, config: &IngressConfig) -> Option<IpAddr> {
    // From the right, without collecting the entries: this runs for every
    // request that comes through the proxy.
    let mut leftmost = None;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        for entry in value.to_str().ok()?.rsplit(',') {
            let address: IpAddr = entry.trim().parse().ok()?;
            if !config.is_trusted_proxy(address) {
                return Some(address);
            }
            leftmost = Some(address);
        }
    }
    leftmost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let config = IngressConfig {
            trusted_proxies: vec!["127.0.0.1".parse().unwrap(), "10.1.0.0/16".parse().unwrap()],
            ..IngressConfig::default()
        };
        let client = |values: &[&str]| forwarded_client(&headers(values), &config);
        let address = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        assert_eq!(client(&["203.0.113.7"]), address("203.0.113.7"));
        // A client's own header is kept on the left; the proxy appends.
        assert_eq!(
            client(&["198.51.100.1, 203.0.113.7"]),
            address("203.0.113.7")
        );
        assert_eq!(
            client(&["198.51.100.1", "203.0.113.7"]),
            address("203.0.113.7")
        );
        // Trusted hops on the right are skipped.
        assert_eq!(client(&["203.0.113.7, 127.0.0.1"]), address("203.0.113.7"));
        assert_eq!(
            client(&["203.0.113.7, 10.1.2.3, 127.0.0.1"]),
            address("203.0.113.7")
        );
        assert_eq!(client(&["10.2.0.1, 127.0.0.1"]), address("10.2.0.1"));
        assert_eq!(client(&["2001:db8::1"]), address("2001:db8::1"));
        assert_eq!(client(&["127.0.0.1"]), address("127.0.0.1"));
        assert_eq!(client(&[]), None);
        assert_eq!(client(&["not an address"]), None);
        assert_eq!(client(&["nonsense, 203.0.113.7"]), address("203.0.113.7"));
    }
}
