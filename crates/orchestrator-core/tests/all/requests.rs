//! What a script sees of a request, and what the caller gets from its
//! result. Each case deploys `script` at `demo/it`, sends `request`, and
//! expects a status, a body and some headers.

use crate::TestServer;

/// One request-and-response case.
struct Case {
    /// What the case shows.
    name: &'static str,
    /// The script deployed at `demo/it`.
    script: &'static str,
    /// `METHOD /path?query`.
    request: &'static str,
    /// Request headers.
    headers: &'static [(&'static str, &'static str)],
    /// Request body.
    body: &'static str,
    /// Expected status.
    status: u16,
    /// Expected body.
    expected_body: &'static str,
    /// Headers the response must have; a `None` value means "absent".
    expected_headers: &'static [(&'static str, Option<&'static str>)],
}

const TEXT: (&str, Option<&str>) = ("content-type", Some("text/plain; charset=utf-8"));
const JSON: (&str, Option<&str>) = ("content-type", Some("application/json"));

const CASES: &[Case] = &[
    Case {
        name: "hello world",
        script: r#""Hello, world!""#,
        request: "GET /demo/it",
        headers: &[],
        body: "",
        status: 200,
        expected_body: "Hello, world!",
        expected_headers: &[TEXT],
    },
    Case {
        name: "method, path and sub-path",
        script: r#"`${request.method} ${request.path} [${request.subpath}]`"#,
        request: "POST /demo/it/orders/42",
        headers: &[],
        body: "",
        status: 200,
        expected_body: "POST /demo/it/orders/42 [/orders/42]",
        expected_headers: &[TEXT],
    },
    Case {
        name: "no sub-path",
        script: r#"`[${request.subpath}]`"#,
        request: "GET /demo/it",
        headers: &[],
        body: "",
        status: 200,
        expected_body: "[]",
        expected_headers: &[],
    },
    Case {
        name: "a trailing slash is the sub-path /",
        script: r#"`[${request.subpath}]`"#,
        request: "DELETE /demo/it/",
        headers: &[],
        body: "",
        status: 200,
        expected_body: "[/]",
        expected_headers: &[],
    },
    Case {
        name: "every method reaches the script",
        script: r#"request.method"#,
        request: "PATCH /demo/it",
        headers: &[],
        body: "",
        status: 200,
        expected_body: "PATCH",
        expected_headers: &[],
    },
    Case {
        name: "query parameters are percent-decoded",
        script: r#"request.query.name + "|" + request.query.greeting"#,
        request: "GET /demo/it?name=Pi%20Zero&greeting=hi+there",
        headers: &[],
        body: "",
        status: 200,
        expected_body: "Pi Zero|hi there",
        expected_headers: &[],
    },
    Case {
        name: "header names are lower case",
        script: r#"request.headers["x-custom"]"#,
        request: "GET /demo/it",
        headers: &[("X-Custom", "yes")],
        body: "",
        status: 200,
        expected_body: "yes",
        expected_headers: &[],
    },
    Case {
        name: "the body reaches the script",
        script: r#"`got ${request.body.len()} bytes: ${request.body}`"#,
        request: "PUT /demo/it",
        headers: &[],
        body: "payload",
        status: 200,
        expected_body: "got 7 bytes: payload",
        expected_headers: &[],
    },
    Case {
        name: "a map is JSON",
        script: r#"#{ ok: true, n: 42 }"#,
        request: "GET /demo/it",
        headers: &[],
        body: "",
        status: 200,
        expected_body: r#"{"n":42,"ok":true}"#,
        expected_headers: &[JSON],
    },
    Case {
        name: "an array is JSON",
        script: r#"[1, "two"]"#,
        request: "GET /demo/it",
        headers: &[],
        body: "",
        status: 200,
        expected_body: r#"[1,"two"]"#,
        expected_headers: &[JSON],
    },
    Case {
        name: "response() sets status and headers",
        script: r#"response(201, "made", #{ "X-Thing": "1" })"#,
        request: "POST /demo/it",
        headers: &[],
        body: "",
        status: 201,
        expected_body: "made",
        expected_headers: &[("x-thing", Some("1")), TEXT],
    },
    Case {
        name: "a redirect",
        script: r#"response(302, (), #{ location: "/elsewhere" })"#,
        request: "GET /demo/it",
        headers: &[],
        body: "",
        status: 302,
        expected_body: "",
        expected_headers: &[("location", Some("/elsewhere"))],
    },
    Case {
        name: "() is an empty 204",
        script: r#"()"#,
        request: "GET /demo/it",
        headers: &[],
        body: "",
        status: 204,
        expected_body: "",
        expected_headers: &[],
    },
    Case {
        name: "hop-by-hop headers are dropped",
        script: r#"response(200, "x", #{ "transfer-encoding": "chunked", "content-length": "99", "x-ok": "1" })"#,
        request: "GET /demo/it",
        headers: &[],
        body: "",
        status: 200,
        expected_body: "x",
        expected_headers: &[
            ("x-ok", Some("1")),
            ("transfer-encoding", None),
            ("content-length", Some("1")),
        ],
    },
    Case {
        name: "the request id is request.id",
        script: r#"request.id"#,
        request: "GET /demo/it",
        headers: &[("X-Request-Id", "abc-123")],
        body: "",
        status: 200,
        expected_body: "abc-123",
        expected_headers: &[("x-request-id", Some("abc-123"))],
    },
    Case {
        name: "the script cannot override the request id",
        script: r#"response(200, "x", #{ "x-request-id": "forged" })"#,
        request: "GET /demo/it",
        headers: &[("X-Request-Id", "real-1")],
        body: "",
        status: 200,
        expected_body: "x",
        expected_headers: &[("x-request-id", Some("real-1"))],
    },
    Case {
        name: "path segments are percent-decoded for the lookup",
        script: r#"request.path"#,
        request: "GET /d%65mo/%69t",
        headers: &[],
        body: "",
        status: 200,
        expected_body: "/d%65mo/%69t",
        expected_headers: &[],
    },
];

async fn check(case: &Case) {
    let server = TestServer::start().await;
    server.deploy("demo", "it", case.script);
    let (method, path) = case.request.split_once(' ').expect("METHOD /path");
    let mut request = server
        .client
        .request(method.parse().unwrap(), server.url(path));
    for (name, value) in case.headers {
        request = request.header(*name, *value);
    }
    let response = request.body(case.body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (case.status, case.expected_body),
        "case {:?}",
        case.name
    );
    for (name, expected) in case.expected_headers {
        let found = headers.get(*name).map(|value| value.to_str().unwrap());
        assert_eq!(found, *expected, "header {name} of case {:?}", case.name);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_responses() {
    for case in CASES {
        check(case).await;
    }
}
