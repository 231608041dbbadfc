//! Connection handling by `serve`: graceful shutdown and slow clients.

use std::time::Duration;

use picloud_orchestrator_core::IngressConfig;

use crate::{RawConnection, TestServer, executor};

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_ones() {
    let mut server = TestServer::start().await;
    server.deploy("app", "echo", r#"`echo ${request.body}`"#);

    let mut in_flight = RawConnection::open(&server).await;
    in_flight
        .send("POST /app/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .await;
    in_flight.read_until("100 Continue").await;

    server.begin_shutdown();
    // Once the listener is closed, new connections are refused.
    let address = server.address;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(address).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener is still open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    in_flight.send("hello").await;
    let answer = in_flight.read_until("echo hello").await;
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    assert!(
        in_flight
            .read_until_closed(Duration::from_secs(10))
            .await
            .is_some(),
        "the connection is then closed"
    );

    let outcome = server.stop().await;
    assert_eq!(
        (outcome.connections_at_shutdown, outcome.connections_aborted),
        (1, 0)
    );
}

#[tokio::test]
async fn shutdown_closes_what_is_left_after_the_grace_period() {
    let config = IngressConfig {
        shutdown_grace_ms: 200,
        ..IngressConfig::default()
    };
    let mut server = TestServer::start_with(executor(), config, axum::Router::new()).await;
    server.deploy("app", "echo", r#""never""#);
    let mut stuck = RawConnection::open(&server).await;
    stuck.send("POST /app/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n").await;
    stuck.read_until("100 Continue").await;

    server.begin_shutdown();
    let started = std::time::Instant::now();
    let outcome = server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.connections_aborted, 1);
    assert!(
        stuck
            .read_until_closed(Duration::from_secs(5))
            .await
            .is_some(),
        "the stuck connection is closed"
    );
}

#[tokio::test]
async fn a_client_that_does_not_send_its_headers_is_disconnected() {
    let config = IngressConfig {
        header_read_timeout_ms: 200,
        ..IngressConfig::default()
    };
    let server = TestServer::start_with(executor(), config, axum::Router::new()).await;
    let mut slow = RawConnection::open(&server).await;
    slow.send("GET /app/echo HTTP/1.1\r\nhost: x\r\n").await;
    assert!(
        slow.read_until_closed(Duration::from_secs(5))
            .await
            .is_some(),
        "the connection is closed"
    );

    // An idle keep-alive connection is closed the same way.
    let mut idle = RawConnection::open(&server).await;
    idle.send("GET /app/echo HTTP/1.1\r\nhost: x\r\n\r\n").await;
    idle.read_until("not_found").await;
    assert!(
        idle.read_until_closed(Duration::from_secs(5))
            .await
            .is_some(),
        "the idle connection is closed"
    );
    server.stop().await;
}
