//! Hostile scripts: each ends in its own typed error within its limit, while
//! a normal script in another pool keeps being served.

use std::time::{Duration, Instant};

use picloud_executor_core::{InvocationLimits, InvokeError, OutputKind, ScriptLimit};

use crate::{body, executor, get, script};

/// A hostile script and the error it must end in.
struct Case {
    name: &'static str,
    source: String,
    limits: InvocationLimits,
    expect: fn(&InvokeError) -> bool,
}

fn cases() -> Vec<Case> {
    let default = InvocationLimits::default();
    let nested = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
    vec![
        Case {
            name: "loop {}",
            source: "loop {}".into(),
            limits: default,
            expect: |error| matches!(error, InvokeError::FuelExhausted { .. }),
        },
        Case {
            name: "while true {}",
            source: "while true {}".into(),
            limits: default,
            expect: |error| matches!(error, InvokeError::FuelExhausted { .. }),
        },
        Case {
            name: "a CPU loop past a short deadline",
            source: "let x = 0; loop { x += 1; }".into(),
            limits: InvocationLimits {
                fuel: u64::MAX / 4,
                deadline_ms: 200,
                ..default
            },
            expect: |error| matches!(error, InvokeError::DeadlineExceeded { .. }),
        },
        Case {
            name: "unbounded recursion",
            source: "fn down(n) { down(n + 1) }\ndown(0)".into(),
            limits: default,
            expect: |error| {
                matches!(
                    error,
                    InvokeError::ScriptLimit {
                        limit: ScriptLimit::CallDepth,
                        position: Some(_),
                        ..
                    }
                )
            },
        },
        Case {
            name: "doubling a string forever",
            source: "let s = \"x\";\nloop { s += s; }".into(),
            limits: default,
            expect: |error| {
                matches!(
                    error,
                    InvokeError::ScriptLimit {
                        limit: ScriptLimit::DataSize,
                        ..
                    }
                )
            },
        },
        Case {
            name: "allocating a huge array",
            source: "let a = [];\na.pad(1_000_000_000, 0);\na.len()".into(),
            limits: default,
            expect: |error| {
                matches!(
                    error,
                    InvokeError::ScriptLimit {
                        limit: ScriptLimit::DataSize,
                        ..
                    }
                )
            },
        },
        Case {
            name: "filling memory with strings",
            source:
                "let keep = [];\nlet s = \"\";\ns.pad(500000, 'x');\nloop { keep.push(s + \"!\"); }"
                    .into(),
            // Rhai's size limits raised so that the memory limit is what stops it.
            limits: InvocationLimits {
                memory_bytes: 8 << 20,
                rhai: picloud_executor_core::RhaiLimits {
                    max_string_size: 1 << 30,
                    ..default.rhai
                },
                ..default
            },
            expect: |error| matches!(error, InvokeError::MemoryLimitExceeded { .. }),
        },
        Case {
            name: "deeply nested expressions",
            source: nested,
            limits: default,
            expect: |error| matches!(error, InvokeError::Compile(_)),
        },
        Case {
            name: "a 10 MB result",
            source: "let s = \"x\";\nfor i in 0..20 { s += s; }\n[s, s, s, s, s, s, s, s, s, s]"
                .into(),
            // Rhai's string limit raised so that the response limit is what stops it.
            limits: InvocationLimits {
                rhai: picloud_executor_core::RhaiLimits {
                    max_string_size: 1 << 30,
                    ..default.rhai
                },
                ..default
            },
            expect: |error| {
                matches!(
                    error,
                    InvokeError::OutputLimitExceeded {
                        kind: OutputKind::Response,
                        ..
                    }
                )
            },
        },
        Case {
            name: "print in a tight loop",
            source: "loop { print(\"spam spam spam\"); }".into(),
            limits: default,
            expect: |error| {
                matches!(
                    error,
                    InvokeError::OutputLimitExceeded {
                        kind: OutputKind::Log,
                        ..
                    }
                )
            },
        },
        Case {
            name: "a syntax error",
            source: "let x = ;".into(),
            limits: default,
            expect: |error| matches!(error, InvokeError::Compile(e) if e.position.is_some_and(|p| p.line == 1 && p.column > 0)),
        },
        Case {
            name: "a runtime type error",
            source: "let a = 42;\nlet b = a.len();\nb".into(),
            limits: default,
            expect: |error| matches!(error, InvokeError::Runtime { position: Some(p), .. } if p.line == 2),
        },
    ]
}

async fn run_case(case: &Case) -> (InvokeError, Duration) {
    let version = script(&case.source).with_limits(case.limits);
    let started = Instant::now();
    let invocation = executor().invoke(&version, get("/")).await;
    let error = invocation
        .result
        .expect_err(&format!("{}: expected an error, got a response", case.name));
    (error, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_script_ends_in_its_own_error() {
    for case in cases() {
        let (error, elapsed) = run_case(&case).await;
        assert!(
            (case.expect)(&error),
            "{}: unexpected error {error:?}",
            case.name
        );
        // Every case is stopped by a limit well before a human would notice;
        // this is a sanity bound, not a benchmark.
        assert!(
            elapsed < Duration::from_secs(20),
            "{} took {elapsed:?}",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_script_keeps_being_served_meanwhile() {
    let normal = script(r#"let n = parse_int(request.query.n); `ok ${n * 2}`"#);
    let hostile = tokio::spawn(async {
        let runs: Vec<_> = cases()
            .into_iter()
            .map(|case| tokio::spawn(async move { run_case(&case).await }))
            .collect();
        let mut results = Vec::new();
        for run in runs {
            results.push(run.await.unwrap());
        }
        results
    });
    let mut served = 0;
    while !hostile.is_finished() {
        let mut request = get("/");
        request.query = vec![("n".into(), served.to_string())];
        let invocation = executor().invoke(&normal, request).await;
        assert_eq!(body(&invocation), format!("ok {}", served * 2));
        served += 1;
        tokio::task::yield_now().await;
    }
    let results = hostile.await.unwrap();
    assert_eq!(results.len(), cases().len());
    assert!(
        served > 10,
        "the normal script was served only {served} times"
    );
}

#[tokio::test]
async fn a_trapped_instance_is_discarded_not_reused() {
    let version = script("if request.query.spin == \"yes\" { loop {} }\n\"fine\"");
    let mut spin = get("/");
    spin.query = vec![("spin".into(), "yes".into())];
    let before = executor().stats().instances_discarded;
    let failed = executor().invoke(&version, spin).await;
    assert!(matches!(
        failed.result,
        Err(InvokeError::FuelExhausted { .. })
    ));
    assert!(executor().stats().instances_discarded > before);
    let next = executor().invoke(&version, get("/")).await;
    assert_eq!(body(&next), "fine");
    assert!(
        next.stats.cold_start,
        "the next request must get a fresh instance"
    );
}
