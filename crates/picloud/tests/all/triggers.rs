//! Schedules and async invocations through the real binary: the schedules
//! API and its validation, an async invocation that survives a restart
//! before it runs, and retries that end in `failed`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Client, Instance, assert_error};
use crate::per_backend;

/// Polls the status of an async invocation until it is `succeeded` or
/// `failed`.
async fn wait_until_finished(client: &Client, status_url: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = client.send(Method::GET, status_url, None).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "succeeded" || body["status"] == "failed" {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the invocation did not finish: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn schedules_are_managed_and_bad_input_is_422(backend: Backend) {
    let instance = Instance::new(backend).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "cron"})))
        .await;
    assert_eq!(status, 201);
    assert_eq!(owner.deploy("cron", "report", r#""ok""#).await.0, 201);
    let path = "/api/v1/apps/cron/schedules";
    // The example of docs/scripting.md, called over HTTP: no trigger header.
    let example = r#"
        if request.header("x-picloud-trigger") == "schedule" {
            let job = request.json_body();
            print(`nightly run of ${job.kind}`);
            return ();
        }
        "called over HTTP"
    "#;
    assert_eq!(owner.deploy("cron", "example", example).await.0, 201);
    let (status, _, body) = server
        .anonymous()
        .call("GET", "/cron/example", &[], None)
        .await;
    assert_eq!((status, body.as_str()), (200, "called over HTTP"));

    for (body, field) in [
        (json!({"script": "report", "cron": "every minute"}), "cron"),
        (json!({"script": "report", "cron": "* * * *"}), "cron"),
        (json!({"script": "report", "cron": "0 * * * * *"}), "cron"),
        (json!({"script": "report", "cron": "61 * * * *"}), "cron"),
        (
            json!({"script": "report", "cron": "@hourly", "timezone": "Nowhere/City"}),
            "timezone",
        ),
        (json!({"script": "missing", "cron": "@hourly"}), "script"),
        (json!({"cron": "@hourly"}), "script"),
        (
            json!({"script": "report", "cron": "@hourly", "colour": "red"}),
            "colour",
        ),
    ] {
        let (status, answer) = owner.send(Method::POST, path, Some(body.clone())).await;
        assert_error(status, &answer, 422, "invalid_input");
        assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
    }

    let (status, created) = owner
        .send(
            Method::POST,
            path,
            Some(json!({
                "script": "report", "cron": "30 9 * * 1-5", "timezone": "Europe/Paris",
                "payload": {"kind": "daily"}
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["script"], "report");
    assert_eq!(created["timezone"], "Europe/Paris");
    assert_eq!(created["payload"], json!({"kind": "daily"}));
    assert_eq!(created["enabled"], true);
    assert!(created["next_run_at"].is_string(), "{created}");
    let id = created["id"].as_i64().unwrap();

    let (status, listed) = owner.send(Method::GET, path, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let one = format!("{path}/{id}");
    let (status, changed) = owner
        .send(
            Method::PATCH,
            &one,
            Some(json!({"cron": "@daily", "payload": null, "enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["cron"], "@daily");
    assert_eq!(changed["payload"], Value::Null);
    assert_eq!(changed["enabled"], false);
    let (status, answer) = owner
        .send(Method::PATCH, &one, Some(json!({"cron": "* *"})))
        .await;
    assert_error(status, &answer, 422, "invalid_input");
    let (status, fetched) = owner.send(Method::GET, &one, None).await;
    assert_eq!((status, &fetched["cron"]), (200, &json!("@daily")));

    let (status, _) = owner.send(Method::DELETE, &one, None).await;
    assert_eq!(status, 204);
    let (status, answer) = owner.send(Method::GET, &one, None).await;
    assert_error(status, &answer, 404, "not_found");
    let (status, answer) = owner
        .send(Method::GET, &format!("{path}/not-a-number"), None)
        .await;
    assert_error(status, &answer, 404, "not_found");
    let (status, answer) = owner
        .send(Method::GET, "/api/v1/apps/cron/async/no-such-id", None)
        .await;
    assert_error(status, &answer, 404, "not_found");
    assert!(server.stop().success());
}
per_backend!(schedules_are_managed_and_bad_input_is_422);

async fn an_async_invocation_survives_a_restart_before_it_runs(backend: Backend) {
    // No workers: the request is accepted and stored, and nothing runs it.
    let mut instance = Instance::with_config(backend, "[triggers]\nworkers = 0\n").await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "later"})))
        .await;
    assert_eq!(status, 201);
    let source = r#"
        let body = json_parse(request.body);
        response(200, #{
            trigger: request.headers["x-picloud-trigger"],
            sum: body.a + body.b,
            path: request.path,
            q: request.query.q,
        })
    "#;
    assert_eq!(owner.deploy("later", "add", source).await.0, 201);

    let (status, headers, body) = server
        .anonymous()
        .call(
            "POST",
            "/later/add/sub?q=1",
            &[
                ("prefer", "respond-async"),
                ("content-type", "application/json"),
            ],
            Some(br#"{"a": 2, "b": 3}"#.to_vec()),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let accepted: Value = serde_json::from_str(&body).unwrap();
    let id = accepted["invocation_id"].as_str().unwrap().to_owned();
    let status_url = accepted["status_url"].as_str().unwrap().to_owned();
    assert_eq!(status_url, format!("/api/v1/apps/later/async/{id}"));
    assert_eq!(headers["location"], status_url.as_str());
    assert!(headers.contains_key("x-request-id"));

    let (status, queued) = owner.send(Method::GET, &status_url, None).await;
    assert_eq!(status, 200, "{queued}");
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["attempts"], 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, still) = owner.send(Method::GET, &status_url, None).await;
    assert_eq!(still["status"], "queued", "no worker runs it: {still}");
    assert!(server.stop().success());

    // Restarted with a worker: the stored request runs and completes.
    instance.extra_config = "[triggers]\nworkers = 1\n".to_owned();
    let server = instance.start();
    let owner = server.owner().await;
    let finished = wait_until_finished(&owner, &status_url).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["attempts"], 1);
    assert_eq!(finished["result"]["status"], 200);
    let result: Value = serde_json::from_str(finished["result"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        result,
        json!({"trigger": "async", "sum": 5, "path": "/later/add/sub", "q": "1"})
    );
    assert!(finished["finished_at"].is_string());
    assert!(server.stop().success());
}
per_backend!(an_async_invocation_survives_a_restart_before_it_runs);

async fn a_failing_async_invocation_is_retried_then_failed(backend: Backend) {
    let instance = Instance::with_config(
        backend,
        "[triggers]\nasync_max_attempts = 3\nretry_base_ms = 100\n",
    )
    .await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "flaky"})))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        owner
            .deploy("flaky", "boom", r#"throw "always broken""#)
            .await
            .0,
        201
    );
    let (status, _, body) = server
        .anonymous()
        .call("GET", "/flaky/boom", &[("prefer", "respond-async")], None)
        .await;
    assert_eq!(status, 202, "{body}");
    let accepted: Value = serde_json::from_str(&body).unwrap();
    let status_url = accepted["status_url"].as_str().unwrap();
    let started = std::time::Instant::now();
    let finished = wait_until_finished(&owner, status_url).await;
    assert_eq!(finished["status"], "failed", "{finished}");
    assert_eq!(finished["attempts"], 3);
    assert_eq!(finished["max_attempts"], 3);
    assert!(
        finished["error"]
            .as_str()
            .unwrap()
            .contains("always broken"),
        "{finished}"
    );
    assert_eq!(finished["result"], Value::Null);
    // Back-off: 100 ms after the first failure, 400 ms after the second.
    assert!(started.elapsed() >= Duration::from_millis(500));
    // A plain request is still answered at once.
    let (status, _, _) = server
        .anonymous()
        .call("GET", "/flaky/boom", &[], None)
        .await;
    assert_eq!(status, 500);
    assert!(server.stop().success());
}
per_backend!(a_failing_async_invocation_is_retried_then_failed);

fn picloud(config: &std::path::Path, arguments: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(arguments)
        .env("PICLOUD_CLI_CONFIG", config)
        .env_remove("PICLOUD_SERVER")
        .env_remove("PICLOUD_TOKEN")
        .output()
        .expect("run the picloud CLI")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_lists_adds_and_removes_schedules() {
    let instance = Instance::new(Backend::Sqlite).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "cli"})))
        .await;
    assert_eq!(status, 201);
    assert_eq!(owner.deploy("cli", "nightly", r#""ok""#).await.0, 201);
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    let token = owner.token.clone().unwrap();
    let output = picloud(
        &config,
        &["login", "--server", &server.base_url, "--token", &token],
    );
    assert!(output.status.success());

    let output = picloud(
        &config,
        &[
            "schedules",
            "add",
            "cli",
            "nightly",
            "0 3 * * *",
            "--timezone",
            "Europe/Berlin",
            "--payload",
            r#"{"full": true}"#,
            "--json",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(created["payload"], json!({"full": true}));
    let id = created["id"].to_string();

    let output = picloud(&config, &["schedules", "list", "cli"]);
    assert!(output.status.success());
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        listed.contains("nightly")
            && listed.contains("0 3 * * *")
            && listed.contains("Europe/Berlin"),
        "{listed}"
    );

    // A bad expression is refused by the server: exit 1 with its message.
    let output = picloud(&config, &["schedules", "add", "cli", "nightly", "whenever"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cron"));
    // Bad --payload JSON is a usage error.
    let output = picloud(
        &config,
        &[
            "schedules",
            "add",
            "cli",
            "nightly",
            "@daily",
            "--payload",
            "{",
        ],
    );
    assert_eq!(output.status.code(), Some(2));

    let output = picloud(&config, &["schedules", "remove", "cli", &id]);
    assert!(output.status.success(), "{output:?}");
    let (_, schedules) = owner
        .send(Method::GET, "/api/v1/apps/cli/schedules", None)
        .await;
    assert_eq!(schedules, json!([]));
    assert!(server.stop().success());
}

/// The real server runs an every-minute schedule within a minute of its
/// creation, with the schedule's request, and records it as `schedule`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_runs_a_schedule_and_records_it() {
    let instance = Instance::new(Backend::Sqlite).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "beat"})))
        .await;
    assert_eq!(status, 201);
    let source = r#"
        if request.header("x-picloud-trigger") != "schedule" { throw "not a schedule" }
        print(`payload ${request.json_body().beat} via ${request.method} ${request.path}`);
        "ok"
    "#;
    assert_eq!(owner.deploy("beat", "pulse", source).await.0, 201);
    let (status, created) = owner
        .send(
            Method::POST,
            "/api/v1/apps/beat/schedules",
            Some(json!({"script": "pulse", "cron": "* * * * *", "payload": {"beat": 7}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let record = loop {
        let (status, page) = owner
            .send(
                Method::GET,
                "/api/v1/apps/beat/invocations?script=pulse",
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        if let Some(record) = page["items"].as_array().and_then(|items| items.first()) {
            break record.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled run within 90 s; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(record["trigger"], "schedule", "{record}");
    assert_eq!(record["status"], 200, "{record}");
    assert!(
        record
            .to_string()
            .contains("payload 7 via POST /beat/pulse"),
        "{record}"
    );
    let id = created["id"].as_i64().unwrap();
    let (_, schedule) = owner
        .send(
            Method::GET,
            &format!("/api/v1/apps/beat/schedules/{id}"),
            None,
        )
        .await;
    assert!(schedule["last_run_at"].is_string(), "{schedule}");
    assert!(server.stop().success());
}
