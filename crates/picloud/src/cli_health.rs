//! `picloud health`: asks a server whether it is ready, for container health
//! checks and service managers that can only run a command.
//!
//! Exit codes: 0 ready (or alive, with `--live`); 1 the server answered that
//! it is not ready; 3 nothing answered.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{CliResult, Failure};

/// How long the check waits for an answer, connection included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `picloud health`.
#[derive(Debug, clap::Args)]
pub struct HealthArguments {
    /// The server's URL, such as `http://127.0.0.1:8080`. Default: the
    /// address in `PICLOUD_LISTEN` (the configuration file is not read),
    /// else 127.0.0.1:8080, over loopback when it is a wildcard address.
    #[arg(long)]
    url: Option<String>,
    /// The listen address the default URL is built from.
    #[arg(long, env = "PICLOUD_LISTEN", hide = true)]
    listen: Option<SocketAddr>,
    /// Check liveness (`/healthz`) instead of readiness (`/readyz`, which
    /// also checks the database and its schema).
    #[arg(long)]
    live: bool,
}

pub async fn run(arguments: HealthArguments) -> CliResult {
    let base = match arguments.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => local_url(arguments.listen),
    };
    let url = format!(
        "{base}/{}",
        if arguments.live { "healthz" } else { "readyz" }
    );
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|error| Failure::unreachable(format!("cannot start an HTTP client: {error}")))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|error| Failure::unreachable(format!("{url}: {error}")))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{body}");
        Ok(())
    } else {
        Err(Failure::refused(format!("{url} answered {status}: {body}")))
    }
}

/// The URL of a server listening on `listen` (default 127.0.0.1:8080) here.
fn local_url(listen: Option<SocketAddr>) -> String {
    crate::config::local_url(listen.unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))))
}

#[cfg(test)]
mod tests {
    use super::local_url;

    #[test]
    fn the_default_url_follows_the_listen_address() {
        assert_eq!(local_url(None), "http://127.0.0.1:8080");
        assert_eq!(
            local_url(Some("0.0.0.0:9000".parse().unwrap())),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            local_url(Some("[::]:80".parse().unwrap())),
            "http://[::1]:80"
        );
        assert_eq!(
            local_url(Some("192.168.1.5:8080".parse().unwrap())),
            "http://192.168.1.5:8080"
        );
    }
}
