//! Metrics, health endpoints and the server's own JSON log, on the real
//! binary.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::harness::{Backend, Instance, Server, assert_error};

const METRICS_TOKEN: &str = "metrics-token-for-the-tests";

/// The value of the first sample named `name` whose labels include
/// `labels`, in a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((series_name, rest)) => (series_name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(key, value)| {
                    series_labels
                        .split(',')
                        .any(|label| label == format!("{key}=\"{value}\""))
                });
            matches.then(|| value.parse().ok()).flatten()
        })
}

async fn get_metrics(server: &Server, token: Option<&str>) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", server.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET /metrics");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

async fn create_app_with_scripts(server: &Server, scripts: &[(&str, &str)]) {
    let owner = server.owner().await;
    let (status, body) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "shop"})))
        .await;
    assert_eq!(status, 201, "{body}");
    for (script, source) in scripts {
        let (status, body) = owner.deploy("shop", script, source).await;
        assert_eq!(status, 201, "{script}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_invocations_and_logs_carry_the_request_id() {
    let instance = Instance::with_config(
        Backend::Sqlite,
        &format!("[log]\nformat = \"json\"\n\n[admin]\nmetrics_token = \"{METRICS_TOKEN}\"\n"),
    )
    .await;
    let server = instance.start();
    create_app_with_scripts(
        &server,
        &[
            ("hello", "print(\"saying hello\");\n\"Hello\""),
            ("boom", "throw \"the secret reason\";"),
        ],
    )
    .await;

    let caller = server.anonymous();
    for _ in 0..2 {
        let (status, _, body) = caller.call("GET", "/shop/hello", &[], None).await;
        assert_eq!((status, body.as_str()), (200, "Hello"));
    }
    let request_id = "observability-test-boom-1";
    let (status, headers, _) = caller
        .call("GET", "/shop/boom", &[("x-request-id", request_id)], None)
        .await;
    assert_eq!(status, 500);
    assert_eq!(headers["x-request-id"], request_id);

    // Refused without the token, or with a wrong one.
    let (status, _, body) = get_metrics(&server, None).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error(status, &body, 401, "unauthenticated");
    let (status, _, _) = get_metrics(&server, Some("metrics-token-for-the-tests-but-wrong")).await;
    assert_eq!(status, 401);

    let (status, content_type, text) = get_metrics(&server, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let hello = [("app", "shop"), ("script", "hello")];
    let boom = [("app", "shop"), ("script", "boom")];
    let count = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    let invocations = "picloud_invocations_total";
    assert_eq!(
        count(
            invocations,
            &[
                ("app", "shop"),
                ("script", "hello"),
                ("trigger", "http"),
                ("status", "200")
            ]
        ),
        2.0
    );
    assert_eq!(
        count(
            invocations,
            &[
                ("app", "shop"),
                ("script", "boom"),
                ("trigger", "http"),
                ("status", "500")
            ]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            invocations,
            &[("script", "hello"), ("status", "500")]
        ),
        None
    );
    assert_eq!(
        count("picloud_invocation_duration_seconds_count", &hello),
        2.0
    );
    assert_eq!(
        count("picloud_invocation_duration_seconds_count", &boom),
        1.0
    );
    assert_eq!(
        count(
            "picloud_invocation_duration_seconds_bucket",
            &[("app", "shop"), ("script", "hello"), ("le", "+Inf")]
        ),
        2.0
    );
    assert!(count("picloud_fuel_used_total", &hello) > 0.0);
    assert!(count("picloud_cold_starts_total", &hello) >= 0.0);
    // Deploys prepare an instance per script: at least two were created.
    assert!(count("picloud_instances_created_total", &[]) >= 2.0);
    assert!(count("picloud_warm_instances", &[]) >= 1.0);
    assert!(count("picloud_script_pools", &[]) >= 1.0);
    assert_eq!(count("picloud_active_invocations", &[]), 0.0);
    assert!(count("picloud_instances_evicted_total", &[]) >= 0.0);
    assert!(count("picloud_instances_discarded_total", &[]) >= 0.0);
    assert_eq!(count("picloud_records_dropped_total", &[]), 0.0);
    assert!(text.contains("# TYPE picloud_invocation_duration_seconds histogram"));
    assert!(text.contains("# HELP picloud_invocations_total "));

    // Every log line of the failed request is JSON and carries its id.
    let logs = server.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter(|line| line.contains(request_id))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let failure = lines
        .iter()
        .find(|line| line["message"] == "invocation failed")
        .unwrap_or_else(|| panic!("no `invocation failed` line for {request_id} in:\n{logs}"));
    assert_eq!(failure["span"]["request_id"], request_id, "{failure}");
    assert_eq!(failure["spans"][0]["request_id"], request_id, "{failure}");
    assert_eq!(failure["code"], "runtime_error", "{failure}");
    assert!(failure["timestamp"].is_string(), "{failure}");
    assert_eq!(failure["level"], "INFO", "{failure}");

    // The scripts' own output is logged inside the request too, with the
    // generated id the caller got back.
    let printed: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "saying hello")
        .collect();
    assert_eq!(printed.len(), 2, "{logs}");
    for line in &printed {
        let id = line["span"]["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{line}");
        assert_eq!(line["span"]["name"], "request", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_closed_by_default_and_open_on_the_admin_listener() {
    // Without a token the main listener hides /metrics entirely.
    let instance = Instance::new(Backend::Sqlite).await;
    let server = instance.start();
    let (status, _, body) = get_metrics(&server, Some(METRICS_TOKEN)).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error(status, &body, 404, "not_found");
    let (status, health) = server.anonymous().send(Method::GET, "/healthz", None).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));
    let (status, ready) = server.anonymous().send(Method::GET, "/readyz", None).await;
    assert_eq!(
        (status, ready),
        (
            200,
            json!({"status": "ok", "checks": {"database": "ok", "migrations": "ok"}})
        )
    );
    server.stop();

    // The admin listener serves metrics and health without a token.
    let instance =
        Instance::with_config(Backend::Sqlite, "[admin]\nlisten = \"127.0.0.1:0\"\n").await;
    let server = instance.start();
    let logs = server.logs();
    let admin_address = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|line| line["admin_listen"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no admin_listen in the log:\n{logs}"));
    create_app_with_scripts(&server, &[("hello", "\"Hello\"")]).await;
    let (status, _, _) = server
        .anonymous()
        .call("GET", "/shop/hello", &[], None)
        .await;
    assert_eq!(status, 200);

    let http = reqwest::Client::new();
    let admin = |path: &str| http.get(format!("http://{admin_address}{path}")).send();
    let response = admin("/metrics").await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(
        sample(
            &text,
            "picloud_invocations_total",
            &[("script", "hello"), ("status", "200")]
        ),
        Some(1.0),
        "{text}"
    );
    let response = admin("/healthz").await.unwrap();
    assert_eq!(response.status(), 200);
    let response = admin("/readyz").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        json!("ok")
    );
    // Scripts are not served on the admin listener.
    let response = admin("/shop/hello").await.unwrap();
    assert_eq!(response.status(), 404);
    // The main listener still hides /metrics (no token configured).
    let (status, _, _) = get_metrics(&server, None).await;
    assert_eq!(status, 404);
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_fails_with_pending_migrations_and_without_a_database() {
    let instance = Instance::new(Backend::Postgres).await;
    let server = instance.start();
    let client = server.anonymous();
    let (status, ready) = client.send(Method::GET, "/readyz", None).await;
    assert_eq!(status, 200, "{ready}");

    // The newest migration "not applied": not ready, and the check says why.
    let mut database = sqlx::PgConnection::connect(&instance.database_url)
        .await
        .unwrap();
    sqlx::raw_sql(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(&mut database)
    .await
    .unwrap();
    database.close().await.unwrap();
    let (status, ready) = client.send(Method::GET, "/readyz", None).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(
        ready,
        json!({"status": "unavailable", "checks": {"database": "ok", "migrations": "pending", "pending_migrations": 1}})
    );

    // The database gone: not ready, but still alive.
    let (_, name) = instance.database_url.rsplit_once('/').unwrap();
    let server_url = std::env::var("PICLOUD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut postgres = sqlx::PgConnection::connect(&server_url).await.unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut postgres)
        .await
        .unwrap();
    postgres.close().await.unwrap();
    let (status, ready) = client.send(Method::GET, "/readyz", None).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable", "{ready}");
    assert_ne!(ready["checks"]["database"], "ok", "{ready}");
    let (status, health) = client.send(Method::GET, "/healthz", None).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));
}
