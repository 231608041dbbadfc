//! Outbound HTTP for scripts, executed by the host.
//!
//! A script never opens a socket: it asks the host, and [`OutboundClient::send`]
//! decides whether the request may leave and carries it out. The rules, in
//! the order they are checked on **every hop** (the first request and each
//! redirect, which is followed by hand):
//!
//! 1. The scheme is `http` or `https`.
//! 2. The host matches the app's allow-list ([`AppPolicy::allowed_hosts`]:
//!    an exact host, `*.example.com` for any sub-domain, each with an
//!    optional `:port`; without one only 80 and 443). An empty list allows nothing.
//! 3. Cloud metadata host names (`metadata.google.internal`, ...) are refused.
//! 4. **After DNS resolution**, every address must be public: loopback,
//!    private, link-local (including `169.254.169.254`), unique-local, CGNAT,
//!    unspecified, multicast, broadcast, documentation and reserved ranges,
//!    and the IPv4-mapped, -compatible, NAT64 and 6to4 IPv6 forms of those
//!    are refused ([`refusal_reason`]). The operator's
//!    [`OutboundConfig::allow_private`] list exempts chosen hosts, addresses or
//!    networks (tests use it to reach a server on `127.0.0.1`).
//!
//! The addresses are checked twice: once before the request (with the port,
//! for a clear error), and again inside the client's resolver, which is the
//! one that hands addresses to the connector. So the connection goes to an
//! address that was checked, and a name that resolves to a public address the
//! first time and to `127.0.0.1` the second (DNS rebinding) is refused. IP
//! literals bypass resolvers; they are checked before the request.
//!
//! Limits: a connect timeout, a total timeout that also ends at the
//! invocation's deadline ([`AppPolicy::deadline`]), a response size cap
//! enforced while streaming, and a cap on requests per invocation counted by
//! the [`AppPolicy`] (one per [`OutboundClient::send`] call; redirects are
//! bounded by [`OutboundConfig::max_redirects`] instead).
//!
//! Waiting for the network is asynchronous: a slow server costs the
//! invocation wall-clock time, never a host thread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use picloud_shared::HttpAllowPattern;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Host names of cloud metadata services, refused whatever they resolve to.
pub const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
    "metadata.platformequinix.com",
];

/// Settings of outbound HTTP, for the whole instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundConfig {
    /// How long establishing a connection (TCP and TLS) may take. Default 5 s.
    pub connect_timeout: Duration,
    /// How long one request may take in all, redirects and body included.
    /// The invocation's deadline shortens it. Default 10 s.
    pub total_timeout: Duration,
    /// Largest response body, in bytes; reading stops beyond it. Default 1 MiB.
    pub max_response_bytes: usize,
    /// Most requests one invocation may send. Default 10.
    pub max_requests_per_invocation: u32,
    /// Most redirects one request follows. Default 5.
    pub max_redirects: u32,
    /// Operator exemptions from the private-address refusal: `host`,
    /// `host:port`, `IP`, `IP:port`, `[IPv6]:port` or `IP/prefix`. Empty by
    /// default; never settable by an app.
    pub allow_private: Vec<String>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            max_response_bytes: 1024 * 1024,
            max_requests_per_invocation: 10,
            max_redirects: 5,
            allow_private: Vec::new(),
        }
    }
}

/// What one app's invocation may do: its allow-list, its deadline and how
/// many requests it has sent. Make one per invocation.
#[derive(Debug)]
pub struct AppPolicy {
    /// The app's allow-list patterns: `api.example.com`, `*.example.com`,
    /// `127.0.0.1`, `[::1]`, each with an optional `:port` (without one,
    /// only ports 80 and 443). Empty means nothing is allowed.
    pub allowed_hosts: Vec<String>,
    /// When the invocation must end; no request outlives it.
    pub deadline: Instant,
    /// Requests sent so far by this invocation.
    pub requests_sent: AtomicU32,
}

impl AppPolicy {
    /// The policy of an invocation of an app with `allowed_hosts`, ending at
    /// `deadline`, that has sent nothing yet.
    pub fn new(allowed_hosts: Vec<String>, deadline: Instant) -> Self {
        AppPolicy {
            allowed_hosts,
            deadline,
            requests_sent: AtomicU32::new(0),
        }
    }
}

/// A request a script wants to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundRequest {
    /// `GET`, `POST`, ... (case-insensitive).
    pub method: String,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Request headers. `Host`, `Content-Length`, `Transfer-Encoding` and
    /// `Connection` are set by the client and ignored here.
    pub headers: Vec<(String, String)>,
    /// The body; empty for none.
    pub body: Vec<u8>,
}

/// The answer of the last hop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundResponse {
    /// The HTTP status.
    pub status: u16,
    /// Response headers, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The whole body (at most [`OutboundConfig::max_response_bytes`]).
    pub body: Vec<u8>,
}

/// Why an outbound request was refused or failed. [`OutboundError::code`] is
/// stable; the message is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The URL does not parse, has no host, or is not `http`/`https`.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The method or a header is not valid HTTP.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// The host is not in the app's allow-list.
    #[error(
        "host `{host}` is not in this app's outbound allow-list (an app editor can add it in the app's settings)"
    )]
    HostNotAllowed {
        /// The host (with its port if not the default).
        host: String,
    },
    /// The host is, or resolves to, an address scripts may not reach.
    #[error("refused to connect to `{host}`: address {address} is {reason}")]
    AddressRefused {
        /// The host as requested.
        host: String,
        /// The refused address (or the host name itself for metadata names).
        address: String,
        /// Why: `loopback`, `private`, `link-local`, `a cloud metadata host`...
        reason: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve `{host}`: {message}")]
    DnsFailed {
        /// The host.
        host: String,
        /// The resolver's message.
        message: String,
    },
    /// The connection could not be established.
    #[error("cannot connect to `{host}`: {message}")]
    ConnectFailed {
        /// The host.
        host: String,
        /// The cause.
        message: String,
    },
    /// The request took longer than the timeout or the invocation's deadline.
    #[error("the request did not complete within {after_ms} ms")]
    Timeout {
        /// The time it was given.
        after_ms: u64,
    },
    /// The response body is larger than the cap.
    #[error("the response body is larger than the limit of {limit_bytes} bytes")]
    TooLarge {
        /// The cap.
        limit_bytes: usize,
    },
    /// The invocation already sent as many requests as allowed.
    #[error("this invocation already sent the most outbound requests allowed ({limit})")]
    TooManyRequests {
        /// The cap.
        limit: u32,
    },
    /// More redirects than allowed.
    #[error("more than {limit} redirects")]
    TooManyRedirects {
        /// The cap.
        limit: u32,
    },
    /// Anything else that went wrong on the wire.
    #[error("the request failed: {message}")]
    Failed {
        /// The cause.
        message: String,
    },
}

impl OutboundError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            OutboundError::InvalidUrl { .. } => "invalid_url",
            OutboundError::InvalidRequest { .. } => "invalid_request",
            OutboundError::HostNotAllowed { .. } => "host_not_allowed",
            OutboundError::AddressRefused { .. } => "address_refused",
            OutboundError::DnsFailed { .. } => "dns_failed",
            OutboundError::ConnectFailed { .. } => "connect_failed",
            OutboundError::Timeout { .. } => "timeout",
            OutboundError::TooLarge { .. } => "too_large",
            OutboundError::TooManyRequests { .. } => "too_many_requests",
            OutboundError::TooManyRedirects { .. } => "too_many_redirects",
            OutboundError::Failed { .. } => "request_failed",
        }
    }
}

/// Why `address` may not be reached by scripts, or `None` if it is a public
/// unicast address. IPv6 forms that embed an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by the embedded address.
pub fn refusal_reason(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => refusal_reason_v4(v4),
        IpAddr::V6(v6) => refusal_reason_v6(v6),
    }
}

fn refusal_reason_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = address.octets();
    let reason = match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (CGNAT, 100.64.0.0/10)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (including cloud metadata)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "reserved for protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "reserved for documentation",
        (192, 88, 99) => "reserved (6to4 relay anycast)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "reserved for benchmarking",
        (224..=239, _, _) => "multicast",
        (255, 255, 255) if address.is_broadcast() => "broadcast",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    };
    Some(reason)
}

fn refusal_reason_v6(address: Ipv6Addr) -> Option<&'static str> {
    let segments = address.segments();
    if address.is_unspecified() {
        return Some("unspecified");
    }
    if address.is_loopback() {
        return Some("loopback");
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if let Some(v4) = address.to_ipv4() {
        return refusal_reason_v4(v4);
    }
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    match segments[0] {
        // NAT64 (64:ff9b::/96): the network translates to the embedded address.
        0x0064 if segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0] => {
            refusal_reason_v4(embedded_v4(segments[6], segments[7]))
        }
        0x0064 if segments[1] == 0xff9b && segments[2] == 1 => Some("local-use NAT64"),
        // 6to4 (2002::/16) embeds the IPv4 address in bits 16..48.
        0x2002 => refusal_reason_v4(embedded_v4(segments[1], segments[2])),
        0x0100 if segments[1..4] == [0, 0, 0] => Some("discard-only (100::/64)"),
        0x2001 if segments[1] == 0 => Some("Teredo tunnelling (2001::/32)"),
        0x2001 if segments[1] == 0x0db8 => Some("reserved for documentation"),
        0x2001 if segments[1] < 0x0200 => Some("reserved for protocol assignments"),
        first if first & 0xfe00 == 0xfc00 => Some("unique-local (fc00::/7)"),
        first if first & 0xffc0 == 0xfe80 => Some("link-local (fe80::/10)"),
        first if first & 0xffc0 == 0xfec0 => Some("site-local (fec0::/10)"),
        first if first & 0xff00 == 0xff00 => Some("multicast"),
        // Everything outside 2000::/3 is unassigned or special.
        first if first & 0xe000 != 0x2000 => Some("not a global unicast address"),
        _ => None,
    }
}

/// One entry of [`OutboundConfig::allow_private`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exemption {
    /// A host name, lower-case, with an optional port.
    Host(String, Option<u16>),
    /// A network (a single address is a /32 or /128), with an optional port.
    Network(IpAddr, u8, Option<u16>),
}

impl Exemption {
    fn parse(entry: &str) -> Result<Exemption, String> {
        let entry = entry.trim();
        let invalid = || {
            format!(
                "`{entry}` is not host[:port], IP[:port], [IPv6]:port or IP/prefix in outbound.allow_private"
            )
        };
        if let Some((network, prefix)) = entry.split_once('/') {
            let address: IpAddr = network.parse().map_err(|_| invalid())?;
            let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(invalid());
            }
            return Ok(Exemption::Network(canonical(address), prefix, None));
        }
        if let Ok(address) = entry.parse::<IpAddr>() {
            let address = canonical(address);
            let full = if address.is_ipv4() { 32 } else { 128 };
            return Ok(Exemption::Network(address, full, None));
        }
        if let Ok(socket) = entry.parse::<SocketAddr>() {
            let address = canonical(socket.ip());
            let full = if address.is_ipv4() { 32 } else { 128 };
            return Ok(Exemption::Network(address, full, Some(socket.port())));
        }
        let (host, port) = split_host_port(entry).ok_or_else(invalid)?;
        if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
            return Err(invalid());
        }
        Ok(Exemption::Host(normalize_host(host), port))
    }

    /// Whether this entry exempts `address`, reached as `host` on `port`.
    ///
    /// The resolver does not know the port (`None`). There an exempted host
    /// name still counts (the operator vouches for the name, and the port was
    /// checked before), but an address exempted on one port only does not:
    /// otherwise a name that rebinds to that address would reach it on any
    /// port. IP-literal URLs never go through the resolver.
    fn covers(&self, host: &str, address: IpAddr, port: Option<u16>) -> bool {
        match self {
            Exemption::Host(name, wanted) => {
                name == host
                    && match (wanted, port) {
                        (Some(wanted), Some(port)) => *wanted == port,
                        _ => true,
                    }
            }
            Exemption::Network(network, prefix, wanted) => {
                in_network(canonical(address), *network, *prefix)
                    && match (wanted, port) {
                        (None, _) => true,
                        (Some(wanted), Some(port)) => *wanted == port,
                        (Some(_), None) => false,
                    }
            }
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

fn in_network(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(address), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(address) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(address), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(address) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// `host[:port]` → (host, port); `None` if the port is not a number.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => Some((text, None)),
        None => Some((text, None)),
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks the operator's [`OutboundConfig::allow_private`] entries, naming
/// the first invalid one.
pub fn validate_allow_private(entries: &[String]) -> Result<(), String> {
    entries
        .iter()
        .try_for_each(|entry| Exemption::parse(entry).map(|_| ()))
}

/// Whether `host:port` matches one of the app's patterns.
fn host_is_allowed(patterns: &[String], host: &str, port: u16) -> bool {
    // The control plane stored these through the same parser; one that
    // does not parse (edited by hand in the database) allows nothing.
    patterns.iter().any(|pattern| {
        HttpAllowPattern::parse(pattern).is_ok_and(|pattern| pattern.matches(host, port))
    })
}

/// The address rules shared by the pre-check and the resolver.
#[derive(Debug)]
struct AddressGuard {
    exemptions: Vec<Exemption>,
}

impl AddressGuard {
    /// `Err((address, reason))` for the first address of `addresses` that
    /// `host` may not reach on `port`.
    fn check(
        &self,
        host: &str,
        port: Option<u16>,
        addresses: &[IpAddr],
    ) -> Result<(), (String, String)> {
        if METADATA_HOSTS.contains(&host)
            && !self
                .exemptions
                .iter()
                .any(|exemption| matches!(exemption, Exemption::Host(name, _) if name == host))
        {
            return Err((host.to_owned(), "a cloud metadata host".to_owned()));
        }
        for address in addresses {
            if let Some(reason) = refusal_reason(*address)
                && !self
                    .exemptions
                    .iter()
                    .any(|exemption| exemption.covers(host, *address, port))
            {
                return Err((address.to_string(), reason.to_owned()));
            }
        }
        Ok(())
    }
}

/// The error the resolver hands to the connector when it refuses an address;
/// found again in the error's source chain.
#[derive(Debug, thiserror::Error)]
#[error("address {address} of `{host}` is {reason}")]
struct ResolverRefusal {
    host: String,
    address: String,
    reason: String,
}

/// Resolves with the system resolver (through tokio) and refuses any answer
/// with an address scripts may not reach: the connector only ever sees
/// checked addresses.
#[derive(Debug)]
struct CheckingResolver {
    guard: Arc<AddressGuard>,
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = normalize_host(name.as_str());
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
            // The port is not known here; the pre-check enforced it.
            guard
                .check(&host, None, &ips)
                .map_err(|(address, reason)| {
                    Box::new(ResolverRefusal {
                        host: host.clone(),
                        address,
                        reason,
                    }) as Box<dyn std::error::Error + Send + Sync>
                })?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The outbound HTTP client: one per process, cheap to clone.
#[derive(Clone, Debug)]
pub struct OutboundClient {
    http: reqwest::Client,
    guard: Arc<AddressGuard>,
    config: Arc<OutboundConfig>,
}

impl OutboundClient {
    /// A client with `config`. Fails on an invalid `allow_private` entry or
    /// if the TLS stack cannot start.
    pub fn new(config: OutboundConfig) -> Result<OutboundClient, String> {
        let exemptions = config
            .allow_private
            .iter()
            .map(|entry| Exemption::parse(entry))
            .collect::<Result<Vec<_>, _>>()?;
        let guard = Arc::new(AddressGuard { exemptions });
        let http = reqwest::Client::builder()
            .user_agent(concat!("picloud/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            // Never a proxy from the environment: it would connect for us
            // to addresses we did not check.
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .dns_resolver(Arc::new(CheckingResolver {
                guard: guard.clone(),
            }))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| format!("cannot start the outbound HTTP client: {error}"))?;
        Ok(OutboundClient {
            http,
            guard,
            config: Arc::new(config),
        })
    }

    /// The settings.
    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// Sends `request` for an invocation with `policy`, following redirects
    /// (each hop checked again), and returns the final answer with its whole
    /// body. Counts one request against the invocation's cap.
    pub async fn send(
        &self,
        request: OutboundRequest,
        policy: &AppPolicy,
    ) -> Result<OutboundResponse, OutboundError> {
        let limit = self.config.max_requests_per_invocation;
        let sent = policy.requests_sent.fetch_add(1, Ordering::Relaxed);
        if sent >= limit {
            return Err(OutboundError::TooManyRequests { limit });
        }
        let budget = self
            .config
            .total_timeout
            .min(policy.deadline.saturating_duration_since(Instant::now()));
        let timeout = OutboundError::Timeout {
            after_ms: budget.as_millis() as u64,
        };
        if budget.is_zero() {
            return Err(timeout);
        }
        match tokio::time::timeout(budget, self.send_following(request, policy)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(timeout),
        }
    }

    async fn send_following(
        &self,
        request: OutboundRequest,
        policy: &AppPolicy,
    ) -> Result<OutboundResponse, OutboundError> {
        let mut url = Url::parse(&request.url).map_err(|error| OutboundError::InvalidUrl {
            url: request.url.clone(),
            reason: error.to_string(),
        })?;
        let mut method = reqwest::Method::from_bytes(
            request.method.to_ascii_uppercase().as_bytes(),
        )
        .map_err(|_| OutboundError::InvalidRequest {
            reason: format!("`{}` is not an HTTP method", request.method),
        })?;
        let mut headers = header_map(&request.headers)?;
        let mut body = request.body;
        let mut redirects = 0;
        loop {
            let host = self.check_url(&url, policy).await?;
            let mut builder = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if !body.is_empty() {
                builder = builder.body(body.clone());
            }
            let response = builder
                .send()
                .await
                .map_err(|error| classify(&error, &host))?;
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            if status.is_redirection()
                && let Some(location) = location
            {
                if redirects >= self.config.max_redirects {
                    return Err(OutboundError::TooManyRedirects {
                        limit: self.config.max_redirects,
                    });
                }
                redirects += 1;
                let next = url
                    .join(&location)
                    .map_err(|error| OutboundError::InvalidUrl {
                        url: location.clone(),
                        reason: format!("in a redirect: {error}"),
                    })?;
                let keeps_method = matches!(status.as_u16(), 307 | 308);
                if !keeps_method && method != reqwest::Method::HEAD {
                    method = reqwest::Method::GET;
                    body.clear();
                    headers.remove(reqwest::header::CONTENT_TYPE);
                }
                if next.origin() != url.origin() {
                    // Credentials were meant for the first host only.
                    for name in [
                        reqwest::header::AUTHORIZATION,
                        reqwest::header::COOKIE,
                        reqwest::header::PROXY_AUTHORIZATION,
                    ] {
                        headers.remove(name);
                    }
                }
                url = next;
                continue;
            }
            return self.read(response, &host).await;
        }
    }

    /// Checks one hop's URL: scheme, allow-list, metadata names and every
    /// resolved address. Returns the host, for messages.
    async fn check_url(&self, url: &Url, policy: &AppPolicy) -> Result<String, OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::InvalidUrl {
                url: url.to_string(),
                reason: "only http:// and https:// are supported".into(),
            });
        }
        let (host, literal) = match url.host() {
            Some(url::Host::Domain(domain)) => (normalize_host(domain), None),
            Some(url::Host::Ipv4(address)) => (address.to_string(), Some(IpAddr::V4(address))),
            Some(url::Host::Ipv6(address)) => (address.to_string(), Some(IpAddr::V6(address))),
            None => {
                return Err(OutboundError::InvalidUrl {
                    url: url.to_string(),
                    reason: "it has no host".into(),
                });
            }
        };
        let port = url.port_or_known_default().unwrap_or(80);
        if !host_is_allowed(&policy.allowed_hosts, &host, port) {
            let shown = match (literal, url.port()) {
                (Some(IpAddr::V6(_)), Some(port)) => format!("[{host}]:{port}"),
                (_, Some(port)) => format!("{host}:{port}"),
                _ => host.clone(),
            };
            return Err(OutboundError::HostNotAllowed { host: shown });
        }
        // Metadata names are refused before they are even resolved.
        self.guard
            .check(&host, Some(port), &[])
            .map_err(|(address, reason)| OutboundError::AddressRefused {
                host: host.clone(),
                address,
                reason,
            })?;
        let addresses = match literal {
            Some(address) => vec![address],
            None => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|error| OutboundError::DnsFailed {
                    host: host.clone(),
                    message: error.to_string(),
                })?
                .map(|socket| socket.ip())
                .collect(),
        };
        self.guard
            .check(&host, Some(port), &addresses)
            .map_err(|(address, reason)| OutboundError::AddressRefused {
                host: host.clone(),
                address,
                reason,
            })?;
        Ok(host)
    }

    /// Reads the body, stopping as soon as it passes the cap.
    async fn read(
        &self,
        mut response: reqwest::Response,
        host: &str,
    ) -> Result<OutboundResponse, OutboundError> {
        let limit_bytes = self.config.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|length| length > limit_bytes as u64)
        {
            return Err(OutboundError::TooLarge { limit_bytes });
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| classify(&error, host))?
        {
            if body.len() + chunk.len() > limit_bytes {
                return Err(OutboundError::TooLarge { limit_bytes });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    }
}

fn header_map(headers: &[(String, String)]) -> Result<reqwest::header::HeaderMap, OutboundError> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| OutboundError::InvalidRequest {
                reason: format!("`{name}` is not a header name"),
            })?;
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| OutboundError::InvalidRequest {
            reason: format!("the value of header `{name}` is not valid"),
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// Turns a client error into an [`OutboundError`], finding the resolver's
/// refusal in the source chain.
fn classify(error: &reqwest::Error, host: &str) -> OutboundError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refusal) = current.downcast_ref::<ResolverRefusal>() {
            return OutboundError::AddressRefused {
                host: refusal.host.clone(),
                address: refusal.address.clone(),
                reason: refusal.reason.clone(),
            };
        }
        source = current.source();
    }
    let message = chain(error);
    if error.is_timeout() {
        OutboundError::ConnectFailed {
            host: host.to_owned(),
            message: format!("timed out: {message}"),
        }
    } else if error.is_connect() {
        OutboundError::ConnectFailed {
            host: host.to_owned(),
            message,
        }
    } else {
        OutboundError::Failed { message }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(current) = source {
        message.push_str(": ");
        message.push_str(&current.to_string());
        source = current.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        refusal_reason(text.parse().unwrap())
    }

    #[test]
    fn private_and_special_ipv4_addresses_are_refused() {
        for address in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.5",
            "192.168.1.1",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(reason(address).is_some(), "{address} must be refused");
        }
    }

    #[test]
    fn public_ipv4_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "93.184.216.34",
        ] {
            assert_eq!(reason(address), None, "{address} is public");
        }
    }

    #[test]
    fn ipv6_forms_of_private_addresses_are_refused() {
        for address in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::ffff:7f00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
        ] {
            assert!(reason(address).is_some(), "{address} must be refused");
        }
    }

    #[test]
    fn public_ipv6_addresses_pass() {
        for address in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(reason(address), None, "{address} is public");
        }
    }

    #[test]
    fn allow_list_patterns_match_hosts_and_ports() {
        let patterns = vec![
            "api.example.com".to_owned(),
            "*.hooks.example.org".to_owned(),
            "127.0.0.1:8080".to_owned(),
            "[::1]:9000".to_owned(),
        ];
        assert!(host_is_allowed(&patterns, "api.example.com", 443));
        assert!(host_is_allowed(&patterns, "api.example.com", 80));
        assert!(!host_is_allowed(&patterns, "api.example.com", 8443));
        assert!(!host_is_allowed(&patterns, "example.com", 443));
        assert!(!host_is_allowed(&patterns, "evilapi.example.com", 443));
        assert!(host_is_allowed(&patterns, "a.hooks.example.org", 443));
        assert!(host_is_allowed(&patterns, "a.b.hooks.example.org", 443));
        assert!(!host_is_allowed(&patterns, "hooks.example.org", 443));
        assert!(!host_is_allowed(&patterns, "evilhooks.example.org", 443));
        assert!(host_is_allowed(&patterns, "127.0.0.1", 8080));
        assert!(!host_is_allowed(&patterns, "127.0.0.1", 8081));
        assert!(host_is_allowed(&patterns, "::1", 9000));
        assert!(!host_is_allowed(&[], "api.example.com", 443));
    }

    #[test]
    fn operator_exemptions_cover_addresses_networks_and_ports() {
        let exemption = |text: &str| Exemption::parse(text).unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(exemption("127.0.0.1:8080").covers("127.0.0.1", loopback, Some(8080)));
        assert!(!exemption("127.0.0.1:8080").covers("127.0.0.1", loopback, Some(8081)));
        assert!(exemption("127.0.0.1:8080").covers("127.0.0.1", mapped, Some(8080)));
        assert!(exemption("127.0.0.0/8").covers("x", "127.9.9.9".parse().unwrap(), Some(1)));
        assert!(!exemption("127.0.0.0/8").covers("x", "10.0.0.1".parse().unwrap(), Some(1)));
        assert!(exemption("[::1]:80").covers("::1", "::1".parse().unwrap(), Some(80)));
        assert!(exemption("fd00::/8").covers("x", "fd12::1".parse().unwrap(), None));
        assert!(exemption("internal.lan").covers("internal.lan", loopback, Some(1)));
        assert!(exemption("internal.lan:80").covers("internal.lan", loopback, None));
        // The resolver (no port) does not extend a one-port exemption to a
        // name that resolves to that address.
        assert!(!exemption("127.0.0.1:8080").covers("rebound.example", loopback, None));
        assert!(exemption("127.0.0.0/8").covers("rebound.example", loopback, None));
        assert!(!exemption("internal.lan").covers("other.lan", loopback, Some(1)));
        assert!(Exemption::parse("10.0.0.0/33").is_err());
        assert!(Exemption::parse("a b").is_err());
        assert!(Exemption::parse("host:notaport").is_err());
    }

    /// The resolver is what the connector uses: it refuses on its own, so
    /// a name that passed the pre-check and then resolves to a private
    /// address (DNS rebinding) never reaches a socket.
    #[tokio::test]
    async fn the_resolver_refuses_private_answers() {
        use std::str::FromStr;
        let resolver = CheckingResolver {
            guard: Arc::new(AddressGuard { exemptions: vec![] }),
        };
        let error = match resolver.resolve(Name::from_str("localhost").unwrap()).await {
            Ok(addresses) => panic!("resolved to {:?}", addresses.collect::<Vec<_>>()),
            Err(error) => error,
        };
        assert!(error.downcast_ref::<ResolverRefusal>().is_some(), "{error}");
        let resolver = CheckingResolver {
            guard: Arc::new(AddressGuard {
                exemptions: vec![
                    Exemption::parse("127.0.0.1:8080").unwrap(),
                    Exemption::parse("[::1]:8080").unwrap(),
                ],
            }),
        };
        assert!(
            resolver
                .resolve(Name::from_str("localhost").unwrap())
                .await
                .is_err()
        );
        let resolver = CheckingResolver {
            guard: Arc::new(AddressGuard {
                exemptions: vec![
                    Exemption::parse("127.0.0.0/8").unwrap(),
                    Exemption::parse("::1").unwrap(),
                ],
            }),
        };
        let addresses: Vec<SocketAddr> = resolver
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
    }

    #[test]
    fn metadata_names_are_refused_unless_exempted() {
        let guard = AddressGuard { exemptions: vec![] };
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        assert!(
            guard
                .check("metadata.google.internal", Some(80), &[public])
                .is_err()
        );
        assert!(guard.check("example.com", Some(80), &[public]).is_ok());
        let guard = AddressGuard {
            exemptions: vec![Exemption::parse("metadata").unwrap()],
        };
        assert!(guard.check("metadata", Some(80), &[public]).is_ok());
    }
}
