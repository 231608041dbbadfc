//! Every management route refuses anonymous callers and wrong credentials
//! with `401 unauthenticated` and nothing else in the body.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Instance};
use crate::per_backend;

/// Every route of the management API: (method, path with parameters
/// filled in, needs authentication). Adding a route means adding a row; the
/// test checks the table against the server's OpenAPI document.
const ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/api/v1/auth/login", false),
    ("POST", "/api/v1/auth/logout", true),
    ("GET", "/api/v1/auth/me", true),
    ("GET", "/api/v1/tokens", true),
    ("POST", "/api/v1/tokens", true),
    ("DELETE", "/api/v1/tokens/1", true),
    ("GET", "/api/v1/apps", true),
    ("POST", "/api/v1/apps", true),
    ("GET", "/api/v1/apps/secret", true),
    ("PATCH", "/api/v1/apps/secret", true),
    ("DELETE", "/api/v1/apps/secret", true),
    ("GET", "/api/v1/apps/secret/scripts", true),
    ("GET", "/api/v1/apps/secret/scripts/hidden", true),
    ("PUT", "/api/v1/apps/secret/scripts/hidden", true),
    ("DELETE", "/api/v1/apps/secret/scripts/hidden", true),
    ("GET", "/api/v1/apps/secret/scripts/hidden/versions", true),
    ("GET", "/api/v1/apps/secret/scripts/hidden/versions/1", true),
    ("POST", "/api/v1/apps/secret/scripts/hidden/rollback", true),
    ("GET", "/api/v1/apps/secret/domains", true),
    ("POST", "/api/v1/apps/secret/domains", true),
    (
        "DELETE",
        "/api/v1/apps/secret/domains/secret.example.com",
        true,
    ),
    ("GET", "/api/v1/apps/secret/members", true),
    ("POST", "/api/v1/apps/secret/members", true),
    ("POST", "/api/v1/apps/secret/members/lookup", true),
    ("PATCH", "/api/v1/apps/secret/members/2", true),
    ("DELETE", "/api/v1/apps/secret/members/2", true),
    ("GET", "/api/v1/apps/secret/invocations", true),
    ("GET", "/api/v1/apps/secret/invocations/stats", true),
    ("GET", "/api/v1/apps/secret/invocations/stream", true),
    ("GET", "/api/v1/apps/secret/invocations/7", true),
    ("GET", "/api/v1/apps/secret/schedules", true),
    ("POST", "/api/v1/apps/secret/schedules", true),
    ("GET", "/api/v1/apps/secret/schedules/3", true),
    ("PATCH", "/api/v1/apps/secret/schedules/3", true),
    ("DELETE", "/api/v1/apps/secret/schedules/3", true),
    ("GET", "/api/v1/apps/secret/async/job", true),
    ("GET", "/api/v1/apps/secret/vars", true),
    ("PUT", "/api/v1/apps/secret/vars/NAME", true),
    ("DELETE", "/api/v1/apps/secret/vars/NAME", true),
    ("GET", "/api/v1/apps/secret/secrets", true),
    ("PUT", "/api/v1/apps/secret/secrets/NAME", true),
    ("DELETE", "/api/v1/apps/secret/secrets/NAME", true),
    ("GET", "/api/v1/apps/secret/http-allowlist", true),
    ("PUT", "/api/v1/apps/secret/http-allowlist", true),
    ("GET", "/api/v1/apps/secret/kv", true),
    ("GET", "/api/v1/apps/secret/kv-usage", true),
    ("DELETE", "/api/v1/apps/secret/kv/some-key", true),
    ("GET", "/api/v1/apps/secret/files", true),
    ("PUT", "/api/v1/apps/secret/files/a.txt", true),
    ("DELETE", "/api/v1/apps/secret/files/a.txt", true),
    ("GET", "/api/v1/admin/admins", true),
    ("GET", "/api/v1/admin/users", true),
    ("POST", "/api/v1/admin/users", true),
    ("PATCH", "/api/v1/admin/users/1", true),
    ("GET", "/api/v1/admin/audit", true),
    ("GET", "/api/v1/openapi.json", false),
];

/// A plausible body for each route, so that a refusal is about the
/// credentials and not the body.
fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path.rsplit('/').next().unwrap_or_default()) {
        ("POST", "tokens") => Some(json!({"name": "x"})),
        ("POST", "apps") => Some(json!({"slug": "stolen"})),
        ("PATCH", _) => Some(json!({"name": "stolen"})),
        ("PUT", _) => Some(json!({"source": "\"stolen\""})),
        ("POST", "rollback") => Some(json!({"version": 1})),
        ("POST", "domains") => Some(json!({"host": "stolen.example.com"})),
        ("POST", "members") => Some(json!({"user": "owner", "role": "viewer"})),
        ("POST", "lookup") => Some(json!({"query": "owner"})),
        ("POST", "users") => Some(
            json!({"username": "intruder", "email": "i@example.com", "password": "a long enough password"}),
        ),
        _ => None,
    }
}

/// `/api/v1/apps/secret/scripts/hidden` → `/api/v1/apps/{app}/scripts/{script}`.
fn to_template(path: &str) -> String {
    path.replace("/apps/secret", "/apps/{app}")
        .replace("/scripts/hidden", "/scripts/{script}")
        .replace("/versions/1", "/versions/{version}")
        .replace("/tokens/1", "/tokens/{id}")
        .replace("/domains/secret.example.com", "/domains/{host}")
        .replace("/members/2", "/members/{user}")
        .replace("/admin/users/1", "/admin/users/{id}")
        .replace("/invocations/7", "/invocations/{id}")
        .replace("/schedules/3", "/schedules/{id}")
        .replace("/async/job", "/async/{id}")
        .replace("/vars/NAME", "/vars/{name}")
        .replace("/secrets/NAME", "/secrets/{name}")
        .replace("/kv/some-key", "/kv/{*key}")
        .replace("/files/a.txt", "/files/{*path}")
}

async fn every_management_route_refuses_strangers(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    // Data that must not leak.
    let (status, _) = owner
        .send(
            Method::POST,
            "/api/v1/apps",
            Some(json!({"slug": "secret"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = owner
        .deploy("secret", "hidden", "\"the hidden source\"")
        .await;
    assert_eq!(status, 201);
    let (status, _) = owner
        .send(
            Method::POST,
            "/api/v1/apps/secret/domains",
            Some(json!({"host": "secret.example.com"})),
        )
        .await;
    assert_eq!(status, 201);

    // A known path with a method it does not take: 405 in the API's format.
    let (status, body) = server
        .anonymous()
        .send(Method::DELETE, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");

    // The table covers exactly the documented routes.
    let (_, document) = server
        .anonymous()
        .send(Method::GET, "/api/v1/openapi.json", None)
        .await;
    let mut documented: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    let mut tabled: Vec<String> = ROUTES
        .iter()
        .map(|(method, path, _)| format!("{method} {}", to_template(path)))
        .collect();
    documented.sort();
    tabled.sort();
    assert_eq!(
        tabled, documented,
        "the ROUTES table and the OpenAPI document differ"
    );

    let anonymous = server.anonymous();
    let wrong_token = anonymous.with_token("pc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let not_a_token = anonymous.with_token("hunter2");
    for (method, path, needs_authentication) in ROUTES.iter().filter(|route| route.2) {
        assert!(needs_authentication);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for (who, client) in [
            ("anonymous", &anonymous),
            ("wrong token", &wrong_token),
            ("not a token", &not_a_token),
        ] {
            let (status, body) = client
                .send(method.clone(), path, body_for(method.as_str(), path))
                .await;
            assert_eq!(status, 401, "{who} {method} {path}: {body}");
            assert_eq!(
                body["error"]["code"], "unauthenticated",
                "{who} {method} {path}"
            );
            assert_eq!(
                body.as_object().unwrap().len(),
                1,
                "{who} {method} {path}: {body}"
            );
            assert_eq!(
                body["error"].as_object().unwrap().len(),
                2,
                "{who} {method} {path}: {body}"
            );
            let text = body.to_string();
            for secret in ["hidden source", "secret.example.com", "\"slug\""] {
                assert!(
                    !text.contains(secret),
                    "{who} {method} {path} leaked {secret}: {text}"
                );
            }
        }
        // A forged session cookie is no better.
        let response = anonymous
            .http
            .request(method.clone(), format!("{}{path}", server.base_url))
            .header("cookie", "picloud_session=pcs_forged")
            .header("x-csrf-token", "forged")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "forged cookie {method} {path}");
    }
    // Nothing was changed by the strangers.
    let (_, apps) = owner.send(Method::GET, "/api/v1/apps", None).await;
    assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
    let (_, _, body) = anonymous.call("GET", "/secret/hidden", &[], None).await;
    assert_eq!(body, "the hidden source");
    drop(server);
}
per_backend!(every_management_route_refuses_strangers);
