//! The client address handlers see (`ConnectInfo`): the peer's, or behind a
//! trusted proxy the one it forwarded in `X-Forwarded-For`.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use picloud_orchestrator_core::IngressConfig;

use crate::{TestServer, executor};

/// A route that answers the client address it was given.
fn whoami() -> axum::Router {
    axum::Router::new().route(
        "/whoami",
        axum::routing::get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move {
            client.ip().to_string()
        }),
    )
}

async fn client_seen(server: &TestServer, forwarded_for: Option<&str>) -> String {
    let mut request = server.client.get(server.url("/whoami"));
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // By default the header is the client's to invent, and ignored.
    let server = TestServer::start_with(executor(), IngressConfig::default(), whoami()).await;
    assert_eq!(client_seen(&server, None).await, "127.0.0.1");
    assert_eq!(client_seen(&server, Some("203.0.113.7")).await, "127.0.0.1");
    server.stop().await;

    // Behind a proxy on loopback, the address it appended is the client's.
    let config = IngressConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..IngressConfig::default()
    };
    let server = TestServer::start_with(executor(), config, whoami()).await;
    assert_eq!(
        client_seen(&server, Some("203.0.113.7")).await,
        "203.0.113.7"
    );
    assert_eq!(
        client_seen(&server, Some("198.51.100.1, 203.0.113.7")).await,
        "203.0.113.7",
        "what the client sent itself is left of what the proxy appended"
    );
    assert_eq!(client_seen(&server, None).await, "127.0.0.1");
    assert_eq!(client_seen(&server, Some("garbage")).await, "127.0.0.1");
    server.stop().await;
}
