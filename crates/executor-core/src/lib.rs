//! PiCloud's executor: runs Rhai scripts inside a WebAssembly sandbox.
//!
//! # Concepts
//! - **The guest** is the Rhai interpreter compiled to WebAssembly (`guest/`,
//!   built by this crate's build script). It is pre-initialised once with
//!   Wizer so that an instance starts with its Rhai engine ready, compiled by
//!   wasmtime, and cached on disk ([`GuestOrigin`]).
//! - **An instance** is one copy of the guest with one [`ScriptVersion`]
//!   loaded. It serves only that version, one request at a time, and is never
//!   given another script.
//! - **Warm pools**: after a request the instance goes back to its version's
//!   pool, unless it trapped, hit a host-enforced limit or grew its memory past
//!   [`PoolConfig::recycle_memory_bytes`]. Idle instances expire.
//! - **Limits** ([`InvocationLimits`]): fuel (deterministic CPU), a wall-clock
//!   deadline (epoch interruption), a memory cap, an output cap, and Rhai's
//!   own limits. Each invocation gets its full budget again.
//!
//! # Invariants
//! - **This crate knows nothing of HTTP or the database.** It takes a
//!   [`Request`] and a [`ScriptVersion`] and returns an [`Invocation`].
//! - **No instance ever serves two script versions.**
//! - **No CPU at rest**: with no invocation running, the epoch ticker thread
//!   is blocked, and the reaper only wakes while warm instances or pools
//!   exist (a pool lasts one idle timeout after its last request).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use picloud_executor_core::{Executor, ExecutorConfig, Request, ScriptVersion};
//! let executor = Executor::new(ExecutorConfig::default())?;
//! let script = ScriptVersion::new(1, "demo/hello@1", r#""Hello, " + request.query.name"#);
//! let request = Request { method: "GET".into(), query: vec![("name".into(), "Pi".into())], ..Default::default() };
//! let invocation = executor.invoke(&script, request).await;
//! assert_eq!(invocation.result?.body, b"Hello, Pi");
//! # Ok(()) }
//! ```

mod config;
mod engine;
mod error;
mod guest;
mod host;
mod instance;
pub mod outbound;
mod services;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use wasmtime::{Engine, InstancePre, Linker};

pub use crate::config::{
    AllocationStrategy, EngineConfig, ExecutorConfig, InvocationLimits, PoolConfig,
};
pub use crate::engine::Allocation;
pub use crate::error::{CompileError, InvokeError, OutputKind, Position, ScriptLimit, StartError};
pub use crate::guest::GuestOrigin;
pub use crate::host::OutputLine;
pub use crate::instance::InvocationStats;
pub use crate::services::{BoxFuture, HostServices, InvocationContext};
pub use picloud_shared::{
    HostCall, HostReply, HttpAnswer, HttpCall, OutputLevel, Request, RequestFields, Response,
    RhaiLimits, may_read_request, request_fields,
};

use crate::engine::EpochTicker;
use crate::host::HostState;
use crate::instance::WarmInstance;

/// One immutable version of a script, as the executor needs it.
#[derive(Debug, Clone)]
pub struct ScriptVersion {
    /// Identifies this version among all versions of all scripts; warm
    /// instances are pooled by it. The control plane's version id.
    pub version_id: u64,
    /// A human-readable name for logs, such as `shop/orders@3`.
    pub label: Arc<str>,
    /// The Rhai source.
    pub source: Arc<str>,
    /// Limits for every invocation of this version.
    pub limits: InvocationLimits,
    /// The parts of `request` the script may read ([`request_fields`]);
    /// with none, requests are not sent into the guest at all.
    request_fields: RequestFields,
}

impl ScriptVersion {
    /// A version with the default limits.
    pub fn new(version_id: u64, label: &str, source: &str) -> ScriptVersion {
        ScriptVersion {
            version_id,
            label: label.into(),
            source: source.into(),
            limits: InvocationLimits::default(),
            request_fields: request_fields(source),
        }
    }

    /// Whether the script may read the `request` constant. The guest
    /// decides the same from the same source, and builds `request` only
    /// then; otherwise the executor does not encode the request at all.
    pub fn reads_request(&self) -> bool {
        !self.request_fields.is_empty()
    }

    /// The parts of the `request` constant the script may read. The guest
    /// builds only these, so a caller may leave the other parts of the
    /// [`Request`] it sends empty.
    pub fn request_fields(&self) -> RequestFields {
        self.request_fields
    }

    /// The same version with other limits.
    pub fn with_limits(mut self, limits: InvocationLimits) -> ScriptVersion {
        self.limits = limits;
        self
    }
}

/// The outcome of one invocation: the response or the error, the script's
/// output (kept in both cases), and what it cost.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The script's response, or why there is none.
    pub result: Result<Response, InvokeError>,
    /// Lines printed with `print` and `debug`.
    pub output: Vec<OutputLine>,
    /// Fuel, memory and time used.
    pub stats: InvocationStats,
}

/// Counters describing the executor, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Idle instances waiting in pools.
    pub warm_instances: u64,
    /// Invocations running now.
    pub active_invocations: u64,
    /// Instances created (cold starts, including deploy-time preparation).
    pub instances_created: u64,
    /// Invocations served by an instance that was already warm.
    pub warm_starts: u64,
    /// Instances dropped after a trap, a host-enforced limit or memory growth.
    pub instances_discarded: u64,
    /// Idle instances dropped because they expired, their version was
    /// retired, or a cap was full.
    pub instances_evicted: u64,
    /// Script versions with a pool (used within the idle timeout).
    pub script_pools: u64,
}

#[derive(Default)]
struct Counters {
    instances_created: AtomicU64,
    warm_starts: AtomicU64,
    instances_discarded: AtomicU64,
    instances_evicted: AtomicU64,
}

/// The idle instances of one script version.
struct ScriptPool {
    idle: Mutex<PoolState>,
    retired: std::sync::atomic::AtomicBool,
}

impl ScriptPool {
    fn new(now: Instant) -> ScriptPool {
        ScriptPool {
            idle: Mutex::new(PoolState {
                instances: Vec::new(),
                last_checkout: now,
            }),
            retired: Default::default(),
        }
    }

    /// Marks the pool as no longer in use and drops its idle instances;
    /// returns how many it dropped.
    fn retire(&self) -> usize {
        self.retired.store(true, Ordering::SeqCst);
        std::mem::take(&mut self.idle.lock().unwrap().instances).len()
    }
}

struct PoolState {
    instances: Vec<WarmInstance>,
    /// When a request last took (or asked for) an instance; a pool with no
    /// idle instance left and no checkout for the idle timeout is dropped.
    last_checkout: Instant,
}

struct Inner {
    config: ExecutorConfig,
    allocation: Allocation,
    origin: GuestOrigin,
    instance_pre: InstancePre<HostState>,
    ticker: EpochTicker,
    /// The pool of each version in use. Read on every invocation, written
    /// only when a version starts or stops being used, so a read lock (one
    /// atomic operation) is all a request pays.
    pools: RwLock<HashMap<u64, Arc<ScriptPool>>>,
    /// Versions retired recently, so that a request that looked up an old
    /// version just before a deploy does not recreate a pool for it.
    retired: Mutex<HashMap<u64, Instant>>,
    /// Entries left in `retired` after its last prune.
    retired_after_prune: AtomicUsize,
    slots: tokio::sync::Semaphore,
    warm_total: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    reaper: Arc<ReaperSignal>,
}

/// Wakes the reaper thread when the first warm instance appears.
struct ReaperSignal {
    /// Whether the reaper has work; it waits on `wake` while not.
    state: Mutex<bool>,
    wake: Condvar,
    /// Cleared by the reaper just before it decides whether to sleep, so
    /// that a returning instance can see without the lock that the reaper
    /// is awake and will look at the pools again.
    awake: std::sync::atomic::AtomicBool,
}

/// The executor. Cheap to clone; all clones share one engine and one set of
/// pools. Create one per process.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("allocation", &self.inner.allocation)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// Builds the engine, loads (or compiles and caches) the guest, and
    /// starts the epoch ticker and the reaper.
    pub fn new(config: ExecutorConfig) -> Result<Executor, StartError> {
        let (engine, allocation) = engine::build(&config)?;
        let (module, origin) = guest::load(&engine, &config.cache_dir, || {
            engine::build_compiler(&config)
        })?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|error| StartError::Guest(format!("{error}")))?;
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|error| StartError::Guest(format!("{error}")))?;
        let instance_pre = linker
            .instantiate_pre(&module)
            .map_err(|error| StartError::Guest(format!("{error}")))?;
        check_abi_version(&engine, &instance_pre)?;

        let ticker = EpochTicker::start(
            engine.clone(),
            Duration::from_millis(config.engine.epoch_tick_ms),
        );
        let warm_total = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(Counters::default());
        let pools = RwLock::new(HashMap::new());
        let retired = Mutex::new(HashMap::new());
        let inner = Arc::new(Inner {
            retired,
            retired_after_prune: AtomicUsize::new(0),
            slots: tokio::sync::Semaphore::new(config.pool.max_concurrent_invocations as usize),
            config,
            allocation,
            origin,
            instance_pre,
            ticker,
            pools,
            warm_total,
            counters,
            reaper: Arc::new(ReaperSignal {
                state: Mutex::new(false),
                wake: Condvar::new(),
                awake: Default::default(),
            }),
        });
        start_reaper(&inner);
        Ok(Executor { inner })
    }

    /// How the engine allocates instances (pooling, or the on-demand fallback).
    pub fn allocation(&self) -> Allocation {
        self.inner.allocation
    }

    /// Whether the compiled guest came from the disk cache or was compiled now.
    pub fn guest_origin(&self) -> GuestOrigin {
        self.inner.origin
    }

    /// The file the compiled guest is cached in.
    pub fn guest_cache_file(&self) -> std::path::PathBuf {
        guest::cache_file(
            self.inner.instance_pre.module().engine(),
            &self.inner.config.cache_dir,
        )
    }

    /// Whether the epoch ticker thread is parked: true shortly after the last
    /// invocation ends, when the executor uses no CPU.
    pub fn is_idle(&self) -> bool {
        self.inner.ticker.is_parked()
    }

    /// The configuration the executor runs with.
    pub fn config(&self) -> &ExecutorConfig {
        &self.inner.config
    }

    /// Counters for metrics.
    pub fn stats(&self) -> ExecutorStats {
        let counters = &self.inner.counters;
        let capacity = self.inner.config.pool.max_concurrent_invocations as u64;
        ExecutorStats {
            warm_instances: self.inner.warm_total.load(Ordering::SeqCst) as u64,
            active_invocations: capacity - self.inner.slots.available_permits() as u64,
            instances_created: counters.instances_created.load(Ordering::Relaxed),
            warm_starts: counters.warm_starts.load(Ordering::Relaxed),
            instances_discarded: counters.instances_discarded.load(Ordering::Relaxed),
            instances_evicted: counters.instances_evicted.load(Ordering::Relaxed),
            script_pools: self.inner.pools.read().unwrap().len() as u64,
        }
    }

    /// The limits a script gets when an app or script asks for `requested`:
    /// each value clamped to the instance-wide maximum.
    pub fn limits_for(&self, requested: &InvocationLimits) -> InvocationLimits {
        requested.clamped_to(&self.inner.config.max_limits)
    }

    /// Compiles `source` in a fresh sandbox instance and throws it away.
    /// Used to validate a script before anything is stored.
    pub async fn check(&self, source: &str, limits: &InvocationLimits) -> Result<(), InvokeError> {
        let _permit = self.acquire_slot().await?;
        self.create_instance(source, limits).await.map(drop)
    }

    /// Compiles a version and keeps the instance warm, so the first request
    /// after a deploy does not pay the cold start. Fails like [`check`](Self::check).
    ///
    /// Preparing a version also makes it active again for pooling after an
    /// earlier [`retire`](Self::retire) (a rollback to an older version).
    pub async fn prepare(&self, script: &ScriptVersion) -> Result<(), InvokeError> {
        if self
            .inner
            .retired
            .lock()
            .unwrap()
            .remove(&script.version_id)
            .is_some()
        {
            // Drop the pool still marked retired so a fresh one is made.
            self.remove_pool(script.version_id);
        }
        let _permit = self.acquire_slot().await?;
        let instance = self.create_instance(&script.source, &script.limits).await?;
        let pool = self.pool(script.version_id, Instant::now());
        self.give_back(&pool, instance);
        Ok(())
    }

    /// Drops the warm instances of a version that will not be used again (an
    /// older version after a deploy). Instances serving a request right now
    /// finish it and are dropped instead of returning to the pool.
    pub fn retire(&self, version_id: u64) {
        {
            let mut retired = self.inner.retired.lock().unwrap();
            // Remembered for one idle timeout: long enough for any request
            // that looked the old version up before the deploy.
            // Pruned only when the map has doubled since the last prune, so
            // that retiring stays O(1) amortised however many versions are
            // retired within one timeout (a scan per call made a benchmark
            // of back-to-back deploys quadratic).
            if retired.len() >= (2 * self.inner.retired_after_prune.load(Ordering::Relaxed)).max(64)
            {
                let keep = Duration::from_secs(self.inner.config.pool.idle_timeout_secs.max(1));
                retired.retain(|_, at| at.elapsed() < keep);
                self.inner
                    .retired_after_prune
                    .store(retired.len(), Ordering::Relaxed);
            }
            retired.insert(version_id, Instant::now());
        }
        self.remove_pool(version_id);
    }

    /// Runs one request against a script version, with no host services:
    /// the script's `kv`, `http`, ... calls fail with `unavailable`.
    pub async fn invoke(&self, script: &ScriptVersion, request: Request) -> Invocation {
        self.invoke_with(script, request, InvocationContext::default())
            .await
    }

    /// Runs one request against a script version, with the host services
    /// and deadline of `context`.
    pub async fn invoke_with(
        &self,
        script: &ScriptVersion,
        request: Request,
        context: InvocationContext,
    ) -> Invocation {
        let started = Instant::now();
        let failed = |error: InvokeError, cold_start: bool| Invocation {
            result: Err(error),
            output: Vec::new(),
            stats: InvocationStats {
                fuel_limit: script.limits.fuel,
                memory_limit_bytes: script.limits.memory_bytes,
                duration: started.elapsed(),
                cold_start,
                ..InvocationStats::default()
            },
        };
        let _permit = match self.acquire_slot().await {
            Ok(permit) => permit,
            Err(error) => return failed(error, false),
        };
        let pool = self.pool(script.version_id, started);
        let popped = {
            let mut idle = pool.idle.lock().unwrap();
            idle.last_checkout = started;
            idle.instances.pop()
        };
        let (mut instance, cold_start) = match popped {
            Some(instance) => {
                self.inner.warm_total.fetch_sub(1, Ordering::SeqCst);
                self.inner
                    .counters
                    .warm_starts
                    .fetch_add(1, Ordering::Relaxed);
                (instance, false)
            }
            None => match self.create_instance(&script.source, &script.limits).await {
                Ok(instance) => (instance, true),
                Err(error) => return failed(error, true),
            },
        };
        // A warm start took no time worth a second clock reading; a cold
        // one must not spend the script's deadline on creating its instance.
        let handle_started = if cold_start { Instant::now() } else { started };
        let (result, output, mut stats) = instance
            .handle(
                script.reads_request().then_some(&request),
                &script.limits,
                &self.inner.ticker,
                context,
                handle_started,
            )
            .await;
        stats.cold_start = cold_start;
        stats.duration = instance.last_used.saturating_duration_since(started);
        self.give_back(&pool, instance);
        Invocation {
            result,
            output,
            stats,
        }
    }

    async fn acquire_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, InvokeError> {
        let waited_at_most = Duration::from_millis(self.inner.config.pool.queue_timeout_ms);
        if let Ok(permit) = self.inner.slots.try_acquire() {
            return Ok(permit);
        }
        match tokio::time::timeout(waited_at_most, self.inner.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(InvokeError::PoolExhausted {
                capacity: self.inner.config.pool.max_concurrent_invocations,
                waited: waited_at_most,
            }),
        }
    }

    /// The pool of a version, made on first use; `now` counts as its
    /// latest use when it is made.
    fn pool(&self, version_id: u64, now: Instant) -> Arc<ScriptPool> {
        if let Some(pool) = self.inner.pools.read().unwrap().get(&version_id) {
            return pool.clone();
        }
        let mut pools = self.inner.pools.write().unwrap();
        if let Some(pool) = pools.get(&version_id) {
            return pool.clone();
        }
        let pool = Arc::new(ScriptPool::new(now));
        // `retire` marks the pool it removes; only a pool made since then
        // needs marking here (the request looked the version up before the
        // deploy), so the common case takes no global lock.
        if self.inner.retired.lock().unwrap().contains_key(&version_id) {
            pool.retired.store(true, Ordering::SeqCst);
        }
        pools.insert(version_id, pool.clone());
        drop(pools);
        // A new pool is work for the reaper even if it never holds an idle
        // instance (a script whose every run traps).
        self.inner.wake_reaper();
        pool
    }

    /// Drops a version's pool and its idle instances.
    fn remove_pool(&self, version_id: u64) {
        let removed = self.inner.pools.write().unwrap().remove(&version_id);
        if let Some(pool) = removed {
            self.inner.drop_idle(pool.retire());
        }
    }

    async fn create_instance(
        &self,
        source: &str,
        limits: &InvocationLimits,
    ) -> Result<WarmInstance, InvokeError> {
        self.inner
            .counters
            .instances_created
            .fetch_add(1, Ordering::Relaxed);
        WarmInstance::create(
            &self.inner.instance_pre,
            source,
            limits,
            &self.inner.ticker,
            self.inner.config.engine.fuel_yield_interval,
        )
        .await
    }

    /// Returns an instance to its pool, or drops it when it must not serve
    /// again or there is no room.
    fn give_back(&self, pool: &ScriptPool, instance: WarmInstance) {
        let inner = &self.inner;
        let config = &inner.config.pool;
        if instance.poisoned || instance.memory_bytes() > config.recycle_memory_bytes {
            inner
                .counters
                .instances_discarded
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut idle = pool.idle.lock().unwrap();
        let global_room =
            inner.warm_total.load(Ordering::SeqCst) < config.max_warm_instances as usize;
        if pool.retired.load(Ordering::SeqCst)
            || idle.instances.len() >= config.max_warm_per_script as usize
            || !global_room
        {
            inner
                .counters
                .instances_evicted
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        idle.instances.push(instance);
        // The reaper only needs waking when it sleeps for want of work;
        // a condition variable's notify is a system call even when nobody
        // waits, too dear to pay on every return of a lone instance, and so
        // is its lock: while the reaper is awake it will see this instance
        // (`start_reaper` clears `awake` before it counts the instances).
        let first = inner.warm_total.fetch_add(1, Ordering::SeqCst) == 0;
        // Released first: the reaper takes its own lock, then the pools.
        drop(idle);
        if first && !inner.reaper.awake.load(Ordering::SeqCst) {
            inner.wake_reaper();
        }
    }
}

fn check_abi_version(
    engine: &Engine,
    instance_pre: &InstancePre<HostState>,
) -> Result<(), StartError> {
    let mut store = wasmtime::Store::new(engine, HostState::new(u64::MAX, 0));
    store
        .set_fuel(1_000_000)
        .map_err(|error| StartError::Guest(format!("{error}")))?;
    // No ticker runs here, so no deadline is ever reached; fuel bounds the call.
    store.set_epoch_deadline(u64::MAX / 2);
    // A synchronous call is fine here: the export touches no host function.
    let found = futures_lite_block_on(async {
        let instance = instance_pre.instantiate_async(&mut store).await?;
        let version = instance
            .get_typed_func::<(), i32>(&mut store, picloud_shared::abi::EXPORT_ABI_VERSION)?;
        version.call_async(&mut store, ()).await
    })
    .map_err(|error| {
        StartError::Guest(format!("cannot read the guest's ABI version: {error:?}"))
    })?;
    if found != picloud_shared::abi::ABI_VERSION {
        return Err(StartError::AbiMismatch {
            expected: picloud_shared::abi::ABI_VERSION,
            found,
        });
    }
    Ok(())
}

/// Polls a future that never waits on I/O (a short wasm call) to completion
/// on the current thread.
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

/// Drops instances that stayed idle longer than the idle timeout. The thread
/// sleeps without waking while no instance is warm.
fn start_reaper(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let signal = inner.reaper.clone();
    let idle_timeout = Duration::from_secs(inner.config.pool.idle_timeout_secs.max(1));
    let period = (idle_timeout / 4).max(Duration::from_secs(1));
    std::thread::Builder::new()
        .name("picloud-reaper".into())
        .spawn(move || {
            loop {
                {
                    let mut has_work = signal.state.lock().unwrap();
                    while !*has_work {
                        has_work = signal.wake.wait(has_work).unwrap();
                    }
                }
                std::thread::sleep(period);
                let Some(inner) = weak.upgrade() else { return };
                inner.reap(Instant::now(), idle_timeout);
                // Checked under the lock that `pool` takes after making a
                // pool (and `give_back` after counting a new warm instance
                // while `awake` is false), so that a wake-up is not lost.
                // `awake` is cleared before the count is read: an instance
                // counted after the read finds `awake` false and takes the
                // lock; one counted before it is seen here.
                let mut has_work = signal.state.lock().unwrap();
                signal.awake.store(false, Ordering::SeqCst);
                if inner.warm_total.load(Ordering::SeqCst) == 0
                    && inner.pools.read().unwrap().is_empty()
                {
                    *has_work = false;
                } else {
                    signal.awake.store(true, Ordering::SeqCst);
                }
            }
        })
        .expect("cannot start the reaper thread");
}

impl Inner {
    /// Drops the instances idle for `idle_timeout` and the pools that have
    /// none left and served no request for as long.
    fn reap(&self, now: Instant, idle_timeout: Duration) {
        let mut unused = Vec::new();
        for (&version_id, pool) in self.pools.read().unwrap().iter() {
            let mut idle = pool.idle.lock().unwrap();
            let before = idle.instances.len();
            idle.instances
                .retain(|instance| now.duration_since(instance.last_used) < idle_timeout);
            self.drop_idle(before - idle.instances.len());
            if idle.instances.is_empty()
                && now.saturating_duration_since(idle.last_checkout) >= idle_timeout
            {
                unused.push(version_id);
            }
        }
        if unused.is_empty() {
            return;
        }
        let mut pools = self.pools.write().unwrap();
        for version_id in unused {
            // Checked again: a request may have used the pool since.
            let still_unused = pools.get(&version_id).is_some_and(|pool| {
                let idle = pool.idle.lock().unwrap();
                idle.instances.is_empty()
                    && now.saturating_duration_since(idle.last_checkout) >= idle_timeout
            });
            if still_unused && let Some(pool) = pools.remove(&version_id) {
                self.drop_idle(pool.retire());
            }
        }
    }

    /// Wakes the reaper if it sleeps for want of work.
    fn wake_reaper(&self) {
        let mut has_work = self.reaper.state.lock().unwrap();
        self.reaper.awake.store(true, Ordering::SeqCst);
        if !*has_work {
            *has_work = true;
            self.reaper.wake.notify_one();
        }
    }

    /// Counts `dropped` idle instances as gone.
    fn drop_idle(&self, dropped: usize) {
        if dropped > 0 {
            self.warm_total.fetch_sub(dropped, Ordering::SeqCst);
            self.counters
                .instances_evicted
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let the reaper notice that the executor is gone.
        *self.reaper.state.lock().unwrap() = true;
        self.reaper.wake.notify_one();
    }
}
