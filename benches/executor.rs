//! Executor benchmarks: warm invocations against native Rhai, cold starts of
//! new script versions, and engine start with and without the guest cache.
//! Run with `cargo bench -p picloud-benches --bench executor`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use picloud_benches::{
    JSON_ORDER_SCRIPT, NativeReference, SCRIPTS, json_order_request, sample_request,
};
use picloud_executor_core::{Executor, ExecutorConfig, ScriptVersion};

fn bench_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache")
}

fn executor() -> Executor {
    Executor::new(ExecutorConfig {
        cache_dir: bench_dir(),
        ..ExecutorConfig::default()
    })
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Warm invocation (checkout, call, return) against native Rhai doing the
/// same work, with production limits on (fuel, deadline, memory).
fn warm(c: &mut Criterion) {
    let executor = executor();
    let runtime = runtime();
    let request = sample_request();
    let mut group = c.benchmark_group("warm");
    for (index, (name, source)) in SCRIPTS.iter().enumerate() {
        let version = ScriptVersion::new(index as u64 + 1, name, source);
        let first = runtime.block_on(executor.invoke(&version, request.clone()));
        let guest_body = first.result.expect("benchmark script runs").body;
        let native = NativeReference::new(source);
        let native_grain = NativeReference::grain(source);
        assert_eq!(
            native.handle(&request),
            guest_body,
            "{name}: guest and native disagree"
        );
        assert_eq!(
            native_grain.handle(&request),
            guest_body,
            "{name}: guest and native Rhai Grain disagree"
        );
        group.bench_function(format!("{name}/guest"), |b| {
            b.iter_custom(|iterations| {
                time_invocations(&runtime, &executor, &version, &request, iterations)
            })
        });
        group.bench_function(format!("{name}/native"), |b| {
            b.iter(|| native.handle(&request))
        });
        group.bench_function(format!("{name}/native_grain"), |b| {
            b.iter(|| native_grain.handle(&request))
        });
    }
    group.finish();
}

/// Warm invocation of the HTTP benchmark's JSON endpoint (a 1 KB POST body
/// parsed with `json_parse`), guest only: native Rhai has no `json_parse`.
/// The figure to compare with the guest's share of a JSON request in
/// `benches/http-load.sh`.
fn warm_json(c: &mut Criterion) {
    let executor = executor();
    let runtime = runtime();
    let request = json_order_request();
    assert_eq!(request.body.len(), 1024);
    let version = ScriptVersion::new(1, "order", JSON_ORDER_SCRIPT);
    let first = runtime.block_on(executor.invoke(&version, request.clone()));
    let body = first.result.expect("the JSON script runs").body;
    assert_eq!(body, br#"{"city":"London","items":6,"ok":true}"#);
    c.bench_function("warm/json_order/guest", |b| {
        b.iter_custom(|iterations| {
            time_invocations(&runtime, &executor, &version, &request, iterations)
        })
    });
}

/// The time `iterations` warm invocations of `version` take, as a server's
/// worker runs them: inside a running runtime, each on its own copy of
/// `request`. The copies are made untimed, a chunk at a time, like the
/// native line's, which borrows the request; the responses are dropped
/// within the time, as the native line's are.
fn time_invocations(
    runtime: &tokio::runtime::Runtime,
    executor: &Executor,
    version: &ScriptVersion,
    request: &picloud_executor_core::Request,
    iterations: u64,
) -> Duration {
    const CHUNK: u64 = 1024;
    let mut total = Duration::ZERO;
    let mut left = iterations;
    while left > 0 {
        let chunk = left.min(CHUNK);
        let requests: Vec<_> = (0..chunk).map(|_| request.clone()).collect();
        total += runtime.block_on(async {
            let started = Instant::now();
            for request in requests {
                std::hint::black_box(executor.invoke(version, request).await);
            }
            started.elapsed()
        });
        left -= chunk;
    }
    total
}

/// Cold start of a new script version: a fresh instance from the pool, the
/// script compiled into it, one request answered.
fn cold(c: &mut Criterion) {
    let executor = executor();
    let runtime = runtime();
    let request = sample_request();
    let next_version = AtomicU64::new(1_000_000);
    c.bench_function("cold_start/hello", |b| {
        b.iter(|| {
            let id = next_version.fetch_add(1, Ordering::Relaxed);
            let version = ScriptVersion::new(id, "cold", SCRIPTS[0].1);
            let invocation = runtime.block_on(executor.invoke(&version, request.clone()));
            assert!(invocation.stats.cold_start);
            executor.retire(id);
        })
    });
}

/// Engine start: with a valid on-disk cache (memory-mapped) and without
/// (pre-initialise and compile the guest).
fn start(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_start");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let cached = tempfile::tempdir().unwrap();
    drop(
        Executor::new(ExecutorConfig {
            cache_dir: cached.path().into(),
            ..ExecutorConfig::default()
        })
        .unwrap(),
    );
    group.bench_function("cached", |b| {
        b.iter(|| {
            Executor::new(ExecutorConfig {
                cache_dir: cached.path().into(),
                ..ExecutorConfig::default()
            })
            .unwrap()
        })
    });
    group.bench_function("uncached", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let empty = tempfile::tempdir().unwrap();
                let started = Instant::now();
                let executor = Executor::new(ExecutorConfig {
                    cache_dir: empty.path().into(),
                    ..ExecutorConfig::default()
                })
                .unwrap();
                total += started.elapsed();
                drop(executor);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, warm, warm_json, cold, start);
criterion_main!(benches);
