//! No state crosses requests served by the same warm instance.

use crate::{body, executor, get, script};

fn with_query(name: &str, value: &str) -> picloud_executor_core::Request {
    let mut request = get("/");
    request.query = vec![(name.into(), value.into())];
    request
}

#[tokio::test]
async fn variables_start_fresh_on_every_request() {
    let version = script("let counter = 0;\ncounter += 1;\ncounter");
    for _ in 0..5 {
        assert_eq!(body(&executor().invoke(&version, get("/")).await), "1");
    }
}

#[tokio::test]
async fn a_previous_requests_data_is_invisible() {
    let version = script(
        r#"
        let seen = if is_def_var("leaked") { leaked } else { "nothing" };
        let leaked = request.query.secret ?? "";
        seen
        "#,
    );
    let first = executor()
        .invoke(&version, with_query("secret", "hunter2"))
        .await;
    assert_eq!(body(&first), "nothing");
    let second = executor().invoke(&version, get("/")).await;
    assert!(
        !second.stats.cold_start,
        "the second request must reuse the warm instance"
    );
    assert_eq!(body(&second), "nothing");
}

#[tokio::test]
async fn closures_capture_nothing_from_earlier_requests() {
    let version = script(
        r#"
        let cache = [];
        let remember = |value| { cache.push(value); cache.len() };
        remember.call(request.query.value ?? "none")
        "#,
    );
    for index in 0..5 {
        let invocation = executor()
            .invoke(&version, with_query("value", &index.to_string()))
            .await;
        assert_eq!(body(&invocation), "1");
    }
}

/// The bytecode the instance keeps holds the script's literals; each request
/// works on copies of them.
#[tokio::test]
async fn literals_of_the_bytecode_are_never_changed_by_a_request() {
    let version = script(
        r#"
        const BASE = [1];
        let list = BASE;
        list.push(request.query.value ?? "none");
        let map = #{ seen: [] };
        map.seen.push(1);
        let grow = || { map.seen.push(2); map.seen.len() };
        [list.len(), grow.call(), BASE.len()]
        "#,
    );
    for index in 0..5 {
        let invocation = executor()
            .invoke(&version, with_query("value", &index.to_string()))
            .await;
        assert_eq!(body(&invocation), "[2,2,1]");
        assert!(
            index == 0 || !invocation.stats.cold_start,
            "later requests must reuse the warm instance"
        );
    }
}

#[tokio::test]
async fn constants_and_functions_are_per_script() {
    let first = script("const SECRET = \"alpha\";\nfn tell() { global::SECRET }\ntell()");
    let second = script(
        "if is_def_fn(\"tell\", 0) { tell() } else if is_def_var(\"SECRET\") { SECRET } else { \"clean\" }",
    );
    assert_eq!(body(&executor().invoke(&first, get("/")).await), "alpha");
    for _ in 0..3 {
        assert_eq!(body(&executor().invoke(&second, get("/")).await), "clean");
    }
}

/// `request` is built only for scripts that may read it
/// (`may_read_request`); every way of reading it must still see it.
#[tokio::test]
async fn every_way_of_naming_request_sees_it() {
    let cases = [
        ("request.query.name", "pi"),
        ("let r = || request.query.name; r.call()", "pi"),
        (r#"eval("req" + "uest.query.name")"#, "pi"),
        (
            r#"if is_def_var("req" + "uest") { "defined" } else { "missing" }"#,
            "defined",
        ),
    ];
    for (source, expected) in cases {
        let version = script(source);
        assert!(version.reads_request(), "{source}");
        let invocation = executor().invoke(&version, with_query("name", "pi")).await;
        assert_eq!(body(&invocation), expected, "{source}");
    }
}

/// A script that names some parts of `request` gets those keys of the map;
/// any other use of it gets every key (`request_fields`).
#[tokio::test]
async fn a_script_sees_the_parts_of_request_it_names() {
    let mut request = with_query("name", "pi");
    request.method = "POST".into();
    request.headers = vec![("x-token".into(), "t".into())];
    request.body = b"hello".to_vec();
    let cases = [
        (
            "`${request.method} ${request.body} ${request.query.name}`",
            "POST hello pi",
        ),
        (r#"request.header("X-Token") + request.body.len()"#, "t5"),
        (r#"request.query("name", "none")"#, "pi"),
        ("request.keys().len()", "7"),
        ("let r = request; r.headers[\"x-token\"]", "t"),
    ];
    for (source, expected) in cases {
        let invocation = executor().invoke(&script(source), request.clone()).await;
        assert_eq!(body(&invocation), expected, "{source}");
    }
}

#[tokio::test]
async fn a_script_that_never_names_request_runs_without_it() {
    let version = script("let answer = 6 * 7;\nanswer");
    assert!(!version.reads_request());
    for _ in 0..2 {
        let invocation = executor().invoke(&version, with_query("name", "pi")).await;
        assert_eq!(body(&invocation), "42");
    }
}
