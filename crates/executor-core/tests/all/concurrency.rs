//! Many concurrent invocations of several scripts return correct, unmixed
//! results.

use crate::{executor, get, script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_are_not_mixed_up() {
    let scripts = [
        script(r#"`a:${request.query.n}`"#),
        script(r#"let n = parse_int(request.query.n); `b:${n * n}`"#),
        script(
            r#"let n = parse_int(request.query.n); let s = 0; for i in 0..n { s += i; } `c:${s}`"#,
        ),
    ];
    let expected = |which: usize, n: i64| match which {
        0 => format!("a:{n}"),
        1 => format!("b:{}", n * n),
        _ => format!("c:{}", (0..n).sum::<i64>()),
    };
    let mut tasks = Vec::new();
    for n in 0..300i64 {
        let which = (n % 3) as usize;
        let version = scripts[which].clone();
        tasks.push(tokio::spawn(async move {
            let mut request = get("/");
            request.query = vec![("n".into(), n.to_string())];
            let invocation = executor().invoke(&version, request).await;
            (which, n, invocation)
        }));
    }
    for task in tasks {
        let (which, n, invocation) = task.await.unwrap();
        let response = invocation.result.expect("every invocation succeeds");
        assert_eq!(
            String::from_utf8(response.body).unwrap(),
            expected(which, n)
        );
    }
    let stats = executor().stats();
    assert!(
        stats.warm_starts > 0,
        "warm instances should have been reused: {stats:?}"
    );
}
