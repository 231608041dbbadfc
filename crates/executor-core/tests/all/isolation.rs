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
