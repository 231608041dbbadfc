//! Several nodes on one PostgreSQL database: a change made through one node
//! reaches the others' routing tables at once (NOTIFY/LISTEN), also after
//! their subscription was cut.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use sqlx::Connection;

use crate::harness::{Backend, Client, Instance};

/// Calls `path` on `node` until it answers `expected` (status and body), or
/// panics after five seconds.
async fn eventually(node: &Client, path: &str, headers: &[(&str, &str)], expected: (u16, &str)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, body) = node.call("GET", path, headers, None).await;
        if (status, body.as_str()) == expected || (expected.1.is_empty() && status == expected.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {status} {body}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_on_one_postgres_database_follow_each_others_changes() {
    let instance = Instance::new(Backend::Postgres).await;
    let first = instance.start();
    let second = instance.start();
    let owner = first.owner().await;
    let other = second.anonymous();

    let (status, body) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "shop"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = owner.deploy("shop", "hello", r#""v1""#).await;
    assert_eq!(status, 201, "{body}");
    eventually(&other, "/shop/hello", &[], (200, "v1")).await;

    // A new version, a rollback, a domain, each made through the first node.
    let (status, body) = owner.deploy("shop", "hello", r#""v2""#).await;
    assert_eq!(status, 201, "{body}");
    eventually(&other, "/shop/hello", &[], (200, "v2")).await;
    let (status, body) = owner
        .send(
            Method::POST,
            "/api/v1/apps/shop/scripts/hello/rollback",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(&other, "/shop/hello", &[], (200, "v1")).await;
    let (status, body) = owner
        .send(
            Method::POST,
            "/api/v1/apps/shop/domains",
            Some(json!({"host": "shop.example.com"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    eventually(
        &other,
        "/hello",
        &[("host", "shop.example.com")],
        (200, "v1"),
    )
    .await;

    // Cut every subscription (as a database restart or a proxy would): the
    // nodes subscribe again, reload, and keep following.
    let mut admin = sqlx::PgConnection::connect(&instance.database_url)
        .await
        .unwrap();
    let cut: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(cut.len(), 2, "one subscription per node");
    admin.close().await.unwrap();
    let (status, body) = owner.deploy("shop", "hello", r#""v3""#).await;
    assert_eq!(status, 201, "{body}");
    eventually(&other, "/shop/hello", &[], (200, "v3")).await;

    // Deleting the script removes its endpoint everywhere.
    let (status, body) = owner
        .send(Method::DELETE, "/api/v1/apps/shop/scripts/hello", None)
        .await;
    assert_eq!(status, 204, "{body}");
    eventually(&other, "/shop/hello", &[], (404, "")).await;

    // And the other way round.
    let second_owner = second.owner().await;
    let (status, body) = second_owner
        .deploy("shop", "again", r#""from the second""#)
        .await;
    assert_eq!(status, 201, "{body}");
    eventually(
        &first.anonymous(),
        "/shop/again",
        &[],
        (200, "from the second"),
    )
    .await;
}
