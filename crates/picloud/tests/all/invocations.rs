//! Invocation records end to end: a script that prints and sometimes
//! fails, its records listed with filters, one fetched by id and by request
//! id, the chart figures, a live tail over server-sent events, and the
//! CLI's `logs` command.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Backend, Client, Instance, assert_error, user_with_token};
use crate::per_backend;

const SCRIPT: &str = r#"
let name = request.query.name ?? "world";
print(`greeting ${name}`);
if name == "crash" {
    throw `boom: cannot greet ${name}`;
}
`Hello, ${name}!`
"#;

/// Records are written in batches; a short flush interval keeps the test quick.
const CONFIG: &str = "[ingress.records]\nflush_interval_ms = 50\n";

/// Lists `query` until it holds `count` items (records arrive in batches).
async fn wait_for_items(client: &Client, query: &str, count: usize) -> Value {
    let path = format!("/api/v1/apps/logs/invocations{query}");
    for _ in 0..100 {
        let (status, page) = client.send(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        if page["items"].as_array().unwrap().len() >= count {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never held {count} records");
}

fn statuses(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["status"].as_u64().unwrap())
        .collect()
}

/// Opens the live tail at `query` and returns the response, checked.
async fn open_stream(
    client: &Client,
    query: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .http
        .get(format!(
            "{}/api/v1/apps/logs/invocations/stream{query}",
            client.base_url
        ))
        .bearer_auth(client.token.as_deref().unwrap());
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("open the stream");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    response
}

/// Reads events from `stream` until `count` invocations arrived; returns
/// their ids (from the `id:` lines) and their data.
async fn read_events(stream: &mut reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("an event in time")
            .expect("read the stream")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                event
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(|value| value.trim_start().to_owned())
            };
            if field("event:").as_deref() == Some("invocation") {
                let data = serde_json::from_str(&field("data:").unwrap()).unwrap();
                events.push((field("id:").unwrap(), data));
            }
        }
    }
    events
}

async fn invocation_records(backend: Backend) {
    let instance = Instance::with_config(backend, CONFIG).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, body) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "logs"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = owner.deploy("logs", "greet", SCRIPT).await;
    assert_eq!(status, 201, "{body}");

    let visitor = server.anonymous();
    let mut request_ids = Vec::new();
    for (name, expected) in [("ada", 200), ("crash", 500), ("bob", 200)] {
        let (status, headers, _) = visitor
            .call("GET", &format!("/logs/greet?name={name}"), &[], None)
            .await;
        assert_eq!(status, expected);
        request_ids.push(headers["x-request-id"].to_str().unwrap().to_owned());
    }

    // Newest first, with everything an author needs.
    let page = wait_for_items(&owner, "", 3).await;
    assert_eq!(statuses(&page), [200, 500, 200]);
    assert_eq!(page["next_before"], Value::Null);
    let crash = &page["items"][1];
    assert_eq!(crash["request_id"], request_ids[1].as_str());
    assert_eq!(crash["script"], "greet");
    assert_eq!(crash["trigger"], "http");
    assert!(crash["error_code"].is_string(), "{crash}");
    assert!(
        crash["error_message"]
            .as_str()
            .unwrap()
            .contains("boom: cannot greet crash"),
        "{crash}"
    );
    assert_eq!(
        crash["output"],
        json!([{"level": "print", "text": "greeting crash"}])
    );
    assert_eq!(crash["output_truncated"], false);
    let ada = &page["items"][2];
    assert_eq!(ada["error_code"], Value::Null);
    assert!(ada["started_at"].as_str().unwrap().ends_with('Z'), "{ada}");
    assert!(ada["started_at_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(ada["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(ada["version_id"].as_i64().unwrap() > 0);
    let fuel_share = ada["fuel_share"].as_f64().unwrap();
    assert!(fuel_share > 0.0 && fuel_share < 1.0, "{ada}");
    assert!(ada["fuel_used"].as_i64().unwrap() > 0);
    let memory_share = ada["memory_share"].as_f64().unwrap();
    assert!(memory_share > 0.0 && memory_share <= 1.0, "{ada}");

    // Filters.
    let errors = wait_for_items(&owner, "?status=error", 1).await;
    assert_eq!(statuses(&errors), [500]);
    let ok = wait_for_items(&owner, "?status=ok&script=greet", 2).await;
    assert_eq!(statuses(&ok), [200, 200]);
    let exact = wait_for_items(&owner, "?status=500", 1).await;
    assert_eq!(statuses(&exact), [500]);
    let (_, none) = owner
        .send(
            Method::GET,
            "/api/v1/apps/logs/invocations?script=other",
            None,
        )
        .await;
    assert_eq!(none["items"], json!([]));
    let started = ada["started_at_ms"].as_i64().unwrap();
    let (_, later) = owner
        .send(
            Method::GET,
            &format!("/api/v1/apps/logs/invocations?since={}", started + 60_000),
            None,
        )
        .await;
    assert_eq!(later["items"], json!([]));
    let (_, until) = owner
        .send(
            Method::GET,
            &format!("/api/v1/apps/logs/invocations?until={}", started + 60_000),
            None,
        )
        .await;
    assert_eq!(statuses(&until).len(), 3);

    // Pages.
    let first = wait_for_items(&owner, "?limit=2", 2).await;
    assert_eq!(statuses(&first), [200, 500]);
    let before = first["next_before"].as_i64().expect("a next page");
    let second = wait_for_items(&owner, &format!("?limit=2&before={before}"), 1).await;
    assert_eq!(statuses(&second), [200]);
    assert_eq!(second["next_before"], Value::Null);

    // Bad queries are 422 naming the parameter.
    for (query, field) in [
        ("?status=teapot", "status"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?since=yesterday", "since"),
        ("?before=x", "before"),
        ("?colour=red", "colour"),
    ] {
        let (status, body) = owner
            .send(
                Method::GET,
                &format!("/api/v1/apps/logs/invocations{query}"),
                None,
            )
            .await;
        assert_error(status, &body, 422, "invalid_input");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }

    // One record, by id or by request id.
    let id = crash["id"].as_i64().unwrap();
    let (status, one) = owner
        .send(
            Method::GET,
            &format!("/api/v1/apps/logs/invocations/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(&one, crash);
    let (status, one) = owner
        .send(
            Method::GET,
            &format!("/api/v1/apps/logs/invocations/{}", request_ids[1]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], id);
    let (status, body) = owner
        .send(Method::GET, "/api/v1/apps/logs/invocations/999999", None)
        .await;
    assert_error(status, &body, 404, "not_found");

    // Chart figures.
    let (status, stats) = owner
        .send(
            Method::GET,
            "/api/v1/apps/logs/invocations/stats?window=1h",
            None,
        )
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["bucket_seconds"], 60);
    let series = stats["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{stats}");
    assert_eq!(series[0]["script"], "greet");
    let buckets = series[0]["buckets"].as_array().unwrap();
    assert!(buckets.len() >= 60, "{stats}");
    let total = |key: &str| -> u64 {
        buckets
            .iter()
            .map(|bucket| bucket[key].as_u64().unwrap())
            .sum()
    };
    assert_eq!((total("count"), total("errors")), (3, 1));
    assert!(
        buckets
            .iter()
            .any(|bucket| bucket["p95_ms"].as_f64().is_some())
    );
    let (status, body) = owner
        .send(
            Method::GET,
            "/api/v1/apps/logs/invocations/stats?window=1y",
            None,
        )
        .await;
    assert_error(status, &body, 422, "invalid_input");

    // The live tail: a new invocation arrives as an event...
    let mut live = open_stream(&owner, "?script=greet", None).await;
    let (status, _, _) = visitor
        .call("GET", "/logs/greet?name=live", &[], None)
        .await;
    assert_eq!(status, 200);
    let events = read_events(&mut live, 1).await;
    assert_eq!(events[0].1["output"][0]["text"], "greeting live");
    assert_eq!(events[0].0, events[0].1["id"].to_string());
    drop(live);
    // ... and a tail resumed after an id first replays what came after it.
    let mut resumed = open_stream(&owner, &format!("?after={id}"), None).await;
    let replayed = read_events(&mut resumed, 2).await;
    let names: Vec<&str> = replayed
        .iter()
        .map(|(_, item)| item["output"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["greeting bob", "greeting live"]);
    drop(resumed);
    let mut resumed = open_stream(&owner, "", Some(&replayed[0].0)).await;
    let replayed = read_events(&mut resumed, 1).await;
    assert_eq!(replayed[0].1["output"][0]["text"], "greeting live");
    drop(resumed);

    // The CLI.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("cli.toml");
    let cli = |arguments: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_picloud"))
            .args(arguments)
            .env("PICLOUD_CLI_CONFIG", &config)
            .env_remove("PICLOUD_SERVER")
            .env_remove("PICLOUD_TOKEN")
            .output()
            .expect("run the CLI");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{arguments:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let token = owner.token.clone().unwrap();
    cli(&["login", "--server", &server.base_url, "--token", &token]);
    let printed = cli(&["logs", "logs"]);
    let lines: Vec<&str> = printed.lines().collect();
    let ada_line = lines
        .iter()
        .position(|line| line.contains("print: greeting ada"));
    let live_line = lines
        .iter()
        .position(|line| line.contains("print: greeting live"));
    assert!(
        ada_line < live_line && ada_line.is_some(),
        "oldest first:\n{printed}"
    );
    assert!(
        printed.lines().any(
            |line| line.starts_with("    error: ") && line.contains("boom: cannot greet crash")
        ),
        "{printed}"
    );
    assert!(printed.contains(" 500 "), "{printed}");
    let printed = cli(&["logs", "logs", "greet", "--status", "error", "--json"]);
    let items: Vec<Value> = printed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(items.len(), 1, "{printed}");
    assert_eq!(items[0]["status"], 500);
    let printed = cli(&["logs", "logs", "--limit", "1", "--json"]);
    assert_eq!(printed.lines().count(), 1, "{printed}");

    // `--follow` prints new invocations as they happen.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_picloud"))
        .args(["logs", "logs", "greet", "--follow", "--limit", "1"])
        .env("PICLOUD_CLI_CONFIG", &config)
        .env_remove("PICLOUD_SERVER")
        .env_remove("PICLOUD_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start `picloud logs --follow`");
    let (lines_sender, lines_receiver) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });
    // The last record is printed first; then the tail is open.
    let wait_for_line = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines_receiver.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("`picloud logs --follow` never printed {needle}"),
            }
        }
    };
    wait_for_line("greeting live");
    // The tail connects just after the first page: call until it shows up.
    let mut followed = false;
    for attempt in 0..20 {
        let name = format!("follow{attempt}");
        visitor
            .call("GET", &format!("/logs/greet?name={name}"), &[], None)
            .await;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while let Ok(line) = lines_receiver
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if line.contains("greeting follow") {
                followed = true;
                break;
            }
        }
        if followed {
            break;
        }
    }
    follower.kill().ok();
    follower.wait().ok();
    assert!(
        followed,
        "`picloud logs --follow` printed no new invocation"
    );

    // An open live tail does not hold up a graceful shutdown: it ends.
    let mut open = open_stream(&owner, "", None).await;
    let (status, _, _) = visitor
        .call("GET", "/logs/greet?name=last", &[], None)
        .await;
    assert_eq!(status, 200);
    let stopping = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the server took {:?} to stop with a live tail open",
        stopping.elapsed()
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = open.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the live tail did not end at shutdown");

    // Records queued at shutdown were written: they are there after a restart.
    let server = instance.start();
    let owner = server.owner().await;
    let page = wait_for_items(&owner, "?limit=1", 1).await;
    assert_eq!(page["items"][0]["output"][0]["text"], "greeting last");
}
per_backend!(invocation_records);

/// A client that reconnects more than one page (200 records) behind gets
/// every record in between, in order, before the new ones.
async fn a_tail_far_behind_catches_up_without_gaps(backend: Backend) {
    let instance = Instance::with_config(backend, CONFIG).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "logs"})))
        .await;
    assert_eq!(status, 201);
    let (status, _) = owner.deploy("logs", "quick", r#""ok""#).await;
    assert_eq!(status, 201);
    for _ in 0..450 {
        let (status, _, _) = server
            .anonymous()
            .call("GET", "/logs/quick", &[], None)
            .await;
        assert_eq!(status, 200);
    }
    // Wait until all 450 are stored (the newest id stops moving); the app
    // has no other records, and ids are consecutive.
    let mut newest = 0;
    loop {
        let page = wait_for_items(&owner, "?limit=1", 1).await;
        let now = page["items"][0]["id"].as_i64().unwrap();
        if now == newest {
            break;
        }
        newest = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let oldest = newest - 449;
    let mut stream = open_stream(&owner, "", Some(&(oldest - 1).to_string())).await;
    let events = read_events(&mut stream, 450).await;
    let ids: Vec<i64> = events.iter().map(|(id, _)| id.parse().unwrap()).collect();
    assert_eq!(ids, (oldest..=newest).collect::<Vec<_>>());
}
per_backend!(a_tail_far_behind_catches_up_without_gaps);

/// A live tail checks again, while it runs, that its caller may still see the
/// app: a viewer removed from the app stops receiving its records.
async fn a_tail_ends_when_its_caller_loses_access(backend: Backend) {
    let instance = Instance::with_config(backend, CONFIG).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, _) = owner
        .send(Method::POST, "/api/v1/apps", Some(json!({"slug": "logs"})))
        .await;
    assert_eq!(status, 201);
    let (status, _) = owner.deploy("logs", "greet", SCRIPT).await;
    assert_eq!(status, 201);
    let (watcher_id, watcher) = user_with_token(&server, &owner, "watcher", "member").await;
    let (status, body) = owner
        .send(
            Method::POST,
            "/api/v1/apps/logs/members",
            Some(json!({"user": "watcher", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let mut stream = open_stream(&watcher, "", None).await;
    let visitor = server.anonymous();
    let (status, _, _) = visitor
        .call("GET", "/logs/greet?name=before", &[], None)
        .await;
    assert_eq!(status, 200);
    let events = read_events(&mut stream, 1).await;
    assert_eq!(events[0].1["output"][0]["text"], "greeting before");

    let (status, body) = owner
        .send(
            Method::DELETE,
            &format!("/api/v1/apps/logs/members/{watcher_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    // The tail trusts its last check for REAUTHORIZE_EVERY (5 s).
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let (status, _, _) = visitor
        .call("GET", "/logs/greet?name=after", &[], None)
        .await;
    assert_eq!(status, 200);

    let mut rest = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("the stream ends in time")
            .expect("read the stream");
        match chunk {
            Some(chunk) => rest.push_str(&String::from_utf8_lossy(&chunk)),
            None => break,
        }
    }
    assert!(
        !rest.contains("greeting after"),
        "a removed viewer still got a record: {rest}"
    );
}
per_backend!(a_tail_ends_when_its_caller_loses_access);
