//! The script runtime through the real binary: `kv`, `vars`, `secrets`,
//! `http`, `files` and `scripts` calls from deployed scripts, and the walls
//! between apps.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Client, Instance};
use crate::per_backend;

async fn create_app(owner: &Client, slug: &str) {
    let (status, body) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({ "slug": slug })))
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn deploy(owner: &Client, app: &str, script: &str, source: &str) {
    let (status, body) = owner.deploy(app, script, source).await;
    assert_eq!(status, 201, "deploying {app}/{script}: {body}");
}

/// A loopback server standing in for an outside service: `/hello` answers
/// text, `/to-private` redirects to an address scripts may not reach.
async fn start_test_service() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hello", get(|| async { "hello from the service" }))
        .route(
            "/json",
            get(|| async { axum::Json(json!({ "temperature": 21 })) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/to-private",
            get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "http://10.0.0.1/secret")],
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn a_counter_survives_a_restart(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    create_app(&owner, "shop").await;
    deploy(
        &owner,
        "shop",
        "counter",
        r#"#{ count: kv::incr("visits") }"#,
    )
    .await;
    for expected in 1..=3 {
        let (status, _, body) = server
            .anonymous()
            .call("POST", "/shop/counter", &[], None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["count"],
            expected
        );
    }
    assert!(server.stop().success());

    let server = instance.start();
    let (status, _, body) = server
        .anonymous()
        .call("POST", "/shop/counter", &[], None)
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"count":4}"#));
    // The management API shows the same value.
    let owner = server.owner().await;
    let (status, page) = owner
        .send(Method::GET, "/api/v1/apps/shop/kv?prefix=vis", None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["key"], "visits");
    assert_eq!(page["items"][0]["value"], 4);

    // An editor's delete through the API is audited; the counter restarts.
    let (status, body) = owner
        .send(Method::DELETE, "/api/v1/apps/shop/kv/visits", None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, audit) = owner.send(Method::GET, "/api/v1/admin/audit", None).await;
    assert_eq!(status, 200, "{audit}");
    assert!(audit.to_string().contains("app:shop/kv:visits"), "{audit}");
    let (_, _, body) = server
        .anonymous()
        .call("POST", "/shop/counter", &[], None)
        .await;
    assert_eq!(body, r#"{"count":1}"#);
}
per_backend!(a_counter_survives_a_restart);

const WEBHOOK: &str = r#"
let key = secrets::get("WEBHOOK_KEY");
if key == () { return error_response(500, "no key"); }
let signature = request.header("x-signature", "");
let expected = hmac_sha256(key, request.body);
if !constant_time_eq(signature, expected) {
    return error_response(401, "bad_signature");
}
let event = request.json_body();
kv::set(`event:${event.id}`, event);
#{ accepted: event.id }
"#;

async fn a_webhook_verifies_its_hmac_signature(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    create_app(&owner, "hooks").await;
    deploy(&owner, "hooks", "github", WEBHOOK).await;
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/hooks/secrets/WEBHOOK_KEY",
            Some(json!({ "value": "s3cr3t" })),
        )
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");

    let payload = r#"{"id":"evt_1","action":"opened"}"#;
    // HMAC-SHA256("s3cr3t", payload), computed independently.
    let signature = hmac_hex(b"s3cr3t", payload.as_bytes());
    let (status, _, body) = server
        .anonymous()
        .call(
            "POST",
            "/hooks/github",
            &[("x-signature", &signature)],
            Some(payload.as_bytes().to_vec()),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":"evt_1"}"#));

    let forged = hmac_hex(b"wrong key", payload.as_bytes());
    let (status, _, body) = server
        .anonymous()
        .call(
            "POST",
            "/hooks/github",
            &[("x-signature", &forged)],
            Some(payload.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bad_signature"), "{body}");

    // The secret's value appears in no API answer and no server log line.
    let (_, listed) = owner
        .send(Method::GET, "/api/v1/apps/hooks/secrets", None)
        .await;
    assert!(!listed.to_string().contains("s3cr3t"), "{listed}");
    assert!(!server.logs().contains("s3cr3t"));
}
per_backend!(a_webhook_verifies_its_hmac_signature);

/// HMAC-SHA256 in hex, written out here so the test does not trust the
/// guest's implementation.
fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|byte| byte ^ 0x36).collect();
    let outer: Vec<u8> = block.iter().map(|byte| byte ^ 0x5c).collect();
    let inner_hash = Sha256::new()
        .chain_update(&inner)
        .chain_update(message)
        .finalize();
    let outer_hash = Sha256::new()
        .chain_update(&outer)
        .chain_update(inner_hash)
        .finalize();
    outer_hash
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

const FETCH: &str = r#"
let url = request.query.url;
let result = ();
try {
    let answer = http::get(url);
    result = `${answer.status}: ${answer.body}`;
} catch (error) {
    result = `refused: ${error}`;
}
result
"#;

async fn outbound_http_reaches_only_allowed_public_hosts(backend: Backend) {
    let service = start_test_service().await;
    // The operator exempts the test service's exact address from the
    // private-address refusal; the app must still allow it.
    let instance = Instance::with_config(
        backend,
        &format!(
            "[outbound]\nallow_private = [\"127.0.0.1:{}\"]\n",
            service.port()
        ),
    )
    .await;
    let server = instance.start();
    let owner = server.owner().await;
    create_app(&owner, "fetch").await;
    deploy(&owner, "fetch", "get", FETCH).await;
    let call = |url: String| {
        let client = server.anonymous();
        async move {
            let path = format!("/fetch/get?url={}", urlencode(&url));
            let (status, _, body) = client.call("GET", &path, &[], None).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let hello = format!("http://127.0.0.1:{}/hello", service.port());

    // Nothing is allowed until an editor adds the host.
    let body = call(hello.clone()).await;
    assert!(body.contains("host_not_allowed"), "{body}");

    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/fetch/http-allowlist",
            Some(json!({ "hosts": [format!("127.0.0.1:{}", service.port()), "localhost", "10.0.0.1", "169.254.169.254"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(hello).await, "200: hello from the service");

    // Allowed by the app, refused by the host after resolution: loopback on
    // another port, a private address, the metadata address, a name that
    // resolves to loopback, and a redirect from the allowed service to a
    // private address.
    for (url, code) in [
        ("http://127.0.0.1:9/".to_owned(), "host_not_allowed"),
        ("http://10.0.0.1/".to_owned(), "address_refused"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "address_refused",
        ),
        ("http://localhost/".to_owned(), "address_refused"),
        ("http://[::1]/".to_owned(), "host_not_allowed"),
        (
            format!("http://127.0.0.1:{}/to-private", service.port()),
            "address_refused",
        ),
    ] {
        let body = call(url.clone()).await;
        assert!(
            body.starts_with("refused: ") && body.contains(code),
            "{url}: expected {code}, got {body}"
        );
    }
}
per_backend!(outbound_http_reaches_only_allowed_public_hosts);

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

async fn apps_cannot_reach_each_others_data(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    for app in ["alpha", "beta"] {
        create_app(&owner, app).await;
        let (status, body) = owner
            .send(
                Method::PUT,
                &format!("/api/v1/apps/{app}/vars/OWNER"),
                Some(json!({ "value": app })),
            )
            .await;
        assert!(status == 200 || status == 204, "{status} {body}");
        deploy(&owner, app, "secret", &format!(r#""{app} internal""#)).await;
    }
    deploy(
        &owner,
        "alpha",
        "write",
        r#"kv::set("shared", "alpha's"); kv::set("alpha:only", 1); "ok""#,
    )
    .await;
    let (status, _, _) = server
        .anonymous()
        .call("POST", "/alpha/write", &[], None)
        .await;
    assert_eq!(status, 200);

    // Beta tries every way of naming alpha's data.
    let probe = r#"
        let found = [];
        for key in ["shared", "alpha:only", "../alpha/shared", "alpha/shared", "alpha\u0000shared", "ＡＬＰＨＡ:only"] {
            try { if kv::get(key) != () { found.push(key); } } catch (error) { }
        }
        found.push(`listed ${kv::list("").items.len()}`);
        found.push(`owner ${vars::get("OWNER")}`);
        for name in ["secret", "alpha/secret", "../alpha/secret", "/alpha/secret"] {
            try { found.push(`called ${scripts::invoke(name, ())}`); } catch (error) { }
        }
        found
    "#;
    deploy(&owner, "beta", "probe", probe).await;
    let (status, _, body) = server
        .anonymous()
        .call("GET", "/beta/probe", &[], None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!(["listed 0", "owner beta", "called beta internal"]),
        "beta must see only its own data"
    );

    // A very long key is refused cleanly, not stored.
    deploy(&owner, "beta", "long", r#"let k = ""; for i in 0..1000 { k += "k"; } let result = "stored"; try { kv::set(k, 1); } catch (error) { result = `${error}`; } result"#).await;
    let (_, _, body) = server
        .anonymous()
        .call("GET", "/beta/long", &[], None)
        .await;
    assert!(body.starts_with("kv::set: "), "{body}");
}
per_backend!(apps_cannot_reach_each_others_data);

async fn scripts_invoke_each_other_and_read_files(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    create_app(&owner, "site").await;
    deploy(
        &owner,
        "site",
        "price",
        r#"let item = request.json_body(); #{ sku: item.sku, cents: 250 * item.quantity }"#,
    )
    .await;
    deploy(&owner, "site", "checkout", r#"let quote = scripts::invoke("price", #{ sku: "tea", quantity: 3 }); `${quote.sku}: ${quote.cents}`"#).await;
    deploy(&owner, "site", "loop", r#"scripts::invoke("loop", ())"#).await;
    deploy(&owner, "site", "page", r#"let template = files::read("templates/hello.txt"); template.replace("{name}", request.query.name); template"#).await;

    let (status, _, body) = server
        .anonymous()
        .call("GET", "/site/checkout", &[], None)
        .await;
    assert_eq!((status, body.as_str()), (200, "tea: 750"));

    let (status, _, body) = server
        .anonymous()
        .call("GET", "/site/loop", &[], None)
        .await;
    assert_eq!(status, 500, "{body}");
    // The author sees why: the innermost call's error is in the records,
    // as an invocation with the trigger `invoke`.
    let mut found = Value::Null;
    for _ in 0..50 {
        let (_, page) = owner
            .send(
                Method::GET,
                "/api/v1/apps/site/invocations?script=loop&status=error",
                None,
            )
            .await;
        if page["items"]
            .as_array()
            .is_some_and(|items| items.len() >= 4)
        {
            found = page;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let items = found["items"].as_array().expect("four records of the loop");
    assert!(
        items
            .iter()
            .filter(|item| item["trigger"] == "invoke")
            .count()
            >= 3,
        "{found}"
    );
    assert!(
        items.iter().any(|item| item["error_message"]
            .as_str()
            .is_some_and(|message| message.contains("call_depth_exceeded"))),
        "{found}"
    );

    let response = owner
        .http
        .put(format!(
            "{}/api/v1/apps/site/files/templates/hello.txt",
            owner.base_url
        ))
        .bearer_auth(owner.token.as_ref().unwrap())
        .body("Hello, {name}!")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let (status, _, body) = server
        .anonymous()
        .call("GET", "/site/page?name=Pi", &[], None)
        .await;
    assert_eq!((status, body.as_str()), (200, "Hello, Pi!"));

    // Deleting the app deletes its files.
    let app_folders = || {
        std::fs::read_dir(instance.data_dir.path().join("files"))
            .unwrap()
            .count()
    };
    assert_eq!(app_folders(), 1);
    let (status, body) = owner.send(Method::DELETE, "/api/v1/apps/site", None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(app_folders(), 0);
}
per_backend!(scripts_invoke_each_other_and_read_files);

async fn app_limits_apply_to_the_next_request(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    create_app(&owner, "busy").await;
    deploy(
        &owner,
        "busy",
        "work",
        "let total = 0; for i in 0..20000 { total += i; } total",
    )
    .await;
    let call = || async {
        let (status, _, body) = server
            .anonymous()
            .call("GET", "/busy/work", &[], None)
            .await;
        (status, body)
    };
    let (status, body) = call().await;
    assert_eq!(status, 200, "{body}");

    let settings = |limits: Value| json!({ "settings": { "limits": limits } });
    let (status, body) = owner
        .send(
            Method::PATCH,
            "/api/v1/apps/busy",
            Some(settings(json!({ "fuel": 100_000 }))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call().await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("fuel_exhausted"), "{body}");

    // Back to the default: the same script succeeds again, also after a restart.
    let (status, body) = owner
        .send(
            Method::PATCH,
            "/api/v1/apps/busy",
            Some(settings(json!({ "fuel": null }))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call().await.0, 200);

    for (limits, field) in [
        (json!({ "fuel": -1 }), "settings.limits.fuel"),
        (
            json!({ "deadline_ms": "soon" }),
            "settings.limits.deadline_ms",
        ),
        (json!({ "cpu": 1 }), "settings.limits"),
        (json!([1]), "settings.limits"),
    ] {
        let (status, body) = owner
            .send(
                Method::PATCH,
                "/api/v1/apps/busy",
                Some(settings(limits.clone())),
            )
            .await;
        assert_eq!(status, 422, "{limits}: {body}");
        assert_eq!(body["error"]["field"], field, "{limits}: {body}");
    }
}
per_backend!(app_limits_apply_to_the_next_request);

async fn slow_outbound_calls_hit_the_deadline_without_blocking_the_host(backend: Backend) {
    let service = start_test_service().await;
    let instance = Instance::with_config(
        backend,
        &format!(
            "[outbound]\nallow_private = [\"127.0.0.1:{}\"]\n",
            service.port()
        ),
    )
    .await;
    let server = instance.start();
    let owner = server.owner().await;
    create_app(&owner, "slow").await;
    let (status, body) = owner
        .send(
            Method::PATCH,
            "/api/v1/apps/slow",
            Some(json!({ "settings": { "limits": { "deadline_ms": 1000 } } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = owner
        .send(
            Method::PUT,
            "/api/v1/apps/slow/http-allowlist",
            Some(json!({ "hosts": [format!("127.0.0.1:{}", service.port())] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    deploy(
        &owner,
        "slow",
        "fetch",
        &format!(
            r#"for i in 0..5 {{ http::get("http://127.0.0.1:{}/slow"); }} "done""#,
            service.port()
        ),
    )
    .await;
    deploy(&owner, "slow", "quick", r#""quick""#).await;

    let started = std::time::Instant::now();
    let slow = tokio::spawn({
        let client = server.anonymous();
        async move { client.call("GET", "/slow/fetch", &[], None).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // While the slow script waits on the network, the server answers others.
    for _ in 0..5 {
        let (status, _, body) = server
            .anonymous()
            .call("GET", "/slow/quick", &[], None)
            .await;
        assert_eq!((status, body.as_str()), (200, "quick"));
    }
    let (status, _, body) = slow.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("deadline_exceeded"), "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2500),
        "the deadline of 1 s cut the 5 × 3 s of calls short, took {:?}",
        started.elapsed()
    );
}
per_backend!(slow_outbound_calls_hit_the_deadline_without_blocking_the_host);
