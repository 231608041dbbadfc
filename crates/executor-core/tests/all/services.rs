//! Host calls: a script reaches the embedder's [`HostServices`] through the
//! `kv`, `vars`, `secrets`, `http`, `files` and `scripts` modules. These
//! tests use an in-memory implementation; the real one (database, outbound
//! HTTP, files) is tested through the binary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picloud_executor_core::{
    BoxFuture, HostCall, HostReply, HostServices, HttpAnswer, InvocationContext, InvocationLimits,
    InvokeError, OutputLevel,
};

use crate::{body, executor, get, script};

/// An in-memory key space, a fixed variable, and slow or failing calls on
/// request.
/// The documentation's examples (`doc_examples`) run against it too.
#[derive(Default)]
pub struct Memory {
    kv: Mutex<BTreeMap<String, String>>,
    calls: Mutex<Vec<HostCall>>,
}

impl HostServices for Memory {
    fn call(&self, call: HostCall, _deadline: Instant) -> BoxFuture<'_, HostReply> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(call.clone());
            let mut kv = self.kv.lock().unwrap();
            match call {
                HostCall::KvGet { key } => kv
                    .get(&key)
                    .cloned()
                    .map_or(HostReply::Unit, HostReply::Json),
                HostCall::KvSet { key, value, .. } => {
                    if value.len() > 100 {
                        return HostReply::error("quota_exceeded", "the value is over 100 bytes");
                    }
                    kv.insert(key, value);
                    HostReply::Unit
                }
                HostCall::KvDelete { key } => HostReply::Bool(kv.remove(&key).is_some()),
                HostCall::KvIncrement { key, by } => {
                    let next = kv
                        .get(&key)
                        .map_or(0, |value| value.parse::<i64>().unwrap())
                        + by;
                    kv.insert(key, next.to_string());
                    HostReply::Int(next)
                }
                HostCall::KvList { prefix, limit, .. } => HostReply::KvPage {
                    entries: kv
                        .iter()
                        .filter(|(key, _)| key.starts_with(&prefix))
                        .take(limit as usize)
                        .map(|(key, value)| (key.clone(), value.clone()))
                        .collect(),
                    next: None,
                },
                HostCall::VarGet { name } if name == "GREETING" => HostReply::Text("hello".into()),
                HostCall::VarGet { .. } => HostReply::Unit,
                HostCall::Http(request) if request.url.contains("binary") => {
                    HostReply::Http(HttpAnswer {
                        status: 200,
                        headers: Vec::new(),
                        body: vec![0xff, 0xfe],
                    })
                }
                HostCall::Http(request) => HostReply::Http(HttpAnswer {
                    status: 200,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: format!("{} {} {}", request.method, request.url, request.body.len())
                        .into_bytes(),
                }),
                HostCall::CallScript { script, .. } if script == "slow" => {
                    drop(kv);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    HostReply::Unit
                }
                HostCall::SecretGet { name } if name == "API_TOKEN" => {
                    HostReply::Text("example-token".into())
                }
                HostCall::SecretGet { .. } => HostReply::Unit,
                HostCall::FileRead { path } if path == "logo.bin" => {
                    HostReply::Bytes(vec![0xff, 0x00, 0x7f])
                }
                HostCall::FileRead { .. } => HostReply::Unit,
                HostCall::FileList { .. } => HostReply::List(Vec::new()),
                HostCall::CallScript { payload, .. } => {
                    HostReply::Json(format!(r#"{{"cents":750,"payload":{payload}}}"#))
                }
            }
        })
    }
}

fn with(services: &Arc<Memory>) -> InvocationContext {
    InvocationContext {
        services: Some(services.clone()),
        deadline: None,
    }
}

#[tokio::test]
async fn kv_round_trips_rhai_values_as_json() {
    let memory = Arc::new(Memory::default());
    let version = script(
        r#"
        kv::set("user:1", #{ name: "Ada", tags: ["a", "b"], age: 36 });
        kv::set("user:2", 42);
        let user = kv::get("user:1");
        let missing = kv::get("nobody");
        let page = kv::list("user:");
        let n = kv::incr("hits") + kv::incr("hits", 10);
        `${user.name} ${user.tags[1]} ${user.age + 1} ${missing == ()} ${page.items.len()} ${n} ${kv::delete("user:2")} ${kv::delete("user:2")}`
        "#,
    );
    let invocation = executor()
        .invoke_with(&version, get("/"), with(&memory))
        .await;
    assert_eq!(body(&invocation), "Ada b 37 true 2 12 true false");
    assert_eq!(invocation.stats.host_calls, 9);
    assert_eq!(
        memory.kv.lock().unwrap().get("user:1").unwrap(),
        r#"{"age":36,"name":"Ada","tags":["a","b"]}"#
    );
}

/// Host calls work from a script function and from closures that a native
/// function (`map`, `filter`) calls back.
#[tokio::test]
async fn host_calls_from_functions_and_callbacks() {
    let memory = Arc::new(Memory::default());
    let version = script(
        r#"
        fn store(key, value) { kv::set(key, value); key }
        let keys = [1, 2, 3].map(|n| store(`k${n}`, n * 10));
        let big = keys.filter(|key| kv::get(key) > 15);
        let total = 0;
        for key in keys { total += kv::get(key); }
        `${big} ${total}`
        "#,
    );
    let invocation = executor()
        .invoke_with(&version, get("/"), with(&memory))
        .await;
    assert_eq!(body(&invocation), r#"["k2", "k3"] 60"#);
    assert_eq!(invocation.stats.host_calls, 9);
}

#[tokio::test]
async fn bytes_from_the_host_are_blobs() {
    let memory = Arc::new(Memory::default());
    let version = script(
        r#"
        let file = files::read_blob("logo.bin");
        let answer = http::get("https://binary.example/");
        `${type_of(file)} ${file.len()} ${file[0]} ${type_of(answer.body)} ${answer.body.len()}`
        "#,
    );
    let invocation = executor()
        .invoke_with(&version, get("/"), with(&memory))
        .await;
    assert_eq!(body(&invocation), "blob 3 255 blob 2");
}

#[tokio::test]
async fn a_failed_call_is_a_catchable_error_at_the_calling_line() {
    let memory = Arc::new(Memory::default());
    let version = script(
        "let big = \"\";\nfor i in 0..200 { big += \"x\"; }\ntry {\n  kv::set(\"k\", big);\n} catch (error) {\n  return `caught: ${error}`;\n}",
    );
    let invocation = executor()
        .invoke_with(&version, get("/"), with(&memory))
        .await;
    assert_eq!(
        body(&invocation),
        "caught: kv::set: quota_exceeded: the value is over 100 bytes"
    );

    let uncaught =
        script("let big = \"\"; for i in 0..200 { big += \"x\"; }\nkv::set(\"k\", big);");
    let invocation = executor()
        .invoke_with(&uncaught, get("/"), with(&memory))
        .await;
    match invocation.result {
        Err(InvokeError::Runtime { message, position }) => {
            assert!(message.contains("quota_exceeded"), "{message}");
            assert_eq!(position.map(|position| position.line), Some(2));
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_types_and_arity_are_script_errors_not_host_calls() {
    let memory = Arc::new(Memory::default());
    for (source, line) in [
        ("1;\nkv::get(42)", 2),
        ("1;\n2;\nkv::set(\"k\")", 3),
        ("kv::list(\"p\", (), 0)", 1),
        ("kv::set(\"k\", 1, -5)", 1),
        ("http::request(#{ url: 5 })", 1),
        ("http::request(#{ url: \"http://a\", bogus: 1 })", 1),
        ("log(\"loud\", \"x\")", 1),
        ("vars::get()", 1),
    ] {
        let invocation = executor()
            .invoke_with(&script(source), get("/"), with(&memory))
            .await;
        match invocation.result {
            Err(InvokeError::Runtime { position, .. }) => {
                assert_eq!(
                    position.map(|position| position.line),
                    Some(line),
                    "{source}"
                )
            }
            other => panic!("{source}: expected a runtime error, got {other:?}"),
        }
    }
    assert!(memory.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_services_every_call_is_unavailable() {
    let invocation = executor().invoke(&script("kv::get(\"k\")"), get("/")).await;
    match invocation.result {
        Err(InvokeError::Runtime { message, .. }) => {
            assert_eq!(
                message,
                "kv::get: unavailable: kv::get is not available here"
            )
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn vars_http_and_log_levels() {
    let memory = Arc::new(Memory::default());
    let version = script(
        r#"
        log("info", "starting");
        log("warn", #{ a: 1 });
        log("error", "bad");
        let answer = http::post("https://example.com/hook", #{ ok: true });
        let got = http::request(#{ url: "https://example.com/x", method: "put", headers: #{ "x-a": "1" }, body: "abc" });
        `${vars::get("GREETING")} ${vars::get("NOPE", "fallback")} ${answer.status} ${answer.body} | ${got.body}`
        "#,
    );
    let invocation = executor()
        .invoke_with(&version, get("/"), with(&memory))
        .await;
    assert_eq!(
        body(&invocation),
        "hello fallback 200 POST https://example.com/hook 11 | PUT https://example.com/x 3"
    );
    let levels: Vec<_> = invocation.output.iter().map(|line| line.level).collect();
    assert_eq!(
        levels,
        [OutputLevel::Info, OutputLevel::Warn, OutputLevel::Error]
    );
    let calls = memory.calls.lock().unwrap();
    let HostCall::Http(post) = &calls[0] else {
        panic!("expected an HTTP call, got {:?}", calls[0]);
    };
    assert!(
        post.headers
            .contains(&("content-type".into(), "application/json".into()))
    );
}

#[tokio::test]
async fn a_slow_host_call_hits_the_deadline_without_blocking_others() {
    let memory = Arc::new(Memory::default());
    let limits = InvocationLimits {
        deadline_ms: 300,
        ..InvocationLimits::default()
    };
    let slow = script("scripts::invoke(\"slow\", ())").with_limits(limits);
    let started = Instant::now();
    let waiting = tokio::spawn({
        let memory = memory.clone();
        async move { executor().invoke_with(&slow, get("/"), with(&memory)).await }
    });
    // Meanwhile, other invocations run normally.
    for _ in 0..5 {
        let quick = executor().invoke(&script("1 + 1"), get("/")).await;
        assert_eq!(body(&quick), "2");
    }
    let invocation = waiting.await.unwrap();
    assert!(
        matches!(invocation.result, Err(InvokeError::DeadlineExceeded { .. })),
        "{:?}",
        invocation.result
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(invocation.stats.host_wait >= Duration::from_millis(250));
}

#[tokio::test]
async fn a_context_deadline_shortens_the_script_limit() {
    let memory = Arc::new(Memory::default());
    let context = InvocationContext {
        services: Some(memory),
        deadline: Some(Instant::now() + Duration::from_millis(200)),
    };
    let invocation = executor()
        .invoke_with(&script("scripts::invoke(\"slow\", ())"), get("/"), context)
        .await;
    assert!(
        matches!(invocation.result, Err(InvokeError::DeadlineExceeded { .. })),
        "{:?}",
        invocation.result
    );
    assert!(invocation.stats.duration < Duration::from_secs(3));
}
