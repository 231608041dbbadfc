//! The log-in limit per client address, in process: the router is given the
//! peer address the way `into_make_service_with_connect_info` would.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use picloud_manager_core::api::{
    ApiConfig, ApiState, BoxFuture, CheckError, RoutePublisher, ScriptCompiler, api_router,
};
use picloud_manager_core::{ActiveScript, DomainRoute, InstanceRole, NewUser, auth};
use tower::ServiceExt;

use crate::harness::TestDatabase;

struct NoSandbox;

impl ScriptCompiler for NoSandbox {
    fn check<'a>(&'a self, _source: &'a str) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async { Ok(()) })
    }
}

struct NoRoutes;

impl RoutePublisher for NoRoutes {
    fn script_activated(&self, _script: &ActiveScript) {}
    fn script_removed(&self, _app_slug: &str, _script_name: &str) {}
    fn app_removed(&self, _app_slug: &str) {}
    fn domains_changed(&self, _app_slug: &str, _hosts: &[String]) {}
    fn routes_reloaded(&self, _scripts: &[ActiveScript], _domains: Vec<DomainRoute>) {}
}

async fn log_in(router: &axum::Router, login: &str, password: &str, peer: &str) -> StatusCode {
    let mut request = Request::post("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({"login": login, "password": password}).to_string(),
        ))
        .unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    router.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guessing_many_accounts_must_wait() {
    let database = TestDatabase::sqlite().await;
    let password_hash = auth::hash_password("the right password").unwrap();
    database
        .store
        .create_user(&NewUser {
            username: "victim".into(),
            email: "victim@example.com".into(),
            password_hash,
            instance_role: InstanceRole::Member,
        })
        .await
        .unwrap();
    let state = ApiState::new(
        database.store.clone(),
        Arc::new(NoSandbox),
        Arc::new(NoRoutes),
        ApiConfig::default(),
    );
    let router = api_router(state);
    // Twenty accounts, four guesses each, from one address: no single
    // account reaches its limit, but the address does.
    for attempt in 0..20 {
        let status = log_in(
            &router,
            &format!("guess{}", attempt % 5),
            "nope",
            "192.0.2.1:4000",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let blocked = log_in(&router, "victim", "the right password", "192.0.2.1:4001").await;
    assert_eq!(blocked, StatusCode::TOO_MANY_REQUESTS);
    // Another address is not affected.
    let allowed = log_in(&router, "victim", "the right password", "198.51.100.9:4000").await;
    assert_eq!(allowed, StatusCode::OK);
    database.close().await;
}
