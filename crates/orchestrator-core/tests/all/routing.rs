//! Which script answers which request: paths, domains, reserved prefixes,
//! and the routing table's updates.

use axum::routing::get;
use picloud_executor_core::InvocationLimits;
use picloud_orchestrator_core::{IngressConfig, RESERVED_APP_SLUGS, RoutesSnapshot};

use crate::{RawConnection, TestServer, active_script, error_body, executor};

async fn text(response: reqwest::Response) -> (u16, String) {
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_domain_routes_its_first_segment_to_a_script_of_its_app() {
    let server = TestServer::start().await;
    server.deploy(
        "shop",
        "orders",
        r#"`${request.path} [${request.subpath}] ${request.headers.host}`"#,
    );
    server.routes.set_domains("shop", ["Shop.Example.com"]);

    let with_host = |path: &str, host: &str| {
        server
            .client
            .get(server.url(path))
            .header("host", host)
            .send()
    };
    assert_eq!(
        text(
            with_host("/orders/42", "SHOP.example.com:8080")
                .await
                .unwrap()
        )
        .await,
        (200, "/orders/42 [/42] SHOP.example.com:8080".into())
    );
    assert_eq!(
        text(with_host("/orders", "shop.example.com").await.unwrap())
            .await
            .1,
        "/orders [] shop.example.com"
    );
    // Another host keeps path routing.
    let other = with_host("/shop/orders/7", "other.example.com")
        .await
        .unwrap();
    assert_eq!(text(other).await.1, "/shop/orders/7 [/7] other.example.com");
    // On the domain, an unknown script is a 404.
    let missing = with_host("/nothing", "shop.example.com").await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(error_body(missing).await.0, "not_found");

    // Domains can be replaced and removed with the app.
    server.routes.set_domains("shop", ["shop.example.org"]);
    assert_eq!(
        with_host("/orders", "shop.example.com")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        with_host("/orders", "shop.example.org")
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(server.routes.remove_app("shop"));
    assert_eq!(
        with_host("/orders", "shop.example.org")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(server.get("/shop/orders").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn unknown_apps_and_scripts_are_404_with_a_json_code() {
    let server = TestServer::start().await;
    server.deploy("known", "there", r#""here""#);
    for path in [
        "/unknown/there",
        "/known/missing",
        "/known",
        "/known/",
        "/known//there",
        "/%FF/there",
    ] {
        let response = server.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let (code, message, body_request_id) = error_body(response).await;
        assert_eq!(code, "not_found", "{path}");
        assert_eq!(message, "no script answers at this path");
        assert_eq!(body_request_id, request_id);
    }
    server.stop().await;
}

#[tokio::test]
async fn reserved_prefixes_are_never_shadowed_and_never_run_a_script() {
    // The binary merges the ingress with its own routes.
    let other_routes = axum::Router::new()
        .route("/healthz", get(|| async { "healthy" }))
        .route("/api/v1/ping", get(|| async { "pong" }))
        .route("/dashboard/{*page}", get(|| async { "dashboard" }));
    let server = TestServer::start_with(executor(), IngressConfig::default(), other_routes).await;
    // Even if the control plane let a reserved slug through, it runs nothing.
    for slug in RESERVED_APP_SLUGS {
        server
            .routes
            .set_active(active_script(slug, "x", r#""script""#));
    }
    server.deploy("shop", "healthz", r#""the shop's healthz script""#);
    server.routes.set_domains("shop", ["shop.example.com"]);

    assert_eq!(
        text(server.get("/healthz").await).await,
        (200, "healthy".into())
    );
    assert_eq!(
        text(server.get("/api/v1/ping").await).await,
        (200, "pong".into())
    );
    assert_eq!(
        text(server.get("/dashboard/apps").await).await,
        (200, "dashboard".into())
    );
    for slug in RESERVED_APP_SLUGS
        .iter()
        .filter(|slug| **slug != "dashboard")
    {
        let response = server.get(&format!("/{slug}/x")).await;
        assert_eq!(response.status(), 404, "/{slug}/x");
        assert_eq!(error_body(response).await.0, "not_found");
    }
    // The binary's own routes answer below their prefix.
    assert_eq!(text(server.get("/dashboard/x").await).await.1, "dashboard");
    // On an app's domain the binary's routes still win.
    let on_domain = server
        .client
        .get(server.url("/healthz"))
        .header("host", "shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(text(on_domain).await.1, "healthy");
    server.stop().await;
}

#[tokio::test]
async fn a_deploy_switches_the_next_request_and_lets_the_one_in_flight_finish() {
    let server = TestServer::start().await;
    let first = server.deploy("app", "live", r#""version one""#);
    assert_eq!(text(server.get("/app/live").await).await.1, "version one");

    // A request whose headers are in (its route is resolved) but whose body
    // is not: hyper sends `100 Continue` when the ingress starts reading it.
    let mut in_flight = RawConnection::open(&server).await;
    in_flight
        .send("POST /app/live HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        .await;
    in_flight.read_until("100 Continue").await;

    let second = server.deploy("app", "live", r#""version two""#);
    assert_eq!(text(server.get("/app/live").await).await.1, "version two");

    in_flight.send("body").await;
    let answer = in_flight.read_until("version").await;
    assert!(
        answer.contains("version one"),
        "the request in flight keeps its version: {answer}"
    );

    // A rollback is a deploy of the earlier version.
    let replaced = server
        .routes
        .set_active(first.clone())
        .expect("it replaced a version");
    assert_eq!(replaced.version.version_id, second.version.version_id);
    assert_eq!(text(server.get("/app/live").await).await.1, "version one");

    assert!(server.routes.remove_script("app", "live"));
    assert_eq!(server.get("/app/live").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn replace_all_loads_a_whole_snapshot() {
    let server = TestServer::start().await;
    server.deploy("old", "gone", r#""old""#);
    let limits = InvocationLimits {
        fuel: 50_000_000,
        ..InvocationLimits::default()
    };
    let mut snapshot = RoutesSnapshot::default();
    snapshot
        .scripts
        .push(active_script("blog", "posts", r#""posts""#));
    snapshot.scripts.push(crate::active_script_with_limits(
        "blog",
        "feed",
        r#""feed""#,
        limits,
    ));
    snapshot
        .domains
        .push(("blog.example.com".into(), "blog".into()));
    server.routes.replace_all(snapshot);

    assert_eq!(server.get("/old/gone").await.status(), 404);
    assert_eq!(text(server.get("/blog/posts").await).await.1, "posts");
    let on_domain = server
        .client
        .get(server.url("/feed"))
        .header("host", "blog.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(text(on_domain).await.1, "feed");
    let routes = server.routes.load();
    assert_eq!(routes.app("blog").map(|app| app.scripts.len()), Some(2));
    assert_eq!(
        routes.script("blog", "feed").unwrap().version.limits.fuel,
        50_000_000
    );
    server.stop().await;
}
