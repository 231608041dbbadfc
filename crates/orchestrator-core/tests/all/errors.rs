//! What a caller gets when something fails: a status, a stable code, a
//! generic message and the request id, never the script's internals.

use std::time::Duration;

use picloud_executor_core::InvocationLimits;
use picloud_orchestrator_core::IngressConfig;

use crate::{
    RawConnection, TestServer, active_script_with_limits, error_body, executor,
    single_slot_executor,
};

/// One failing script and what the caller must get.
struct Case {
    script: &'static str,
    status: u16,
    code: &'static str,
}

const CASES: &[Case] = &[
    Case {
        script: "let x = 1;\nthrow \"secret detail\";",
        status: 500,
        code: "runtime_error",
    },
    Case {
        script: "let x = 1;\nx.no_such_method(\"secret detail\")",
        status: 500,
        code: "runtime_error",
    },
    Case {
        script: "loop {}",
        status: 504,
        code: "fuel_exhausted",
    },
    Case {
        script: "let s = \"secret detail\";\nloop { s += s; }",
        status: 500,
        code: "data_too_large",
    },
    Case {
        script: "fn f(n) { f(n + 1) }\nf(\"secret detail\".len())",
        status: 500,
        code: "call_depth_exceeded",
    },
    Case {
        script: r#"response(200, "x", #{ "bad header": "secret detail" })"#,
        status: 500,
        code: "invalid_response",
    },
    Case {
        script: r#"response(200, "x", #{ "x-ok": "secret\ndetail" })"#,
        status: 500,
        code: "invalid_response",
    },
    Case {
        script: r#"response(101, "secret detail")"#,
        status: 500,
        code: "invalid_response",
    },
    Case {
        script: r#"response(1000, "secret detail")"#,
        status: 500,
        code: "invalid_response",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_failures_have_a_status_a_code_and_no_internals() {
    let server = TestServer::start().await;
    for (index, case) in CASES.iter().enumerate() {
        let name = format!("s{index}");
        server.deploy("fail", &name, case.script);
        let request_id = format!("failure-{index}");
        let response = server
            .client
            .get(server.url(&format!("/fail/{name}")))
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), case.status, "{:?}", case.script);
        assert_eq!(response.headers()["x-request-id"], request_id.as_str());
        assert_eq!(response.headers()["content-type"], "application/json");
        let (code, message, body_request_id) = error_body(response).await;
        assert_eq!(code, case.code, "{:?}", case.script);
        assert_eq!(body_request_id, request_id);
        for internal in ["secret", "line", "wasm", "/", "\\"] {
            assert!(
                !message.contains(internal),
                "{:?} leaks {internal:?}: {message}",
                case.script
            );
        }
    }
    // The author gets the details in the record.
    server.records.flush().await;
    let record = server
        .sink
        .for_request("failure-0")
        .pop()
        .expect("a record of the failure");
    assert_eq!(record.error_code.as_deref(), Some("runtime_error"));
    let full = record.error_message.expect("the full error");
    assert!(
        full.contains("secret detail") && full.contains("line 2"),
        "{full}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let config = IngressConfig {
        max_body_bytes: 1024,
        ..IngressConfig::default()
    };
    let server = TestServer::start_with(executor(), config, axum::Router::new()).await;
    server.deploy("up", "load", r#"request.body.len()"#);

    let fits = server
        .client
        .post(server.url("/up/load"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.text().await.unwrap(), "1024");

    let too_big = server
        .client
        .post(server.url("/up/load"))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let (code, message, _) = error_body(too_big).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "payload_too_large",
            "the request body is larger than the limit of 1024 bytes"
        )
    );

    // Without a Content-Length, the limit applies to the bytes received.
    let mut chunked = RawConnection::open(&server).await;
    chunked
        .send("POST /up/load HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await;
    for _ in 0..3 {
        chunked
            .send(&format!("200\r\n{}\r\n", "b".repeat(512)))
            .await;
    }
    chunked.send("0\r\n\r\n").await;
    let answer = chunked.read_until("payload_too_large").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn too_many_headers_is_431() {
    let config = IngressConfig {
        max_header_count: 10,
        max_header_bytes: 9000,
        ..IngressConfig::default()
    };
    let server = TestServer::start_with(executor(), config, axum::Router::new()).await;
    server.deploy("h", "s", r#""ok""#);
    let mut request = server.client.get(server.url("/h/s"));
    for index in 0..12 {
        request = request.header(format!("x-h{index}"), "v");
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 431);
    // A header block larger than the read buffer never reaches the router.
    let huge = server
        .client
        .get(server.url("/h/s"))
        .header("x-huge", "v".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 431);
    assert_eq!(server.get("/h/s").await.text().await.unwrap(), "ok");
    server.stop().await;
}

#[tokio::test]
async fn a_saturated_pool_is_503_with_retry_after_and_a_slow_script_504() {
    let server = TestServer::start_with(
        single_slot_executor(),
        IngressConfig::default(),
        axum::Router::new(),
    )
    .await;
    // A script that holds the only slot until its 1 s deadline.
    let slow = InvocationLimits {
        fuel: u64::MAX / 4,
        deadline_ms: 1_000,
        ..InvocationLimits::default()
    };
    server
        .routes
        .set_active(active_script_with_limits("busy", "slow", "loop {}", slow));
    server.deploy("busy", "quick", r#""quick""#);

    let slow_request = tokio::spawn({
        let client = server.client.clone();
        let url = server.url("/busy/slow");
        async move { client.get(url).send().await.unwrap() }
    });
    let started = std::time::Instant::now();
    while single_slot_executor().stats().active_invocations == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the slow request never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let refused = server.get("/busy/quick").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(error_body(refused).await.0, "pool_exhausted");

    let slow_response = slow_request.await.unwrap();
    assert_eq!(slow_response.status(), 504);
    assert_eq!(error_body(slow_response).await.0, "deadline_exceeded");
    assert_eq!(
        server.get("/busy/quick").await.text().await.unwrap(),
        "quick"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_send_its_body_in_time_gets_408() {
    let config = IngressConfig {
        request_timeout_ms: 300,
        ..IngressConfig::default()
    };
    let server = TestServer::start_with(executor(), config, axum::Router::new()).await;
    server.deploy("slow", "upload", r#""never""#);
    let mut connection = RawConnection::open(&server).await;
    connection
        .send("POST /slow/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        .await;
    let answer = connection.read_until("request_timeout").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_generated_otherwise() {
    let server = TestServer::start().await;
    server.deploy("ids", "echo", r#"request.id"#);
    let with_id = |id: &'static str| {
        server
            .client
            .get(server.url("/ids/echo"))
            .header("x-request-id", id)
            .send()
    };

    let kept = with_id("proxy-42").await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "proxy-42");
    assert_eq!(kept.text().await.unwrap(), "proxy-42");

    for insane in [
        "has spaces",
        "semi;colon",
        "a-very-long-one-that-goes-on-and-on-and-on-and-on-and-on-and-on-and-on",
    ] {
        let replaced = with_id(insane).await.unwrap();
        let header = replaced.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(header.len(), 32, "{insane:?} is replaced by a generated id");
        assert_eq!(replaced.text().await.unwrap(), header);
    }
    let generated = server.get("/ids/echo").await;
    let header = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.bytes().all(|byte| byte.is_ascii_hexdigit()));
    assert_eq!(generated.text().await.unwrap(), header);
    server.stop().await;
}

#[tokio::test]
async fn a_script_still_running_at_the_request_timeout_is_504() {
    let config = IngressConfig {
        request_timeout_ms: 300,
        ..IngressConfig::default()
    };
    let server = TestServer::start_with(executor(), config, axum::Router::new()).await;
    let endless = InvocationLimits {
        fuel: u64::MAX / 4,
        deadline_ms: 10_000,
        ..InvocationLimits::default()
    };
    server.routes.set_active(active_script_with_limits(
        "slow", "spin", "loop {}", endless,
    ));
    let started = std::time::Instant::now();
    let response = server.get("/slow/spin").await;
    assert_eq!(response.status(), 504);
    assert_eq!(error_body(response).await.0, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the request timeout stops the script"
    );
    server.deploy("slow", "next", r#""still serving""#);
    assert_eq!(
        server.get("/slow/next").await.text().await.unwrap(),
        "still serving"
    );
    server.stop().await;
}
