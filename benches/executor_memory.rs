//! Resident memory of warm instances: per hello-world instance, and for 1,000
//! deployed scripts under the default pool caps. Prints its figures; run
//! with `cargo bench -p picloud-benches --bench executor_memory`.

use picloud_benches::{SCRIPTS, resident_bytes, sample_request};
use picloud_executor_core::{Executor, ExecutorConfig, PoolConfig, ScriptVersion};

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    // Criterion passes `--bench`; this harness ignores its arguments.
    let cache_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let before_start = resident_bytes();
    let executor = Executor::new(ExecutorConfig {
        cache_dir: cache_dir.clone(),
        ..ExecutorConfig::default()
    })
    .unwrap();
    let after_start = resident_bytes();
    println!(
        "executor started ({:?}, guest {:?}): resident {:.1} MiB (+{:.1} MiB)",
        executor.allocation(),
        executor.guest_origin(),
        after_start as f64 / MIB,
        (after_start - before_start) as f64 / MIB
    );

    // Per warm instance: 200 distinct hello-world versions, one warm instance each.
    let request = sample_request();
    let count = 200u64;
    let baseline = resident_bytes();
    for id in 0..count {
        let version = ScriptVersion::new(id + 1, "hello", SCRIPTS[0].1);
        runtime
            .block_on(executor.invoke(&version, request.clone()))
            .result
            .unwrap();
    }
    let per_instance = (resident_bytes() - baseline) / count;
    println!(
        "warm hello-world instances: {} warm, {:.0} KiB resident each",
        executor.stats().warm_instances,
        per_instance as f64 / 1024.0
    );
    drop(executor);

    // 1,000 deployed scripts with the default caps: memory is bounded by the
    // caps (256 warm instances), not by the number of scripts.
    let executor = Executor::new(ExecutorConfig {
        cache_dir,
        pool: PoolConfig::default(),
        ..ExecutorConfig::default()
    })
    .unwrap();
    let baseline = resident_bytes();
    for id in 0..1_000u64 {
        let (_, source) = SCRIPTS[(id % 2) as usize];
        let version = ScriptVersion::new(10_000 + id, "many", source);
        runtime
            .block_on(executor.invoke(&version, request.clone()))
            .result
            .unwrap();
    }
    let stats = executor.stats();
    println!(
        "1,000 scripts invoked once each: {} warm instances kept, {} evicted, resident +{:.1} MiB (total {:.1} MiB)",
        stats.warm_instances,
        stats.instances_evicted,
        (resident_bytes() - baseline) as f64 / MIB,
        resident_bytes() as f64 / MIB
    );
}
