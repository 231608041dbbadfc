//! All of the wasmtime engine's configuration, in one place, and the epoch
//! ticker that enforces deadlines.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::config::{AllocationStrategy, ExecutorConfig};
use crate::error::StartError;

/// How the running engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// The pooling allocator with this many instance slots.
    Pooling {
        /// Instance slots reserved up front.
        slots: u32,
    },
    /// On-demand allocation.
    OnDemand,
}

/// Settings common to both allocation strategies. They change the generated
/// code, so they are part of the guest cache key (through wasmtime's
/// compatibility hash).
fn base_config(config: &ExecutorConfig) -> Config {
    let engine = &config.engine;
    let mut wasm = Config::new();
    wasm.consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        .max_wasm_stack(engine.max_wasm_stack_bytes as usize)
        // The async stack must hold the wasm stack plus the host frames.
        .async_stack_size(engine.max_wasm_stack_bytes as usize + 256 * 1024)
        .memory_reservation(engine.memory_reservation_bytes)
        .memory_guard_size(engine.memory_guard_bytes)
        .memory_reservation_for_growth(0)
        .memory_init_cow(true)
        // The guest uses none of these; turning them off keeps the surface
        // small and the pool slots small.
        .wasm_threads(false)
        .wasm_reference_types(true)
        .wasm_multi_memory(false);
    wasm
}

/// Instance slots the pool needs: every invocation that may run, every warm
/// instance that may wait, and a little room for compile checks.
pub(crate) fn pool_slots(config: &ExecutorConfig) -> u32 {
    config.pool.max_concurrent_invocations + config.pool.max_warm_instances + 4
}

fn pooling_config(config: &ExecutorConfig) -> PoolingAllocationConfig {
    let slots = pool_slots(config);
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        // A store keeps its async fiber stack for reuse, so a warm instance
        // holds one stack slot: size the stacks like the instances.
        .total_stacks(slots)
        .total_component_instances(0)
        .total_gc_heaps(0)
        .max_memory_size(config.engine.memory_reservation_bytes as usize)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .table_elements(20_000)
        .max_core_instance_size(1 << 20)
        // Keep the first pages of a reused slot resident and reset them with
        // memset: cheaper than madvise + page faults for small scripts.
        .linear_memory_keep_resident(128 * 1024)
        .table_keep_resident(64 * 1024)
        .max_unused_warm_slots(config.pool.max_concurrent_invocations.min(64));
    pooling
}

/// An engine that only compiles: the same code generation as [`build`]'s
/// (so the same compatibility hash), without an instance pool. The guest is
/// compiled with it and then it is dropped, and with it the compiler's
/// reusable contexts, which would otherwise keep megabytes for the
/// process's lifetime.
pub(crate) fn build_compiler(config: &ExecutorConfig) -> Result<Engine, StartError> {
    let mut wasm = base_config(config);
    wasm.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    Engine::new(&wasm).map_err(|error| StartError::Engine(format!("{error:?}")))
}

/// Builds the engine, probing the pooling allocator first when allowed.
pub(crate) fn build(config: &ExecutorConfig) -> Result<(Engine, Allocation), StartError> {
    let engine_config = &config.engine;
    if engine_config.memory_reservation_bytes < config.max_limits.memory_bytes {
        return Err(StartError::Config(format!(
            "engine.memory_reservation_bytes ({}) is smaller than max_limits.memory_bytes ({})",
            engine_config.memory_reservation_bytes, config.max_limits.memory_bytes
        )));
    }
    if engine_config.epoch_tick_ms == 0 {
        return Err(StartError::Config(
            "engine.epoch_tick_ms must be at least 1".into(),
        ));
    }
    if matches!(
        engine_config.allocation,
        AllocationStrategy::Auto | AllocationStrategy::Pooling
    ) {
        let mut wasm = base_config(config);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(config)));
        match Engine::new(&wasm) {
            Ok(engine) => {
                return Ok((
                    engine,
                    Allocation::Pooling {
                        slots: pool_slots(config),
                    },
                ));
            }
            Err(error) if engine_config.allocation == AllocationStrategy::Auto => {
                let reserved = u64::from(pool_slots(config))
                    * (engine_config.memory_reservation_bytes + engine_config.memory_guard_bytes);
                tracing::warn!(
                    %error,
                    slots = pool_slots(config),
                    reserved_gib = reserved as f64 / (1u64 << 30) as f64,
                    "the pooling allocator could not reserve its address space; \
                     falling back to on-demand allocation (lower pool.max_warm_instances \
                     or engine.memory_reservation_bytes to use pooling)"
                );
            }
            Err(error) => return Err(StartError::Engine(format!("{error:?}"))),
        }
    }
    let mut wasm = base_config(config);
    wasm.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine = Engine::new(&wasm).map_err(|error| StartError::Engine(format!("{error:?}")))?;
    Ok((engine, Allocation::OnDemand))
}

/// Advances the engine's epoch while invocations run.
///
/// PiCloud promises no CPU use at rest: once no invocation has been active
/// for [`LINGER_TICKS`] ticks, the ticker thread parks on a condition variable
/// and wakes for nothing. The active count is an atomic so that, under steady
/// traffic, entering and leaving an invocation costs no lock and no syscall.
pub(crate) struct EpochTicker {
    shared: Arc<TickerShared>,
    tick: Duration,
}

/// Ticks the ticker keeps running after the last invocation ends, so that
/// back-to-back requests do not park and wake the thread every time.
const LINGER_TICKS: u32 = 100;

struct TickerShared {
    active: AtomicUsize,
    parked: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl EpochTicker {
    pub fn start(engine: Engine, tick: Duration) -> EpochTicker {
        let shared = Arc::new(TickerShared {
            active: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("picloud-epoch".into())
            .spawn(move || {
                let shared = thread_shared;
                let mut idle_ticks = LINGER_TICKS;
                loop {
                    if shared.shutdown.load(Ordering::SeqCst) {
                        return;
                    }
                    if shared.active.load(Ordering::SeqCst) > 0 {
                        idle_ticks = 0;
                    } else if idle_ticks >= LINGER_TICKS {
                        let mut guard = shared.lock.lock().unwrap();
                        shared.parked.store(true, Ordering::SeqCst);
                        // Re-check under the lock: `enter` takes it before
                        // notifying, so a wake-up cannot be lost.
                        while shared.active.load(Ordering::SeqCst) == 0
                            && !shared.shutdown.load(Ordering::SeqCst)
                        {
                            guard = shared.wake.wait(guard).unwrap();
                        }
                        shared.parked.store(false, Ordering::SeqCst);
                        drop(guard);
                        idle_ticks = 0;
                        continue;
                    } else {
                        idle_ticks += 1;
                    }
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("cannot start the epoch ticker thread");
        EpochTicker { shared, tick }
    }

    /// Ticks needed to cover `deadline`, rounded up, plus one because the
    /// first tick may come at any point within its period.
    pub fn ticks_for(&self, deadline: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        (deadline.as_nanos().div_ceil(tick) as u64).saturating_add(1)
    }

    /// Marks an invocation as running until the guard is dropped.
    pub fn enter(&self) -> ActiveInvocation {
        self.shared.active.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            let _guard = self.shared.lock.lock().unwrap();
            self.shared.wake.notify_one();
        }
        ActiveInvocation {
            shared: self.shared.clone(),
        }
    }

    /// Whether the ticker thread is parked (used by tests of idle behaviour).
    pub fn is_parked(&self) -> bool {
        self.shared.parked.load(Ordering::SeqCst)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _guard = self.shared.lock.lock().unwrap();
        self.shared.wake.notify_one();
    }
}

/// Keeps the epoch ticker running while alive.
pub(crate) struct ActiveInvocation {
    shared: Arc<TickerShared>,
}

impl Drop for ActiveInvocation {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}
