//! Outbound HTTP: what may leave the host and what may not. Only loopback
//! traffic: a test server on 127.0.0.1, exempted by the operator's
//! `allow_private` where a test wants it reached.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use picloud_executor_core::outbound::{
    AppPolicy, OutboundClient, OutboundConfig, OutboundError, OutboundRequest,
};
use tokio::io::AsyncWriteExt;

/// Starts the test server on an ephemeral loopback port.
async fn test_server() -> SocketAddr {
    #[derive(serde::Deserialize)]
    struct To {
        to: String,
    }
    let router = Router::new()
        .route("/hello", get(|| async { "hello from the test server" }))
        .route(
            "/echo",
            any(
                |method: axum::http::Method, headers: HeaderMap, body: String| async move {
                    let auth = headers
                        .get(header::AUTHORIZATION)
                        .map(|value| value.to_str().unwrap_or("").to_owned())
                        .unwrap_or_default();
                    format!("{method} {body} auth={auth}")
                },
            ),
        )
        .route("/big", get(|| async { vec![b'x'; 2 * 1024 * 1024] }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "finally"
            }),
        )
        .route(
            "/redirect",
            get(|Query(To { to }): Query<To>| async move {
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, to)
                    .body(axum::body::Body::empty())
                    .unwrap()
                    .into_response()
            }),
        )
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// A raw server that streams a large body with no `Content-Length`.
async fn streaming_server(bytes: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                    .await;
                let chunk = vec![b'y'; 64 * 1024];
                let mut written = 0;
                while written < bytes {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    written += chunk.len();
                }
            });
        }
    });
    address
}

fn client(allow_private: &[String]) -> OutboundClient {
    OutboundClient::new(OutboundConfig {
        allow_private: allow_private.to_vec(),
        ..OutboundConfig::default()
    })
    .unwrap()
}

fn policy(allowed_hosts: &[&str]) -> AppPolicy {
    AppPolicy::new(
        allowed_hosts.iter().map(|host| host.to_string()).collect(),
        Instant::now() + Duration::from_secs(30),
    )
}

fn get_request(url: &str) -> OutboundRequest {
    OutboundRequest {
        method: "GET".into(),
        url: url.into(),
        ..OutboundRequest::default()
    }
}

async fn refused_code(client: &OutboundClient, url: &str, allowed_hosts: &[&str]) -> String {
    match client.send(get_request(url), &policy(allowed_hosts)).await {
        Ok(response) => panic!(
            "{url} must be refused, got {} {:?}",
            response.status,
            String::from_utf8_lossy(&response.body)
        ),
        Err(error) => {
            assert!(!error.to_string().is_empty());
            error.code().to_owned()
        }
    }
}

#[tokio::test]
async fn an_allowed_exempted_loopback_server_answers() {
    let server = test_server().await;
    let client = client(&[server.to_string()]);
    let allowed = server.to_string();
    let response = client
        .send(
            get_request(&format!("http://{server}/hello")),
            &policy(&[&allowed]),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello from the test server");
    assert!(
        response
            .headers
            .iter()
            .any(|(name, value)| name == "content-type" && value.starts_with("text/plain"))
    );

    let posted = client
        .send(
            OutboundRequest {
                method: "post".into(),
                url: format!("http://{server}/echo"),
                headers: vec![("authorization".into(), "Bearer t".into())],
                body: b"payload".to_vec(),
            },
            &policy(&[&allowed]),
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&posted.body),
        "POST payload auth=Bearer t"
    );
}

#[tokio::test]
async fn loopback_private_and_metadata_addresses_are_refused() {
    let server = test_server().await;
    // No operator exemption: even an app that lists the host is refused.
    let client = client(&[]);
    let port = server.port();
    let cases = [
        (
            format!("http://127.0.0.1:{port}/hello"),
            format!("127.0.0.1:{port}"),
        ),
        (
            format!("http://[::1]:{port}/hello"),
            format!("[::1]:{port}"),
        ),
        ("http://10.0.0.1/".to_owned(), "10.0.0.1".to_owned()),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254".to_owned(),
        ),
        (
            "http://[::ffff:127.0.0.1]/".to_owned(),
            "[::ffff:127.0.0.1]".to_owned(),
        ),
        (
            "http://[::ffff:a9fe:a9fe]/".to_owned(),
            "*.invalid".to_owned(),
        ),
        ("http://2130706433/".to_owned(), "127.0.0.1".to_owned()),
        ("http://0x7f.1/".to_owned(), "127.0.0.1".to_owned()),
        ("http://0.0.0.0/".to_owned(), "0.0.0.0".to_owned()),
        (
            format!("http://localhost:{port}/hello"),
            format!("localhost:{port}"),
        ),
        (
            "http://metadata.google.internal/".to_owned(),
            "metadata.google.internal".to_owned(),
        ),
    ];
    for (url, allowed) in cases {
        let code = refused_code(&client, &url, &[&allowed, "[::ffff:a9fe:a9fe]"]).await;
        assert_eq!(code, "address_refused", "{url}");
    }
}

#[tokio::test]
async fn hosts_outside_the_allow_list_are_refused() {
    let server = test_server().await;
    let client = client(&[server.to_string()]);
    let url = format!("http://{server}/hello");
    assert_eq!(refused_code(&client, &url, &[]).await, "host_not_allowed");
    assert_eq!(
        refused_code(&client, &url, &["127.0.0.1:1"]).await,
        "host_not_allowed"
    );
    assert_eq!(
        refused_code(&client, &url, &["example.com"]).await,
        "host_not_allowed"
    );
    assert_eq!(
        refused_code(&client, "ftp://127.0.0.1/", &["127.0.0.1"]).await,
        "invalid_url"
    );
    assert_eq!(
        refused_code(&client, "not a url", &["127.0.0.1"]).await,
        "invalid_url"
    );
    assert_eq!(
        refused_code(&client, "file:///etc/passwd", &["*"]).await,
        "invalid_url"
    );
}

#[tokio::test]
async fn redirects_are_checked_on_every_hop() {
    let server = test_server().await;
    let other = test_server().await;
    let client = client(&[server.to_string()]);
    let allowed = server.to_string();
    let other_allowed = other.to_string();
    let via = |to: &str| format!("http://{server}/redirect?to={to}");

    // To a loopback port the operator did not exempt (the app lists it).
    let to_other = via(&format!("http://{other}/hello"));
    assert_eq!(
        refused_code(&client, &to_other, &[&allowed, &other_allowed]).await,
        "address_refused"
    );
    // To another loopback address.
    let to_loopback = via(&format!("http://127.0.0.2:{}/hello", server.port()));
    assert_eq!(
        refused_code(
            &client,
            &to_loopback,
            &[&allowed, &format!("127.0.0.2:{}", server.port())]
        )
        .await,
        "address_refused"
    );
    // To the metadata address.
    let to_metadata = via("http://169.254.169.254/latest/meta-data/");
    assert_eq!(
        refused_code(&client, &to_metadata, &[&allowed, "169.254.169.254"]).await,
        "address_refused"
    );
    // To a host the app does not list.
    let to_unlisted = via(&format!("http://{other}/hello"));
    assert_eq!(
        refused_code(&client, &to_unlisted, &[&allowed]).await,
        "host_not_allowed"
    );
    // A name resolving to loopback, on a port the operator did not exempt.
    let to_localhost = via(&format!("http://localhost:{}/hello", other.port()));
    assert_eq!(
        refused_code(
            &client,
            &to_localhost,
            &[&allowed, &format!("localhost:{}", other.port())]
        )
        .await,
        "address_refused"
    );
    // An endless loop ends.
    assert_eq!(
        refused_code(&client, &format!("http://{server}/loop"), &[&allowed]).await,
        "too_many_redirects"
    );
    // A redirect within the allowed server is followed.
    let response = client
        .send(get_request(&via("/hello")), &policy(&[&allowed]))
        .await
        .unwrap();
    assert_eq!(response.body, b"hello from the test server");
}

#[tokio::test]
async fn a_redirect_to_an_exempted_server_drops_credentials() {
    let server = test_server().await;
    let other = test_server().await;
    let client = client(&[server.to_string(), other.to_string()]);
    let response = client
        .send(
            OutboundRequest {
                method: "GET".into(),
                url: format!("http://{server}/redirect?to=http://{other}/echo"),
                headers: vec![("Authorization".into(), "secret".into())],
                body: Vec::new(),
            },
            &policy(&[&server.to_string(), &other.to_string()]),
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&response.body), "GET  auth=");
}

#[tokio::test]
async fn responses_over_the_cap_are_refused() {
    let server = test_server().await;
    let streaming = streaming_server(8 * 1024 * 1024).await;
    let client = client(&[server.to_string(), streaming.to_string()]);
    assert_eq!(
        refused_code(
            &client,
            &format!("http://{server}/big"),
            &[&server.to_string()]
        )
        .await,
        "too_large"
    );
    let started = Instant::now();
    assert_eq!(
        refused_code(
            &client,
            &format!("http://{streaming}/"),
            &[&streaming.to_string()]
        )
        .await,
        "too_large"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn slow_servers_time_out_and_the_deadline_wins() {
    let server = test_server().await;
    let allowed = server.to_string();
    let client = OutboundClient::new(OutboundConfig {
        total_timeout: Duration::from_millis(300),
        allow_private: vec![server.to_string()],
        ..OutboundConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let error = client
        .send(
            get_request(&format!("http://{server}/slow")),
            &policy(&[&allowed]),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(2));

    // The invocation's deadline is shorter than the client's timeout.
    let client = self::client(&[server.to_string()]);
    let started = Instant::now();
    let policy = AppPolicy::new(
        vec![allowed.clone()],
        Instant::now() + Duration::from_millis(200),
    );
    let error = client
        .send(get_request(&format!("http://{server}/slow")), &policy)
        .await
        .unwrap_err();
    assert!(matches!(error, OutboundError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Past the deadline nothing is sent.
    let error = client
        .send(get_request(&format!("http://{server}/hello")), &policy)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "timeout");
}

#[tokio::test]
async fn slow_calls_do_not_block_each_other() {
    let server = test_server().await;
    let allowed = server.to_string();
    let client = OutboundClient::new(OutboundConfig {
        total_timeout: Duration::from_millis(500),
        allow_private: vec![server.to_string()],
        ..OutboundConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let allowed = allowed.clone();
            tokio::spawn(async move {
                client
                    .send(
                        get_request(&format!("http://{server}/slow")),
                        &policy(&[&allowed]),
                    )
                    .await
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap_err().code(), "timeout");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_invocation_may_send_only_so_many_requests() {
    let server = test_server().await;
    let allowed = server.to_string();
    let client = OutboundClient::new(OutboundConfig {
        max_requests_per_invocation: 2,
        allow_private: vec![server.to_string()],
        ..OutboundConfig::default()
    })
    .unwrap();
    let policy = policy(&[&allowed]);
    let url = format!("http://{server}/hello");
    client.send(get_request(&url), &policy).await.unwrap();
    client.send(get_request(&url), &policy).await.unwrap();
    let error = client.send(get_request(&url), &policy).await.unwrap_err();
    assert_eq!(error.code(), "too_many_requests");
    // A new invocation starts again.
    client
        .send(get_request(&url), &self::policy(&[&allowed]))
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_methods_and_headers_are_refused() {
    let server = test_server().await;
    let allowed = server.to_string();
    let client = client(&[server.to_string()]);
    let error = client
        .send(
            OutboundRequest {
                method: "GE T".into(),
                url: format!("http://{server}/hello"),
                ..OutboundRequest::default()
            },
            &policy(&[&allowed]),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "invalid_request");
    let error = client
        .send(
            OutboundRequest {
                method: "GET".into(),
                url: format!("http://{server}/hello"),
                headers: vec![("x-bad".into(), "a\nb".into())],
                body: Vec::new(),
            },
            &policy(&[&allowed]),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "invalid_request");
}

#[test]
fn invalid_operator_exemptions_are_refused() {
    let error = OutboundClient::new(OutboundConfig {
        allow_private: vec!["10.0.0.0/99".into()],
        ..OutboundConfig::default()
    })
    .unwrap_err();
    assert!(error.contains("allow_private"), "{error}");
}
