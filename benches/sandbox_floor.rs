//! The floor under every warm invocation: what wasmtime itself charges to
//! enter and leave a sandbox, with nothing of PiCloud's and no script.
//! Run with `cargo bench -p picloud-benches --bench sandbox_floor`.
//!
//! A warm store of a one-function module (`() -> i32`, returns 0) on an
//! engine set up like the executor's (fuel with its async yield interval,
//! epoch interruption, the pooling allocator), called the way the executor calls the guest: fuel and the
//! epoch deadline set, then `call_async` from inside a current-thread tokio
//! runtime, back to back in chunks of 1,024. `call` is the synchronous call,
//! for comparison, on a store without the yield interval (which only an
//! async call accepts). Neither decodes a request, runs Rhai or
//! encodes a response, so whatever an invocation adds comes on top of these
//! figures (docs/benchmarks.md compares them with the 3× target of hello
//! world).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Store, TypedFunc,
};

/// `(module (func (export "f") (result i32) i32.const 0))`, encoded by hand:
/// the workspace builds wasmtime without its text-format parser.
const MODULE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // types: () -> i32
    0x03, 0x02, 0x01, 0x00, // functions: one, of type 0
    0x07, 0x05, 0x01, 0x01, b'f', 0x00, 0x00, // exports: "f" = function 0
    0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x00, 0x0b, // code: i32.const 0, end
];

/// The executor's production settings that change the cost of a call
/// (`crates/executor-core/src/engine.rs`, `base_config`), with a small pool.
fn engine() -> Engine {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_core_instances(4)
        .total_memories(4)
        .total_tables(4)
        .total_stacks(4)
        .max_memory_size(1 << 20);
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 * 1024)
        .async_stack_size(512 * 1024 + 256 * 1024)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).expect("the engine starts")
}

const FUEL: u64 = 200_000_000;

/// A warm store of [`MODULE`] and its function. `fuel_yield_interval` is
/// the executor's (`WarmInstance::create`, the default
/// `engine.fuel_yield_interval`) for the async call: fuel is handed out in
/// slices and the call yields to the runtime between them. With `None` the
/// store is set up for the synchronous call, which refuses a store with an
/// interval or one instantiated asynchronously.
fn warm_store(
    engine: &Engine,
    runtime: &tokio::runtime::Runtime,
    fuel_yield_interval: Option<u64>,
) -> (Store<()>, TypedFunc<(), i32>) {
    let module = Module::new(engine, MODULE).expect("the module compiles");
    let mut store = Store::new(engine, ());
    store.set_fuel(FUEL).unwrap();
    store.set_epoch_deadline(1_000);
    // Setting the interval, even to none, or instantiating asynchronously
    // makes a store take only async calls.
    let instance = match fuel_yield_interval {
        Some(interval) => {
            store.fuel_async_yield_interval(Some(interval)).unwrap();
            runtime
                .block_on(wasmtime::Instance::new_async(&mut store, &module, &[]))
                .expect("the module instantiates")
        }
        None => wasmtime::Instance::new(&mut store, &module, &[]).expect("the module instantiates"),
    };
    let function = instance.get_typed_func(&mut store, "f").unwrap();
    (store, function)
}

fn floor(c: &mut Criterion) {
    let engine = engine();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut store, function) = warm_store(&engine, &runtime, Some(1_000_000));
    assert_eq!(
        runtime
            .block_on(function.call_async(&mut store, ()))
            .unwrap(),
        0
    );
    let (mut sync_store, sync_function) = warm_store(&engine, &runtime, None);
    assert_eq!(sync_function.call(&mut sync_store, ()).unwrap(), 0);

    let mut group = c.benchmark_group("floor");
    group.bench_function("call_async", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            let mut left = iterations;
            while left > 0 {
                let chunk = left.min(1024);
                total += runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..chunk {
                        store.set_fuel(FUEL).unwrap();
                        store.set_epoch_deadline(1_000);
                        std::hint::black_box(function.call_async(&mut store, ()).await.unwrap());
                    }
                    started.elapsed()
                });
                left -= chunk;
            }
            total
        })
    });
    group.bench_function("call", |b| {
        b.iter(|| {
            sync_store.set_fuel(FUEL).unwrap();
            sync_store.set_epoch_deadline(1_000);
            std::hint::black_box(sync_function.call(&mut sync_store, ()).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, floor);
criterion_main!(benches);
