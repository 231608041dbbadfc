//! Accounts, apps and roles: the permission matrix, the `my_role` rules,
//! deactivation, the audit log, privilege escalation and log-in abuse.

use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Backend, Client, Instance, Server, USER_PASSWORD, assert_error, user_with_token,
};
use crate::per_backend;

const PASSWORD: &str = USER_PASSWORD;
const APP: &str = "matrix";
const SOURCE: &str = "\"hello from the matrix\"";

/// The kinds of caller the matrix tries every route with, in the order of
/// the columns of [`MATRIX`].
const CALLERS: [&str; 9] = [
    "owner",
    "admin",
    "viewer",
    "editor",
    "app_admin",
    "outsider",
    "deactivated",
    "revoked",
    "anonymous",
];

/// Every management route × every caller kind → the expected status.
/// `{pat}` and `{uma}` are the ids of two member-role users; other names are
/// created by [`Fixture::start`]. Rows that change state are undone by
/// [`Fixture::restore`] after each success, so every caller meets the same state.
#[rustfmt::skip]
const MATRIX: &[(&str, &str, [u16; 9])] = &[
    //                                                     owner admin viewer editor app_admin outsider deactivated revoked anonymous
    ("GET",    "/api/v1/auth/me",                              [200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("GET",    "/api/v1/tokens",                               [200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("POST",   "/api/v1/tokens",                               [201, 201, 201, 201, 201, 201, 401, 401, 401]),
    ("DELETE", "/api/v1/tokens/999999",                        [404, 404, 404, 404, 404, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps",                                 [200, 200, 200, 200, 200, 200, 401, 401, 401]),
    ("POST",   "/api/v1/apps",                                 [201, 201, 403, 403, 403, 403, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix",                          [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("PATCH",  "/api/v1/apps/matrix",                          [200, 403, 403, 403, 200, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/scripts",                  [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/scripts/hello",            [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("PUT",    "/api/v1/apps/matrix/scripts/hello",            [201, 201, 403, 201, 201, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/scripts/hello/versions",   [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/scripts/hello/versions/1", [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("POST",   "/api/v1/apps/matrix/scripts/hello/rollback",   [200, 200, 403, 200, 200, 404, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix/scripts/hello",            [204, 204, 403, 204, 204, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/domains",                  [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("POST",   "/api/v1/apps/matrix/domains",                  [201, 201, 403, 201, 201, 404, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix/domains/matrix.example",   [204, 204, 403, 204, 204, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/schedules",                [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("POST",   "/api/v1/apps/matrix/schedules",                [201, 201, 403, 201, 201, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/schedules/999999",         [404, 404, 404, 404, 404, 404, 401, 401, 401]),
    ("PATCH",  "/api/v1/apps/matrix/schedules/999999",         [404, 404, 403, 404, 404, 404, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix/schedules/999999",         [404, 404, 403, 404, 404, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/async/no-such-invocation", [404, 404, 404, 404, 404, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/vars",                     [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("PUT",    "/api/v1/apps/matrix/vars/MATRIX_VAR",          [200, 200, 403, 200, 200, 404, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix/vars/MISSING",             [404, 404, 403, 404, 404, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/secrets",                  [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("PUT",    "/api/v1/apps/matrix/secrets/MATRIX_SECRET",    [200, 200, 403, 200, 200, 404, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix/secrets/MISSING",          [404, 404, 403, 404, 404, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/http-allowlist",           [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("PUT",    "/api/v1/apps/matrix/http-allowlist",           [200, 200, 403, 200, 200, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/kv",                       [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix/kv/missing-key",           [404, 404, 403, 404, 404, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/kv-usage",                 [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/files",                    [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("PUT",    "/api/v1/apps/matrix/files/site.css",           [201, 201, 403, 201, 201, 404, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix/files/missing.txt",        [404, 404, 403, 404, 404, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/invocations",              [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/invocations/stream",       [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/invocations/stats",        [200, 200, 200, 200, 200, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/invocations/999999",       [404, 404, 404, 404, 404, 404, 401, 401, 401]),
    ("GET",    "/api/v1/apps/matrix/members",                  [200, 403, 403, 403, 200, 404, 401, 401, 401]),
    ("POST",   "/api/v1/apps/matrix/members",                  [201, 403, 403, 403, 201, 404, 401, 401, 401]),
    ("POST",   "/api/v1/apps/matrix/members/lookup",           [200, 403, 403, 403, 200, 404, 401, 401, 401]),
    ("PATCH",  "/api/v1/apps/matrix/members/{pat}",            [200, 403, 403, 403, 200, 404, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix/members/{pat}",            [204, 403, 403, 403, 204, 404, 401, 401, 401]),
    ("GET",    "/api/v1/admin/admins",                         [200, 200, 403, 403, 403, 403, 401, 401, 401]),
    ("GET",    "/api/v1/admin/users",                          [200, 200, 403, 403, 403, 403, 401, 401, 401]),
    ("POST",   "/api/v1/admin/users",                          [201, 201, 403, 403, 403, 403, 401, 401, 401]),
    ("PATCH",  "/api/v1/admin/users/{uma}",                    [200, 200, 403, 403, 403, 403, 401, 401, 401]),
    ("GET",    "/api/v1/admin/audit",                          [200, 200, 403, 403, 403, 403, 401, 401, 401]),
    ("DELETE", "/api/v1/apps/matrix",                          [204, 403, 403, 403, 204, 404, 401, 401, 401]),
    ("POST",   "/api/v1/auth/logout",                          [204, 204, 204, 204, 204, 204, 401, 401, 401]),
];

static UNIQUE: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", UNIQUE.fetch_add(1, Ordering::Relaxed))
}

/// A body for a route that the route accepts from a caller allowed to use it.
fn body_for(method: &str, path: &str) -> Option<Value> {
    let last = path.rsplit('/').next().unwrap_or_default();
    match (method, last) {
        ("POST", "tokens") => Some(json!({"name": "matrix"})),
        ("POST", "apps") => Some(json!({"slug": unique("made-")})),
        ("PATCH", APP) => Some(json!({"name": "The matrix"})),
        ("PUT", _) if path.contains("/vars/") || path.contains("/secrets/") => {
            Some(json!({"value": "matrix value"}))
        }
        ("PUT", "http-allowlist") => Some(json!({"hosts": ["api.matrix.example"]})),
        ("PUT", _) => Some(json!({"source": SOURCE})),
        ("POST", "rollback") => Some(json!({"version": 1})),
        ("POST", "domains") => Some(json!({"host": "added.matrix.example"})),
        ("POST", "schedules") => Some(json!({"script": "hello", "cron": "@hourly"})),
        ("PATCH", _) if path.contains("/schedules/") => Some(json!({"enabled": false})),
        ("POST", "members") => Some(json!({"user": "tom", "role": "viewer"})),
        ("POST", "lookup") => Some(json!({"query": "tom@example.com"})),
        ("PATCH", _) if path.contains("/members/") => Some(json!({"role": "viewer"})),
        ("POST", "users") => {
            let name = unique("new-user-");
            Some(
                json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}),
            )
        }
        ("PATCH", _) if path.contains("/admin/users/") => Some(json!({"instance_role": "member"})),
        _ => None,
    }
}

/// Sends a request, retrying a `503` of a busy sandbox.
async fn send(client: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    if path.ends_with("/invocations/stream") {
        return stream_status(client, path).await;
    }
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    for _ in 0..50 {
        let (status, answer) = client.send(method.clone(), path, body.clone()).await;
        if status != 503 {
            return (status, answer);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{method} {path} kept answering 503");
}

/// The status of a live tail, which never ends: its body is only read when
/// it is an error.
async fn stream_status(client: &Client, path: &str) -> (u16, Value) {
    let mut request = client.http.get(format!("{}{path}", client.base_url));
    if let Some(token) = &client.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("open the stream");
    let status = response.status().as_u16();
    if status == 200 {
        return (status, Value::Null);
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

#[track_caller]
fn expect(answer: (u16, Value), status: u16, what: &str) -> Value {
    assert_eq!(answer.0, status, "{what}: {}", answer.1);
    answer.1
}

struct Fixture {
    owner: Client,
    callers: Vec<Client>,
    ids: Vec<(&'static str, i64)>,
}

impl Fixture {
    async fn start(server: &Server) -> Fixture {
        let owner = server.owner().await;
        let (_, admin) = user_with_token(server, &owner, "ada", "admin").await;
        let (_, viewer) = user_with_token(server, &owner, "vic", "member").await;
        let (_, editor) = user_with_token(server, &owner, "eddie", "member").await;
        let (_, app_admin) = user_with_token(server, &owner, "alice", "member").await;
        let (_, outsider) = user_with_token(server, &owner, "nora", "member").await;
        let (dave, deactivated) = user_with_token(server, &owner, "dave", "member").await;
        let (pat, _) = user_with_token(server, &owner, "pat", "member").await;
        let (uma, _) = user_with_token(server, &owner, "uma", "member").await;
        user_with_token(server, &owner, "tom", "member").await;
        // A second owner token, revoked below.
        let revoked = server.owner().await;
        let fixture = Fixture {
            owner: owner.clone(),
            callers: vec![
                owner.clone(),
                admin,
                viewer,
                editor,
                app_admin,
                outsider,
                deactivated,
                revoked,
                server.anonymous(),
            ],
            ids: vec![("{pat}", pat), ("{uma}", uma)],
        };
        fixture.create_app().await;
        // Deactivate dave (an app admin of the app) and revoke a token of the owner.
        expect(
            send(
                &fixture.owner,
                "PATCH",
                &format!("/api/v1/admin/users/{dave}"),
                Some(json!({"active": false})),
            )
            .await,
            200,
            "deactivate dave",
        );
        let revoked = &fixture.callers[7];
        let (_, tokens) = revoked.send(Method::GET, "/api/v1/tokens", None).await;
        let newest = tokens.as_array().unwrap().last().unwrap()["id"]
            .as_i64()
            .unwrap();
        expect(
            send(revoked, "DELETE", &format!("/api/v1/tokens/{newest}"), None).await,
            204,
            "revoke",
        );
        fixture
    }

    /// The app with its members, a script with two versions and a domain.
    async fn create_app(&self) {
        let owner = &self.owner;
        expect(
            send(owner, "POST", "/api/v1/apps", Some(json!({"slug": APP}))).await,
            201,
            "create the app",
        );
        for (user, role) in [
            ("vic", "viewer"),
            ("eddie", "editor"),
            ("alice", "app_admin"),
            ("dave", "app_admin"),
            ("pat", "editor"),
        ] {
            let (status, body) = send(
                owner,
                "POST",
                &format!("/api/v1/apps/{APP}/members"),
                Some(json!({"user": user, "role": role})),
            )
            .await;
            // dave is deactivated after the first set-up and cannot rejoin.
            assert!(
                status == 201 || (user == "dave" && status == 404),
                "add {user}: {status} {body}"
            );
        }
        self.deploy_twice().await;
        expect(
            send(
                owner,
                "POST",
                &format!("/api/v1/apps/{APP}/domains"),
                Some(json!({"host": "matrix.example"})),
            )
            .await,
            201,
            "add a domain",
        );
    }

    async fn deploy_twice(&self) {
        for _ in 0..2 {
            expect(
                send(
                    &self.owner,
                    "PUT",
                    &format!("/api/v1/apps/{APP}/scripts/hello"),
                    Some(json!({"source": SOURCE})),
                )
                .await,
                201,
                "deploy",
            );
        }
    }

    /// Undoes what a successful call of `method path` changed.
    async fn restore(&self, method: &str, path: &str) {
        let owner = &self.owner;
        match (method, path.trim_start_matches("/api/v1")) {
            ("DELETE", "/apps/matrix") => self.create_app().await,
            ("DELETE", "/apps/matrix/scripts/hello") => self.deploy_twice().await,
            ("PUT", "/apps/matrix/files/site.css") => {
                expect(
                    send(owner, "DELETE", "/api/v1/apps/matrix/files/site.css", None).await,
                    204,
                    "restore",
                );
            }
            ("POST", "/apps/matrix/domains") => {
                expect(
                    send(
                        owner,
                        "DELETE",
                        "/api/v1/apps/matrix/domains/added.matrix.example",
                        None,
                    )
                    .await,
                    204,
                    "restore",
                );
            }
            ("DELETE", "/apps/matrix/domains/matrix.example") => {
                expect(
                    send(
                        owner,
                        "POST",
                        "/api/v1/apps/matrix/domains",
                        Some(json!({"host": "matrix.example"})),
                    )
                    .await,
                    201,
                    "restore",
                );
            }
            ("POST", "/apps/matrix/members") => {
                expect(
                    send(owner, "DELETE", "/api/v1/apps/matrix/members/tom", None).await,
                    204,
                    "restore",
                );
            }
            ("DELETE", p) if p.starts_with("/apps/matrix/members/") => {
                expect(
                    send(
                        owner,
                        "POST",
                        "/api/v1/apps/matrix/members",
                        Some(json!({"user": "pat", "role": "editor"})),
                    )
                    .await,
                    201,
                    "restore",
                );
            }
            _ => {}
        }
    }

    fn fill(&self, path: &str) -> String {
        self.ids.iter().fold(path.to_owned(), |path, (name, id)| {
            path.replace(name, &id.to_string())
        })
    }
}

async fn the_permission_matrix(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let fixture = Fixture::start(&server).await;

    // The matrix covers every documented route but log-in and the document itself.
    let (_, document) = server
        .anonymous()
        .send(Method::GET, "/api/v1/openapi.json", None)
        .await;
    let documented: std::collections::BTreeSet<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .filter(|route| !route.ends_with("/auth/login") && !route.ends_with("/openapi.json"))
        .collect();
    let tabled: std::collections::BTreeSet<String> = MATRIX
        .iter()
        .map(|(method, path, _)| format!("{method} {}", template(path)))
        .collect();
    assert_eq!(
        tabled, documented,
        "the MATRIX and the OpenAPI document differ"
    );

    let mut failures = Vec::new();
    for (method, path, expected) in MATRIX {
        let path = fixture.fill(path);
        for (caller_index, caller_kind) in CALLERS.iter().enumerate() {
            // Log-out of a token caller is a no-op, so it is safe for everyone.
            let caller = &fixture.callers[caller_index];
            let (status, body) = send(caller, method, &path, body_for(method, &path)).await;
            if status != expected[caller_index] {
                failures.push(format!(
                    "{caller_kind} {method} {path}: expected {}, got {status} {body}",
                    expected[caller_index]
                ));
            }
            if status == 403 {
                assert_eq!(body["error"]["code"], "forbidden", "{body}");
                assert!(
                    body["error"]["permission"].is_string(),
                    "403 names the permission: {body}"
                );
            }
            if (200..300).contains(&status) {
                fixture.restore(method, &path).await;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "permission matrix mismatches:\n{}",
        failures.join("\n")
    );
}
per_backend!(the_permission_matrix);

/// `/api/v1/apps/matrix/members/{pat}` → `/api/v1/apps/{app}/members/{user}`.
fn template(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let previous = if index > 0 { segments[index - 1] } else { "" };
        out.push(match previous {
            "apps" => "{app}",
            "scripts" => "{script}",
            "versions" => "{version}",
            "domains" => "{host}",
            "schedules" | "async" => "{id}",
            "invocations" if !matches!(*segment, "stream" | "stats") => "{id}",
            "files" => "{*path}",
            "vars" | "secrets" => "{name}",
            "kv" => "{*key}",
            "members" if *segment != "lookup" => "{user}",
            "tokens" => "{id}",
            "users" if segments.contains(&"admin") => "{id}",
            _ => segment,
        });
    }
    out.join("/")
}

fn my_role_of(apps: &Value, slug: &str) -> Option<String> {
    apps.as_array()
        .unwrap()
        .iter()
        .find(|app| app["slug"] == slug)
        .map(|app| app["my_role"].as_str().unwrap().to_owned())
}

async fn roles_deactivation_audit_and_escalation(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (admin_id, admin) = user_with_token(&server, &owner, "ada", "admin").await;
    let (bob_id, bob) = user_with_token(&server, &owner, "bob", "member").await;
    let (carol_id, carol) = user_with_token(&server, &owner, "carol", "member").await;
    for slug in ["alpha", "beta"] {
        expect(
            send(&owner, "POST", "/api/v1/apps", Some(json!({"slug": slug}))).await,
            201,
            "create",
        );
    }
    expect(
        send(
            &owner,
            "POST",
            "/api/v1/apps/alpha/members",
            Some(json!({"user": "bob", "role": "app_admin"})),
        )
        .await,
        201,
        "bob joins alpha",
    );

    // my_role: owner → app_admin; admin without membership → editor;
    // membership → its role; no membership → invisible.
    for (client, slug, expected) in [
        (&owner, "alpha", Some("app_admin")),
        (&owner, "beta", Some("app_admin")),
        (&admin, "alpha", Some("editor")),
        (&admin, "beta", Some("editor")),
        (&bob, "alpha", Some("app_admin")),
        (&bob, "beta", None),
        (&carol, "alpha", None),
    ] {
        let apps = expect(send(client, "GET", "/api/v1/apps", None).await, 200, "list");
        assert_eq!(
            my_role_of(&apps, slug).as_deref(),
            expected,
            "{slug}: {apps}"
        );
        let (status, app) = send(client, "GET", &format!("/api/v1/apps/{slug}"), None).await;
        match expected {
            Some(role) => assert_eq!((status, app["my_role"].as_str()), (200, Some(role))),
            None => assert_error(status, &app, 404, "not_found"),
        }
    }
    for role in ["viewer", "editor", "app_admin"] {
        expect(
            send(
                &bob,
                "POST",
                "/api/v1/apps/alpha/members",
                Some(json!({"user": carol_id, "role": role})),
            )
            .await,
            201,
            "add",
        );
        let app = expect(
            send(&carol, "GET", "/api/v1/apps/alpha", None).await,
            200,
            "carol sees alpha",
        );
        assert_eq!(app["my_role"], role);
        expect(
            send(&bob, "DELETE", "/api/v1/apps/alpha/members/carol", None).await,
            204,
            "remove",
        );
    }

    // Members: the list shape, role changes, validation.
    expect(
        send(
            &bob,
            "POST",
            "/api/v1/apps/alpha/members",
            Some(json!({"user": "carol@example.com", "role": "viewer"})),
        )
        .await,
        201,
        "add by e-mail",
    );
    let members = expect(
        send(&bob, "GET", "/api/v1/apps/alpha/members", None).await,
        200,
        "members",
    );
    let carol_row = members
        .as_array()
        .unwrap()
        .iter()
        .find(|member| member["username"] == "carol")
        .unwrap()
        .clone();
    for field in [
        "user_id",
        "username",
        "email",
        "instance_role",
        "app_role",
        "joined_at",
        "active",
    ] {
        assert!(
            carol_row.get(field).is_some(),
            "{field} missing: {carol_row}"
        );
    }
    assert_eq!(carol_row["app_role"], "viewer");
    let changed = expect(
        send(
            &bob,
            "PATCH",
            &format!("/api/v1/apps/alpha/members/{carol_id}"),
            Some(json!({"role": "editor"})),
        )
        .await,
        200,
        "change",
    );
    assert_eq!(changed["app_role"], "editor");
    let (status, body) = send(
        &bob,
        "PATCH",
        "/api/v1/apps/alpha/members/carol",
        Some(json!({"role": "root"})),
    )
    .await;
    assert_error(status, &body, 422, "invalid_input");
    assert_eq!(body["error"]["field"], "role");
    let (status, body) = send(
        &bob,
        "PATCH",
        "/api/v1/apps/alpha/members/nobody",
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = send(
        &bob,
        "POST",
        "/api/v1/apps/alpha/members",
        Some(json!({"user": "carol", "role": "viewer"})),
    )
    .await;
    assert_error(status, &body, 409, "conflict");

    // The lookup: exact match only, and one answer for "no such user" and "not addable".
    let found = expect(
        send(
            &owner,
            "POST",
            "/api/v1/apps/beta/members/lookup",
            Some(json!({"query": "CAROL@example.com"})),
        )
        .await,
        200,
        "lookup",
    );
    assert_eq!(found, json!({"user_id": carol_id, "username": "carol"}));
    let mut refusals = Vec::new();
    for query in ["nobody", "caro", "ada", "owner", "carol"] {
        // carol is already on alpha; ada and the owner are not members.
        let (status, body) = send(
            &bob,
            "POST",
            "/api/v1/apps/alpha/members/lookup",
            Some(json!({"query": query})),
        )
        .await;
        assert_error(status, &body, 404, "no_addable_user");
        refusals.push(body);
    }
    assert!(
        refusals.windows(2).all(|pair| pair[0] == pair[1]),
        "{refusals:?}"
    );
    let (status, body) = send(
        &bob,
        "POST",
        "/api/v1/apps/alpha/members",
        Some(json!({"user": "ada", "role": "viewer"})),
    )
    .await;
    assert_error(status, &body, 404, "no_addable_user");
    let (status, body) = send(
        &bob,
        "POST",
        "/api/v1/apps/alpha/members",
        Some(json!({"user": "ghost", "role": "viewer"})),
    )
    .await;
    assert_error(status, &body, 404, "no_addable_user");

    // Privilege escalation is refused.
    let (status, body) = send(
        &bob,
        "POST",
        "/api/v1/apps/beta/members",
        Some(json!({"user": "carol", "role": "app_admin"})),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = send(
        &bob,
        "PATCH",
        &format!("/api/v1/admin/users/{carol_id}"),
        Some(json!({"instance_role": "admin"})),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    assert_eq!(body["error"]["permission"], "instance.manage_users");
    let (status, body) = send(
        &bob,
        "PATCH",
        &format!("/api/v1/admin/users/{bob_id}"),
        Some(json!({"instance_role": "owner"})),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = send(
        &admin,
        "POST",
        "/api/v1/apps/alpha/members",
        Some(json!({"user": "carol", "role": "viewer"})),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    assert_eq!(body["error"]["permission"], "app.manage_members");
    let (_, me) = owner.send(Method::GET, "/api/v1/auth/me", None).await;
    let owner_id = me["user"]["id"].as_i64().unwrap();
    for change in [json!({"instance_role": "member"}), json!({"active": false})] {
        let (status, body) = send(
            &admin,
            "PATCH",
            &format!("/api/v1/admin/users/{owner_id}"),
            Some(change),
        )
        .await;
        assert_error(status, &body, 403, "forbidden");
        assert_eq!(body["error"]["permission"], "instance.manage_owners");
    }
    let (status, body) = send(
        &admin,
        "PATCH",
        &format!("/api/v1/admin/users/{carol_id}"),
        Some(json!({"instance_role": "owner"})),
    )
    .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = send(&admin, "POST", "/api/v1/admin/users", Some(json!({"username": "boss", "email": "boss@example.com", "password": PASSWORD, "instance_role": "owner"}))).await;
    assert_error(status, &body, 403, "forbidden");
    // Nobody can make the instance ownerless.
    for change in [json!({"instance_role": "admin"}), json!({"active": false})] {
        let (status, body) = send(
            &owner,
            "PATCH",
            &format!("/api/v1/admin/users/{owner_id}"),
            Some(change),
        )
        .await;
        assert_error(status, &body, 409, "conflict");
    }
    let (_, me) = owner.send(Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(me["instance_role"], "owner");
    // Validation errors name the field; unknown users are 404.
    let (status, body) = send(
        &admin,
        "POST",
        "/api/v1/admin/users",
        Some(json!({"username": "x y", "email": "xy@example.com", "password": PASSWORD})),
    )
    .await;
    assert_error(status, &body, 422, "invalid_input");
    assert_eq!(body["error"]["field"], "username");
    let (status, body) = send(
        &admin,
        "POST",
        "/api/v1/admin/users",
        Some(json!({"username": "shorty", "email": "s@example.com", "password": "short"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("password")),
        "{body}"
    );
    let (status, body) = send(
        &admin,
        "PATCH",
        "/api/v1/admin/users/424242",
        Some(json!({"active": false})),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    // The admin may promote and demote non-owners.
    expect(
        send(
            &admin,
            "PATCH",
            &format!("/api/v1/admin/users/{carol_id}"),
            Some(json!({"instance_role": "admin"})),
        )
        .await,
        200,
        "promote",
    );
    let app = expect(
        send(&carol, "GET", "/api/v1/apps/alpha", None).await,
        200,
        "carol as admin",
    );
    assert_eq!(
        app["my_role"], "editor",
        "an admin is an implicit editor even with a membership"
    );
    expect(
        send(
            &admin,
            "PATCH",
            &format!("/api/v1/admin/users/{carol_id}"),
            Some(json!({"instance_role": "member"})),
        )
        .await,
        200,
        "demote",
    );
    let directory = expect(
        send(&admin, "GET", "/api/v1/admin/admins", None).await,
        200,
        "directory",
    );
    let ada = directory
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["id"] == admin_id)
        .unwrap();
    assert_eq!(
        (
            ada["username"].as_str(),
            ada["instance_role"].as_str(),
            ada["active"].as_bool()
        ),
        (Some("ada"), Some("admin"), Some(true))
    );
    assert!(ada.get("password_hash").is_none());

    // Deactivation stops an open session and a token on the next request.
    let session = server.anonymous().login("carol", PASSWORD).await;
    assert_eq!(
        session
            .send(Method::GET, "/api/v1/apps/alpha", None)
            .await
            .0,
        200
    );
    assert_eq!(
        carol.send(Method::GET, "/api/v1/apps/alpha", None).await.0,
        200
    );
    expect(
        send(
            &admin,
            "PATCH",
            &format!("/api/v1/admin/users/{carol_id}"),
            Some(json!({"active": false})),
        )
        .await,
        200,
        "deactivate",
    );
    let (status, body) = session.send(Method::GET, "/api/v1/apps/alpha", None).await;
    assert_error(status, &body, 401, "unauthenticated");
    let (status, body) = carol.send(Method::GET, "/api/v1/apps/alpha", None).await;
    assert_error(status, &body, 401, "unauthenticated");
    let response = server
        .anonymous()
        .http
        .post(format!("{}/api/v1/auth/login", server.base_url))
        .json(&json!({"login": "carol", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "a deactivated user cannot log in");
    // Her rows stay.
    let members = expect(
        send(&bob, "GET", "/api/v1/apps/alpha/members", None).await,
        200,
        "members",
    );
    let carol_row = members
        .as_array()
        .unwrap()
        .iter()
        .find(|member| member["username"] == "carol")
        .unwrap();
    assert_eq!(carol_row["active"], false);
    // Reactivation gives the token back.
    expect(
        send(
            &admin,
            "PATCH",
            &format!("/api/v1/admin/users/{carol_id}"),
            Some(json!({"active": true})),
        )
        .await,
        200,
        "reactivate",
    );
    assert_eq!(
        carol.send(Method::GET, "/api/v1/apps/alpha", None).await.0,
        200
    );

    // Every change was audited, with who, what, before and after.
    let page = expect(
        send(&admin, "GET", "/api/v1/admin/audit?limit=500", None).await,
        200,
        "audit",
    );
    let entries = page["entries"].as_array().unwrap();
    let find = |action: &str, target: &str| {
        entries
            .iter()
            .filter(|entry| entry["action"] == action && entry["target"] == target)
            .cloned()
            .collect::<Vec<Value>>()
    };
    assert_eq!(find("user.create", "user:carol").len(), 1);
    assert_eq!(
        find("user.create", "user:carol")[0]["actor_username"],
        "owner"
    );
    let updates = find("user.update", "user:carol");
    assert_eq!(
        updates.len(),
        4,
        "promote, demote, deactivate, reactivate: {updates:?}"
    );
    let deactivation = &updates[1];
    assert_eq!(deactivation["actor_username"], "ada");
    assert_eq!(
        (
            deactivation["before"]["active"].as_bool(),
            deactivation["after"]["active"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(find("member.add", "app:alpha/user:carol").len(), 4);
    assert_eq!(find("member.remove", "app:alpha/user:carol").len(), 3);
    let role_change = &find("member.update", "app:alpha/user:carol")[0];
    assert_eq!(
        (
            role_change["before"]["role"].as_str(),
            role_change["after"]["role"].as_str()
        ),
        (Some("viewer"), Some("editor"))
    );
    assert!(role_change["created_at"].is_string());
    // Refused changes left no entry (nothing half-applied).
    assert!(find("user.update", "user:owner").is_empty());
    // Paging.
    let first = expect(
        send(&owner, "GET", "/api/v1/admin/audit?limit=2", None).await,
        200,
        "page 1",
    );
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let next = first["next_before"].as_i64().unwrap();
    let second = expect(
        send(
            &owner,
            "GET",
            &format!("/api/v1/admin/audit?limit=2&before={next}"),
            None,
        )
        .await,
        200,
        "page 2",
    );
    assert!(second["entries"][0]["id"].as_i64().unwrap() < next);
    let (status, body) = send(&owner, "GET", "/api/v1/admin/audit?limit=0", None).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("limit"))
    );
    // No route alters the log.
    let entry_id = entries[0]["id"].as_i64().unwrap();
    for method in ["PUT", "PATCH", "DELETE"] {
        for path in [
            "/api/v1/admin/audit".to_owned(),
            format!("/api/v1/admin/audit/{entry_id}"),
        ] {
            let (status, _) = send(&owner, method, &path, Some(json!({"action": "forged"}))).await;
            assert!(status == 404 || status == 405, "{method} {path}: {status}");
        }
    }
    let again = expect(
        send(&owner, "GET", "/api/v1/admin/audit?limit=500", None).await,
        200,
        "audit",
    );
    assert!(
        again["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["id"] == entry_id && entry["action"] == entries[0]["action"])
    );
    assert!(!again.to_string().contains("forged"));
}
per_backend!(roles_deactivation_audit_and_escalation);

async fn login_abuse_is_throttled_without_enumeration(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    user_with_token(&server, &owner, "bob", "member").await;
    let anonymous = server.anonymous();
    let attempt = |login: &'static str, password: &'static str| {
        let anonymous = anonymous.clone();
        async move {
            let started = std::time::Instant::now();
            let response = anonymous
                .http
                .post(format!("{}/api/v1/auth/login", anonymous.base_url))
                .json(&json!({"login": login, "password": password}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap();
            (status, body, retry_after, started.elapsed())
        }
    };
    // Unknown user and wrong password: the same answer.
    let (unknown_status, unknown_body, _, _) = attempt("nobody-here", "wrong password").await;
    let (wrong_status, wrong_body, _, _) = attempt("bob", "wrong password").await;
    assert_eq!((unknown_status, wrong_status), (401, 401));
    assert_eq!(unknown_body, wrong_body);
    assert_eq!(wrong_body["error"]["code"], "invalid_credentials");
    // After five failures the account must wait, even with the right password.
    for _ in 0..4 {
        assert_eq!(attempt("bob", "wrong password").await.0, 401);
    }
    let (status, body, retry_after, _) = attempt("bob", PASSWORD).await;
    assert_error(status, &body, 429, "too_many_attempts");
    let seconds: u64 = retry_after.expect("a Retry-After header").parse().unwrap();
    assert!((1..=30).contains(&seconds), "{seconds}");
    // Another account is not affected.
    let session = anonymous
        .login("owner", crate::harness::OWNER_PASSWORD)
        .await;
    assert!(!session.csrf_token.is_empty());
}
per_backend!(login_abuse_is_throttled_without_enumeration);
