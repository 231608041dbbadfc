//! Every error a caller of a script endpoint can get has a JSON body with a
//! stable code and the request id, which also appears in the server's log.

use crate::harness::{Backend, Instance};
use crate::per_backend;

/// One invocation slot and almost no queueing, so that two requests at once
/// saturate the pool; a small body limit.
const CONFIG: &str = "
[executor.pool]
max_concurrent_invocations = 1
queue_timeout_ms = 1

[ingress]
max_body_bytes = 1024
";

/// (method, path, body, expected status, expected code)
type Case = (
    &'static str,
    &'static str,
    Option<Vec<u8>>,
    u16,
    &'static str,
);

async fn every_error_status_has_a_json_body(backend: Backend) {
    let instance = Instance::with_config(backend, CONFIG).await;
    let server = instance.start();
    let owner = server.owner().await;
    let (status, _) = owner
        .send(
            reqwest::Method::POST,
            "/api/v1/apps",
            Some(serde_json::json!({"slug": "errors"})),
        )
        .await;
    assert_eq!(status, 201);
    for (script, source) in [
        ("ok", r#""fine""#),
        ("boom", "let a = 1;\nthrow \"the secret reason\";"),
        ("spin", "loop {}"),
    ] {
        // With one slot, the check of a deploy may find the slot busy warming
        // the previous version: that is a 503 to retry, as documented.
        let mut attempts = 0;
        let (status, body) = loop {
            let (status, body) = owner.deploy("errors", script, source).await;
            attempts += 1;
            if status != 503 || attempts == 50 {
                break (status, body);
            }
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(status, 201, "{script}: {body}");
    }
    let caller = server.anonymous();
    let cases: &[Case] = &[
        ("GET", "/nope/hello", None, 404, "not_found"),
        ("GET", "/errors/missing", None, 404, "not_found"),
        (
            "POST",
            "/errors/ok",
            Some(vec![b'x'; 4096]),
            413,
            "payload_too_large",
        ),
        ("GET", "/errors/boom", None, 500, "runtime_error"),
        ("GET", "/errors/spin", None, 504, "fuel_exhausted"),
    ];
    for (method, path, body, expected_status, expected_code) in cases {
        let (status, headers, text) = caller.call(method, path, &[], body.clone()).await;
        assert_eq!(status, *expected_status, "{method} {path}: {text}");
        let error: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        assert_eq!(error["error"]["code"], *expected_code, "{path}: {text}");
        let request_id = headers["x-request-id"].to_str().unwrap();
        assert_eq!(error["error"]["request_id"], request_id, "{path}: {text}");
        assert!(
            !text.contains("the secret reason"),
            "the caller must not see script internals: {text}"
        );
    }
    // The script author finds the full error, by request id, in the log.
    let (_, headers, _) = caller.call("GET", "/errors/boom", &[], None).await;
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    let mut found = false;
    for _ in 0..50 {
        let logs = server.logs();
        if logs
            .lines()
            .any(|line| line.contains(&request_id) && line.contains("the secret reason"))
        {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        found,
        "request {request_id} with its error is not in the log"
    );

    // Saturate the single invocation slot: the others get 503 with Retry-After.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let caller = caller.clone();
            tokio::spawn(async move { caller.call("GET", "/errors/spin", &[], None).await })
        })
        .collect();
    let mut saturated = 0;
    for call in calls {
        let (status, headers, text) = call.await.unwrap();
        let error: serde_json::Value = serde_json::from_str(&text).unwrap();
        match status {
            503 => {
                saturated += 1;
                assert_eq!(error["error"]["code"], "pool_exhausted", "{text}");
                assert!(headers.contains_key("retry-after"), "{headers:?}");
            }
            504 => assert_eq!(error["error"]["code"], "fuel_exhausted"),
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert!(saturated > 0, "no request found the pool saturated");
    assert!(server.stop().success());
}
per_backend!(every_error_status_has_a_json_body);
