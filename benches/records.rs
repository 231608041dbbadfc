//! Writing invocation records: what one batch of 1,000 records costs the
//! store, on the embedded SQLite backend (a file in a temporary directory,
//! with the server's settings: WAL, `synchronous = FULL`).
//!
//! Every request that reaches a script leaves a record, so under load this
//! write runs tens of thousands of times a second beside the requests
//! themselves; `benches/http-load.sh` measures the whole server, this the
//! store's share alone. Run with `cargo bench -p picloud-benches --bench
//! records`; figures in docs/benchmarks.md.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use picloud_manager_core::{
    AppId, NewInvocation, OutputLine, ScriptId, Store, Timestamp, VersionId,
};

const BATCH: usize = 1_000;

/// A batch like the ones a hello-world endpoint under load produces: no
/// output, status 200, time-ordered request ids; every tenth record printed
/// a line, as a script that logs a little would.
fn batch(app_id: AppId, first: u64) -> Vec<NewInvocation> {
    (first..first + BATCH as u64)
        .map(|n| NewInvocation {
            app_id,
            script_id: ScriptId(1),
            script_name: "hello".to_owned(),
            version_id: VersionId(1),
            trigger: "http".to_owned(),
            status: 200,
            error_code: None,
            error_message: None,
            request_id: format!("{n:032x}"),
            started_at: Timestamp::now(),
            duration_us: 40,
            fuel_used: 1_200,
            fuel_limit: 10_000_000,
            memory_bytes: 1 << 20,
            memory_limit_bytes: 16 << 20,
            cold_start: false,
            output: if n % 10 == 0 {
                vec![OutputLine {
                    level: "print".to_owned(),
                    text: format!("served request {n}"),
                }]
            } else {
                Vec::new()
            },
            output_truncated: false,
        })
        .collect()
}

fn records(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let directory = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", directory.path().join("bench.db").display());
    let (store, app_id) = runtime.block_on(async {
        let store = Store::connect(&url).await.expect("the SQLite store opens");
        store.migrate().await.expect("migrations run");
        let app = store.create_app("bench", "Bench").await.expect("an app");
        (store, app.id)
    });

    let mut group = c.benchmark_group("records");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut next = 0;
    group.bench_function("sqlite_insert_batch_of_1000", |b| {
        b.iter_batched(
            || {
                next += BATCH as u64;
                batch(app_id, next)
            },
            |batch| {
                let stored = runtime
                    .block_on(store.insert_invocations(batch))
                    .expect("the batch is stored");
                assert_eq!(stored.len(), BATCH);
                stored
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
    runtime.block_on(store.close());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = records
}
criterion_main!(benches);
