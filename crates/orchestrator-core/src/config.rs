//! Configuration of the ingress: request limits, server timeouts and the
//! invocation-record buffer. Every default is documented next to its field
//! and in `docs/http.md`.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Limits and timeouts of the HTTP ingress.
///
/// The per-request limits (body, headers, request timeout) are enforced by
/// [`ingress_router`](crate::ingress_router); the connection-level ones
/// (header read timeout, shutdown grace period) by [`serve`](crate::serve).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Largest request body a script accepts, in bytes; a larger one is
    /// refused with `413 payload_too_large` before the script runs.
    /// Default 1 MiB.
    pub max_body_bytes: u64,
    /// Most request headers a request may carry; more is
    /// `431 headers_too_large`. Default 100.
    pub max_header_count: usize,
    /// Most bytes of request headers (names and values together); more is
    /// `431 headers_too_large`. Also bounds the HTTP/1 read buffer in
    /// [`serve`](crate::serve), so a client cannot make the server buffer
    /// an endless header. Default 32 KiB.
    pub max_header_bytes: usize,
    /// Time for a whole request, from its headers being read to its response
    /// being ready: receiving the body and running the script. A client that
    /// has not sent its body by then gets `408 request_timeout`; a script
    /// still running gets `504 timeout`. Scripts have their own, shorter
    /// deadline (5 s by default), so this mostly stops slow uploads.
    /// Default 30,000 ms.
    pub request_timeout_ms: u64,
    /// Time a client has to send a request's headers after connecting or
    /// after its previous request on a keep-alive connection; then the
    /// connection is closed. It is also the idle timeout of keep-alive
    /// connections. Used by [`serve`](crate::serve). Default 10,000 ms.
    pub header_read_timeout_ms: u64,
    /// On shutdown, how long requests in flight may take to finish before
    /// their connections are closed. Used by [`serve`](crate::serve).
    /// Default 10,000 ms.
    pub shutdown_grace_ms: u64,
    /// Addresses or networks of reverse proxies in front of the server
    /// (Caddy on the same host: `["127.0.0.1", "::1"]`; a cluster's
    /// proxies: `["10.0.0.0/24"]`). For a connection from one of them, the
    /// client's address is taken from `X-Forwarded-For`: its rightmost entry
    /// that is not itself a trusted proxy. It is the address that log-in
    /// throttling counts failures against; without it every client behind
    /// the proxy would share one. Used by [`serve`](crate::serve).
    /// Default: none (the header is ignored).
    pub trusted_proxies: Vec<TrustedProxies>,
    /// The invocation-record buffer.
    pub records: RecordConfig,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            max_body_bytes: MIB,
            max_header_count: 100,
            max_header_bytes: 32 * KIB as usize,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            trusted_proxies: Vec::new(),
            records: RecordConfig::default(),
        }
    }
}

impl IngressConfig {
    /// Whether `address` is one of [`trusted_proxies`](Self::trusted_proxies).
    pub fn is_trusted_proxy(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.trusted_proxies
            .iter()
            .any(|proxies| proxies.0.contains(&address))
    }

    /// [`request_timeout_ms`](Self::request_timeout_ms) as a [`Duration`].
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`header_read_timeout_ms`](Self::header_read_timeout_ms) as a [`Duration`].
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// [`shutdown_grace_ms`](Self::shutdown_grace_ms) as a [`Duration`].
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// One address (`127.0.0.1`, `::1`) or network (`10.0.0.0/8`) of trusted
/// proxies, written as such in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustedProxies(ipnet::IpNet);

impl std::str::FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map(|network| TrustedProxies(network.trunc()))
            .map_err(|_| {
                format!("`{text}` is neither an IP address nor a network such as 10.0.0.0/8")
            })
    }
}

impl TryFrom<String> for TrustedProxies {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<TrustedProxies> for String {
    fn from(proxies: TrustedProxies) -> String {
        if proxies.0.prefix_len() == proxies.0.max_prefix_len() {
            proxies.0.addr().to_string()
        } else {
            proxies.0.to_string()
        }
    }
}

/// How invocation records are buffered before they reach the
/// [`RecordSink`](crate::RecordSink).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Records held in memory while waiting to be written. When the buffer
    /// is full the oldest record is dropped and counted
    /// ([`RecordBuffer::dropped`](crate::RecordBuffer::dropped)), so a slow
    /// database never slows requests down. Default 10,000.
    pub capacity: usize,
    /// Records written per batch; a full batch is written at once. Larger
    /// batches mean fewer transactions (and fsyncs) under load. Default 1,000.
    pub batch_size: usize,
    /// Longest a record waits before its batch is written, in milliseconds.
    /// Default 1,000 ms.
    pub flush_interval_ms: u64,
    /// Bytes of script output kept in one record; later lines are dropped
    /// and the record is marked truncated. The logs get every line.
    /// Default 8 KiB.
    pub max_output_bytes: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            capacity: 10_000,
            batch_size: 1_000,
            flush_interval_ms: 1_000,
            max_output_bytes: 8 * KIB as usize,
        }
    }
}

impl RecordConfig {
    /// [`flush_interval_ms`](Self::flush_interval_ms) as a [`Duration`].
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }
}
