//! Limits are per invocation: each request gets its full budget again.

use picloud_executor_core::{InvocationLimits, InvokeError};

use crate::{body, executor, get, script};

const WORK: &str = "let total = 0;\nfor i in 0..20000 { total += i % 7; }\ntotal";

#[tokio::test]
async fn sixty_percent_of_the_fuel_succeeds_every_time() {
    // Measure what the script costs, then give it 1/0.6 of that.
    let measured = executor().invoke(&script(WORK), get("/")).await;
    assert!(measured.result.is_ok());
    let used = measured.stats.fuel_used;
    assert!(
        used > 100_000,
        "the work should cost measurable fuel, used {used}"
    );
    let limits = InvocationLimits {
        fuel: used * 10 / 6,
        ..InvocationLimits::default()
    };
    let version = script(WORK).with_limits(limits);
    for call in 0..30 {
        let invocation = executor().invoke(&version, get("/")).await;
        assert_eq!(body(&invocation), "59997", "call {call}");
        let share = invocation.stats.fuel_used as f64 / invocation.stats.fuel_limit as f64;
        assert!(share < 0.7, "call {call} used {share:.2} of its fuel");
    }
}

#[tokio::test]
async fn the_same_script_with_half_the_fuel_fails_every_time() {
    let measured = executor().invoke(&script(WORK), get("/")).await;
    let limits = InvocationLimits {
        fuel: measured.stats.fuel_used / 2,
        ..InvocationLimits::default()
    };
    let version = script(WORK).with_limits(limits);
    for _ in 0..3 {
        let invocation = executor().invoke(&version, get("/")).await;
        assert!(matches!(
            invocation.result,
            Err(InvokeError::FuelExhausted { .. })
        ));
    }
}

#[tokio::test]
async fn overrides_are_clamped_to_the_instance_maximum() {
    let asked = InvocationLimits {
        fuel: u64::MAX,
        deadline_ms: u64::MAX,
        memory_bytes: u64::MAX,
        ..InvocationLimits::default()
    };
    let granted = executor().limits_for(&asked);
    let maximum = &executor().config().max_limits;
    assert_eq!(granted.fuel, maximum.fuel);
    assert_eq!(granted.deadline_ms, maximum.deadline_ms);
    assert_eq!(granted.memory_bytes, maximum.memory_bytes);
}

#[tokio::test]
async fn output_is_kept_with_its_level_and_reported_on_errors_too() {
    let invocation = executor()
        .invoke(
            &script("print(\"one\");\ndebug(\"two\");\nthrow \"boom\";"),
            get("/"),
        )
        .await;
    let lines: Vec<_> = invocation
        .output
        .iter()
        .map(|line| (line.level.as_str(), line.text.as_str()))
        .collect();
    assert_eq!(lines[0], ("print", "one"));
    assert_eq!(lines[1].0, "debug");
    assert!(lines[1].1.contains("two"));
    match invocation.result {
        Err(InvokeError::Runtime { message, position }) => {
            assert_eq!(message, "boom");
            assert_eq!(position.map(|p| p.line), Some(3));
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_epoch_ticker_parks_when_nothing_runs() {
    // A private executor: the shared one is kept busy by other tests.
    let directory = crate::test_cache_dir();
    let executor = picloud_executor_core::Executor::new(picloud_executor_core::ExecutorConfig {
        cache_dir: directory,
        pool: picloud_executor_core::PoolConfig {
            max_concurrent_invocations: 2,
            max_warm_instances: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        body(&executor.invoke(&script("1 + 1"), get("/")).await),
        "2"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !executor.is_idle() {
        assert!(
            std::time::Instant::now() < deadline,
            "the ticker never parked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // And it wakes up again for the next invocation, deadlines still work.
    let spin = script("loop {}").with_limits(InvocationLimits {
        fuel: u64::MAX / 4,
        deadline_ms: 100,
        ..InvocationLimits::default()
    });
    let invocation = executor.invoke(&spin, get("/")).await;
    assert!(matches!(
        invocation.result,
        Err(InvokeError::DeadlineExceeded { .. })
    ));
}
