//! Warm pools: instances are reused per version, retired versions give up
//! their instances, and caps bound how many are kept.

use picloud_executor_core::{Executor, ExecutorConfig, InvocationLimits, InvokeError, PoolConfig};

use crate::{body, get, script, test_cache_dir};

fn small_executor(max_warm_per_script: u32) -> Executor {
    Executor::new(ExecutorConfig {
        cache_dir: test_cache_dir(),
        pool: PoolConfig {
            max_concurrent_invocations: 4,
            max_warm_instances: 3,
            max_warm_per_script,
            ..PoolConfig::default()
        },
        ..ExecutorConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn prepare_leaves_a_warm_instance_and_retire_drops_it() {
    let executor = small_executor(2);
    let version = script("\"v1\"");
    executor.prepare(&version).await.unwrap();
    assert_eq!(executor.stats().warm_instances, 1);
    let first = executor.invoke(&version, get("/")).await;
    assert_eq!(body(&first), "v1");
    assert!(
        !first.stats.cold_start,
        "prepare should have left a warm instance"
    );

    executor.retire(version.version_id);
    assert_eq!(executor.stats().warm_instances, 0);
    // A retired version can still be invoked (a request that raced the
    // deploy), but its instance is not kept afterwards.
    let late = executor.invoke(&version, get("/")).await;
    assert_eq!(body(&late), "v1");
    assert_eq!(executor.stats().warm_instances, 0);

    // A rollback prepares the old version again: it is pooled once more.
    executor.prepare(&version).await.unwrap();
    assert_eq!(executor.stats().warm_instances, 1);
    let again = executor.invoke(&version, get("/")).await;
    assert!(!again.stats.cold_start);
    assert_eq!(executor.stats().warm_instances, 1);
}

#[tokio::test]
async fn an_instance_in_flight_during_retirement_is_dropped_afterwards() {
    let executor = small_executor(2);
    let slow = script("let x = 0; for i in 0..50000 { x += i; } x");
    let in_flight = {
        let executor = executor.clone();
        let slow = slow.clone();
        tokio::spawn(async move { executor.invoke(&slow, get("/")).await })
    };
    // Retire once the invocation has started (or, on a slow machine, even
    // after it finished): either way its instance must not be kept.
    while executor.stats().active_invocations == 0 && !in_flight.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    executor.retire(slow.version_id);
    let finished = in_flight.await.unwrap();
    assert_eq!(body(&finished), "1249975000");
    assert_eq!(executor.stats().warm_instances, 0);
}

#[tokio::test]
async fn caps_bound_the_warm_instances() {
    let executor = small_executor(1);
    for _ in 0..5 {
        let version = script("1");
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let executor = executor.clone();
                let version = version.clone();
                tokio::spawn(async move { executor.invoke(&version, get("/")).await })
            })
            .collect();
        for handle in handles {
            assert!(handle.await.unwrap().result.is_ok());
        }
    }
    let stats = executor.stats();
    assert!(stats.warm_instances <= 3, "global cap exceeded: {stats:?}");
    assert!(
        stats.instances_evicted > 0,
        "something must have been turned away: {stats:?}"
    );
}

#[tokio::test]
async fn idle_instances_and_unused_pools_are_reaped() {
    let executor = executor_with_a_one_second_idle_timeout();
    let version = script("\"reaped\"");
    let first = executor.invoke(&version, get("/")).await;
    assert_eq!(body(&first), "reaped");
    assert_eq!(executor.stats().warm_instances, 1);
    assert_eq!(executor.stats().script_pools, 1);

    // The reaper runs every second; the instance and then its pool expire
    // one idle timeout after the last request.
    wait_until_no_pool_is_left(&executor).await;
    let stats = executor.stats();
    assert_eq!(stats.warm_instances, 0, "{stats:?}");
    assert_eq!(stats.instances_evicted, 1, "{stats:?}");

    // The version is served again from a fresh pool, with a cold start.
    let again = executor.invoke(&version, get("/")).await;
    assert_eq!(body(&again), "reaped");
    assert!(again.stats.cold_start);
    assert_eq!(executor.stats().script_pools, 1);
}

#[tokio::test]
async fn the_pool_of_a_script_that_always_traps_is_reaped() {
    let executor = executor_with_a_one_second_idle_timeout();
    // Every run exhausts its fuel, so no instance ever goes back to the
    // pool: only the pool itself is left for the reaper.
    let version = script("loop {}").with_limits(InvocationLimits {
        fuel: 1_000_000,
        ..InvocationLimits::default()
    });
    let invocation = executor.invoke(&version, get("/")).await;
    assert!(
        matches!(invocation.result, Err(InvokeError::FuelExhausted { .. })),
        "{:?}",
        invocation.result
    );
    let stats = executor.stats();
    assert_eq!(
        (stats.warm_instances, stats.script_pools),
        (0, 1),
        "{stats:?}"
    );

    wait_until_no_pool_is_left(&executor).await;
    assert_eq!(executor.stats().instances_discarded, 1);
}

fn executor_with_a_one_second_idle_timeout() -> Executor {
    Executor::new(ExecutorConfig {
        cache_dir: test_cache_dir(),
        pool: PoolConfig {
            idle_timeout_secs: 1,
            ..PoolConfig::default()
        },
        ..ExecutorConfig::default()
    })
    .unwrap()
}

/// Waits for the reaper (which runs every second) to drop every pool.
async fn wait_until_no_pool_is_left(executor: &Executor) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while executor.stats().script_pools > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "pool not reaped: {:?}",
            executor.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
