//! Log in, create an app, deploy, call, redeploy, roll back, refuse a bad script.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Backend, Instance, assert_error};
use crate::per_backend;

const ECHO: &str = r#"#{ method: request.method, path: request.path, subpath: request.subpath, body: request.body, name: request.query.name ?? "world" }"#;

async fn deploy_call_redeploy_and_roll_back(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;

    let (status, me) = owner.send(Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["username"], "owner");
    assert_eq!(me["instance_role"], "owner");

    let (status, app) = owner
        .send(
            Method::POST,
            "/api/v1/apps",
            Some(json!({"slug": "shop", "name": "The shop"})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["my_role"], "app_admin");
    let (status, apps) = owner.send(Method::GET, "/api/v1/apps", None).await;
    assert_eq!(status, 200);
    assert_eq!(apps[0]["slug"], "shop");
    assert_eq!(apps[0]["my_role"], "app_admin");

    // Hello world, deployed as text/plain, answers at once.
    let (status, deployed) = owner.deploy("shop", "hello", r#""Hello, world!""#).await;
    assert_eq!(status, 201, "{deployed}");
    assert_eq!(deployed["version"], 1);
    let caller = server.anonymous();
    let (status, headers, body) = caller.call("GET", "/shop/hello", &[], None).await;
    assert_eq!((status, body.as_str()), (200, "Hello, world!"));
    assert!(headers.contains_key("x-request-id"));

    // Methods, bodies, query parameters and sub-paths reach the script.
    let (status, _) = owner.deploy("shop", "echo", ECHO).await;
    assert_eq!(status, 201);
    for (method, path, body, expected) in [
        (
            "GET",
            "/shop/echo",
            None,
            json!({"method": "GET", "path": "/shop/echo", "subpath": "", "body": "", "name": "world"}),
        ),
        (
            "POST",
            "/shop/echo/orders/42?name=Pi",
            Some("{\"a\":1}"),
            json!({"method": "POST", "path": "/shop/echo/orders/42", "subpath": "/orders/42", "body": "{\"a\":1}", "name": "Pi"}),
        ),
        (
            "PUT",
            "/shop/echo/x",
            Some("put body"),
            json!({"method": "PUT", "path": "/shop/echo/x", "subpath": "/x", "body": "put body", "name": "world"}),
        ),
        (
            "DELETE",
            "/shop/echo",
            None,
            json!({"method": "DELETE", "path": "/shop/echo", "subpath": "", "body": "", "name": "world"}),
        ),
        (
            "PATCH",
            "/shop/echo/",
            Some("p"),
            json!({"method": "PATCH", "path": "/shop/echo/", "subpath": "/", "body": "p", "name": "world"}),
        ),
    ] {
        let (status, _, text) = caller
            .call(method, path, &[], body.map(|body| body.as_bytes().to_vec()))
            .await;
        assert_eq!(status, 200, "{method} {path}: {text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer, expected, "{method} {path}");
    }

    // A new version serves the very next request.
    let (status, deployed) = owner.deploy("shop", "hello", r#""Hello again""#).await;
    assert_eq!((status, deployed["version"].clone()), (201, json!(2)));
    let (_, _, body) = caller.call("GET", "/shop/hello", &[], None).await;
    assert_eq!(body, "Hello again");

    // A script that does not compile is refused with its position; nothing
    // is stored and version 2 keeps serving.
    let (status, refused) = owner.deploy("shop", "hello", "let x = ;\n\"never\"").await;
    assert_error(status, &refused, 422, "compile_error");
    assert_eq!(refused["error"]["line"], 1, "{refused}");
    assert!(refused["error"]["column"].as_u64().is_some(), "{refused}");
    let (_, versions) = owner
        .send(
            Method::GET,
            "/api/v1/apps/shop/scripts/hello/versions",
            None,
        )
        .await;
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    let (_, _, body) = caller.call("GET", "/shop/hello", &[], None).await;
    assert_eq!(body, "Hello again");

    // Roll back to version 1.
    let (status, rolled) = owner
        .send(
            Method::POST,
            "/api/v1/apps/shop/scripts/hello/rollback",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["version"], 1);
    let (_, _, body) = caller.call("GET", "/shop/hello", &[], None).await;
    assert_eq!(body, "Hello, world!");
    let (_, versions) = owner
        .send(
            Method::GET,
            "/api/v1/apps/shop/scripts/hello/versions",
            None,
        )
        .await;
    let active: Vec<_> = versions
        .as_array()
        .unwrap()
        .iter()
        .filter(|version| version["active"] == true)
        .map(|version| version["number"].clone())
        .collect();
    assert_eq!(active, vec![json!(1)]);

    // Versions keep their sources; the script view shows the active one.
    let (status, version) = owner
        .send(
            Method::GET,
            "/api/v1/apps/shop/scripts/hello/versions/2",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(version["source"], r#""Hello again""#);
    let (status, script) = owner
        .send(Method::GET, "/api/v1/apps/shop/scripts/hello", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(script["active_source"], r#""Hello, world!""#);
    let (status, scripts) = owner
        .send(Method::GET, "/api/v1/apps/shop/scripts", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(scripts.as_array().unwrap().len(), 2);

    // JSON deploy bodies work too.
    let (status, deployed) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/shop/scripts/json",
            Some(json!({"source": "#{ ok: true }"})),
        )
        .await;
    assert_eq!(status, 201, "{deployed}");
    let (_, _, body) = caller.call("GET", "/shop/json", &[], None).await;
    assert_eq!(body, r#"{"ok":true}"#);

    // Domains route a host to the app.
    let (status, domain) = owner
        .send(
            Method::POST,
            "/api/v1/apps/shop/domains",
            Some(json!({"host": "Shop.Example.com"})),
        )
        .await;
    assert_eq!(status, 201, "{domain}");
    assert_eq!(domain["host"], "shop.example.com");
    let (status, _, body) = caller
        .call("GET", "/hello", &[("host", "shop.example.com")], None)
        .await;
    assert_eq!((status, body.as_str()), (200, "Hello, world!"));
    let (status, _) = owner
        .send(
            Method::DELETE,
            "/api/v1/apps/shop/domains/shop.example.com",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = caller
        .call("GET", "/hello", &[("host", "shop.example.com")], None)
        .await;
    assert_eq!(status, 404);

    // Deleting a script removes its endpoint; deleting the app removes all.
    let (status, _) = owner
        .send(Method::DELETE, "/api/v1/apps/shop/scripts/json", None)
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = caller.call("GET", "/shop/json", &[], None).await;
    assert_eq!(status, 404);
    let (status, _) = owner.send(Method::DELETE, "/api/v1/apps/shop", None).await;
    assert_eq!(status, 204);
    let (status, _, _) = caller.call("GET", "/shop/hello", &[], None).await;
    assert_eq!(status, 404);
    let (status, body) = owner.send(Method::GET, "/api/v1/apps/shop", None).await;
    assert_error(status, &body, 404, "not_found");

    assert!(server.stop().success());
}
per_backend!(deploy_call_redeploy_and_roll_back);

async fn management_errors_have_stable_codes(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    for (body, field) in [
        (json!({"slug": "Not A Slug"}), "slug"),
        (json!({"slug": "api"}), "slug"),
        (json!({"slug": "dashboard"}), "slug"),
        (json!({"name": "no slug"}), "slug"),
        (json!({"slug": "ok", "colour": "red"}), "colour"),
    ] {
        let (status, refused) = owner
            .send(Method::POST, "/api/v1/apps", Some(body.clone()))
            .await;
        assert_error(status, &refused, 422, "invalid_input");
        assert_eq!(refused["error"]["field"], field, "{body}: {refused}");
    }
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "shop"})))
        .await;
    assert_eq!(status, 201);
    let (status, refused) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "shop"})))
        .await;
    assert_error(status, &refused, 409, "conflict");
    let (status, refused) = owner.deploy("shop", "Bad Name", "1").await;
    assert_error(status, &refused, 422, "invalid_input");
    assert_eq!(refused["error"]["field"], "name");
    let (status, refused) = owner.deploy("nope", "hello", "1").await;
    assert_error(status, &refused, 404, "not_found");
    let (status, refused) = owner
        .send(
            Method::POST,
            "/api/v1/apps/shop/scripts/hello/rollback",
            Some(json!({"version": 1})),
        )
        .await;
    assert_error(status, &refused, 404, "not_found");
    let (status, refused) = owner.send(Method::GET, "/api/v1/no/such/route", None).await;
    assert_error(status, &refused, 404, "not_found");
    let too_big = "\"x\"".to_owned() + &" ".repeat(2 * 1024 * 1024);
    let (status, refused) = owner.deploy("shop", "big", &too_big).await;
    assert_error(status, &refused, 413, "payload_too_large");

    // The session: wrong password and unknown user look the same; cookie
    // requests that change state need the CSRF token.
    let anonymous = server.anonymous();
    let (status, wrong_password) = anonymous
        .send(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"login": "owner", "password": "nope"})),
        )
        .await;
    let (status_unknown, unknown_user) = anonymous
        .send(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"login": "nobody", "password": "nope"})),
        )
        .await;
    assert_error(status, &wrong_password, 401, "invalid_credentials");
    assert_eq!((status, &wrong_password), (status_unknown, &unknown_user));
    let session = anonymous
        .login("owner", crate::harness::OWNER_PASSWORD)
        .await;
    assert!(
        session.set_cookie.contains("HttpOnly"),
        "{}",
        session.set_cookie
    );
    assert!(
        session.set_cookie.contains("SameSite=Lax"),
        "{}",
        session.set_cookie
    );
    assert!(
        session.set_cookie.contains("Path=/api"),
        "{}",
        session.set_cookie
    );
    let (status, _) = session
        .send_with(Method::GET, "/api/v1/apps", None, false)
        .await;
    assert_eq!(status, 200, "reads need no CSRF token");
    let (status, refused) = session
        .send_with(
            Method::POST,
            "/api/v1/apps",
            Some(json!({"slug": "csrf"})),
            false,
        )
        .await;
    assert_error(status, &refused, 403, "csrf_failed");
    let (status, _) = session
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "csrf"})))
        .await;
    assert_eq!(status, 201);
    let (status, me) = session.send(Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(status, 200);
    assert_eq!(me["csrf_token"], session.csrf_token.as_str());
    let (status, _) = session
        .send(Method::POST, "/api/v1/auth/logout", None)
        .await;
    assert_eq!(status, 204);
    let (status, refused) = session.send(Method::GET, "/api/v1/apps", None).await;
    assert_error(status, &refused, 401, "unauthenticated");

    // Tokens: listed without secrets, revocable, dead once revoked.
    let (status, created) = owner
        .send(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "short-lived"})),
        )
        .await;
    assert_eq!(status, 201);
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("pc_"));
    let (_, tokens) = owner.send(Method::GET, "/api/v1/tokens", None).await;
    assert!(!tokens.to_string().contains(secret));
    let short_lived = owner.with_token(secret);
    let (status, _) = short_lived.send(Method::GET, "/api/v1/apps", None).await;
    assert_eq!(status, 200);
    let (status, _) = owner
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", created["id"]),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, refused) = short_lived.send(Method::GET, "/api/v1/apps", None).await;
    assert_error(status, &refused, 401, "unauthenticated");

    // The OpenAPI document is served and lists the routes.
    let (status, document) = anonymous
        .send(Method::GET, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/api/v1/apps/{app}/scripts/{script}"]["put"].is_object());
    drop(server);
}
per_backend!(management_errors_have_stable_codes);
