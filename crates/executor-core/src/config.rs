//! Configuration of the executor: limits per invocation and the sizes of the
//! engine's pools. Every default is documented next to its field and in
//! `docs/executor.md`.

use std::path::PathBuf;
use std::time::Duration;

use picloud_shared::RhaiLimits;
use serde::{Deserialize, Serialize};

/// Whether the default memory layout may assume a large (47-bit or more)
/// virtual address space. x86-64 Linux always has one; arm64 kernels are
/// often built with 39 bits (512 GiB), so they get the compact layout.
const LARGE_ADDRESS_SPACE: bool = cfg!(target_arch = "x86_64");

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Limits that apply to one invocation of one script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvocationLimits {
    /// Fuel (WebAssembly operations) one invocation may use: a deterministic
    /// CPU budget. Default 200,000,000, about 0.1–0.3 s of CPU on a Pi 5.
    pub fuel: u64,
    /// Wall-clock deadline of one invocation, in milliseconds, including time
    /// spent waiting on the host. Default 5,000.
    pub deadline_ms: u64,
    /// Linear memory an instance may grow to, in bytes. Default 32 MiB.
    pub memory_bytes: u64,
    /// Bytes of script output (`print`, `debug`) kept per invocation; going
    /// past it ends the invocation. Default 64 KiB.
    pub output_bytes: u64,
    /// Rhai's own limits (operations, sizes, depths); see
    /// [`RhaiLimits`] for their defaults. The response-size limit lives here.
    pub rhai: RhaiLimits,
}

impl Default for InvocationLimits {
    fn default() -> Self {
        InvocationLimits {
            fuel: 200_000_000,
            deadline_ms: 5_000,
            memory_bytes: 32 * MIB,
            output_bytes: 64 * KIB,
            rhai: RhaiLimits {
                // Fuel is the CPU limit: Rhai's operation counter stays off
                // unless an operator sets it, so `loop {}` ends in a fuel error.
                max_operations: 0,
                ..RhaiLimits::default()
            },
        }
    }
}

impl InvocationLimits {
    /// The deadline as a [`Duration`].
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// These limits, each lowered to the matching instance-wide maximum, so
    /// that a per-app or per-script override can never exceed what the
    /// operator allows.
    pub fn clamped_to(&self, maximum: &InvocationLimits) -> InvocationLimits {
        let rhai = &self.rhai;
        let max_rhai = &maximum.rhai;
        let min_u32 = |value: u32, max: u32| value.min(max);
        InvocationLimits {
            fuel: self.fuel.min(maximum.fuel),
            deadline_ms: self.deadline_ms.min(maximum.deadline_ms),
            memory_bytes: self.memory_bytes.min(maximum.memory_bytes),
            output_bytes: self.output_bytes.min(maximum.output_bytes),
            rhai: RhaiLimits {
                max_operations: match (rhai.max_operations, max_rhai.max_operations) {
                    (0, max) => max,
                    (value, 0) => value,
                    (value, max) => value.min(max),
                },
                max_call_levels: min_u32(rhai.max_call_levels, max_rhai.max_call_levels),
                max_expr_depth: min_u32(rhai.max_expr_depth, max_rhai.max_expr_depth),
                max_function_expr_depth: min_u32(
                    rhai.max_function_expr_depth,
                    max_rhai.max_function_expr_depth,
                ),
                max_string_size: min_u32(rhai.max_string_size, max_rhai.max_string_size),
                max_array_size: min_u32(rhai.max_array_size, max_rhai.max_array_size),
                max_map_size: min_u32(rhai.max_map_size, max_rhai.max_map_size),
                max_variables: min_u32(rhai.max_variables, max_rhai.max_variables),
                max_functions: min_u32(rhai.max_functions, max_rhai.max_functions),
                max_response_bytes: min_u32(rhai.max_response_bytes, max_rhai.max_response_bytes),
            },
        }
    }
}

/// How instances are pooled and how many may exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Invocations that may run at once across all scripts. A request that
    /// finds them all busy waits up to `queue_timeout_ms`, then fails with
    /// "pool exhausted". Default 64.
    pub max_concurrent_invocations: u32,
    /// How long a request may wait for a free invocation slot. Default 1,000 ms.
    pub queue_timeout_ms: u64,
    /// Idle (warm) instances kept across all scripts. Default 256.
    pub max_warm_instances: u32,
    /// Idle instances kept per script version. Default 8.
    pub max_warm_per_script: u32,
    /// An idle instance unused for this long is dropped, so scripts nobody
    /// calls hold no memory. Default 300 s.
    pub idle_timeout_secs: u64,
    /// An instance whose linear memory grew past this many bytes is dropped
    /// after its invocation instead of being kept warm. Default 8 MiB.
    pub recycle_memory_bytes: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_concurrent_invocations: 64,
            queue_timeout_ms: 1_000,
            max_warm_instances: 256,
            max_warm_per_script: 8,
            idle_timeout_secs: 300,
            recycle_memory_bytes: 8 * MIB,
        }
    }
}

/// How wasmtime allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocationStrategy {
    /// Try the pooling allocator and fall back to on-demand allocation when
    /// its address-space reservation fails (the default).
    Auto,
    /// Pooling allocator only; start-up fails when it cannot reserve memory.
    Pooling,
    /// Allocate every instance on demand with `mmap`.
    OnDemand,
}

/// Configuration of the wasmtime engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Pooling or on-demand allocation. Default `auto`.
    pub allocation: AllocationStrategy,
    /// Virtual address space reserved for each linear memory, in bytes. A
    /// memory can never grow past it, so it must be at least the largest
    /// memory limit. Default 4 GiB on x86-64 (no bounds checks in the
    /// generated code, about 20% faster scripts) and 64 MiB elsewhere, so the
    /// pool fits the 39-bit address space of Raspberry Pi kernels; see
    /// `docs/executor.md` for the arithmetic.
    pub memory_reservation_bytes: u64,
    /// Guard region after each linear memory, in bytes. Default 32 MiB with
    /// a 4 GiB reservation, 64 KiB otherwise.
    pub memory_guard_bytes: u64,
    /// Maximum WebAssembly stack per invocation, in bytes. Default 512 KiB.
    pub max_wasm_stack_bytes: u64,
    /// Period of the epoch ticker that enforces deadlines, in milliseconds.
    /// The ticker only runs while an invocation does. Default 5 ms.
    pub epoch_tick_ms: u64,
    /// Fuel between cooperative yields to the async runtime, so one long
    /// invocation cannot hog a worker thread. Default 1,000,000.
    pub fuel_yield_interval: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allocation: AllocationStrategy::Auto,
            memory_reservation_bytes: if LARGE_ADDRESS_SPACE {
                4 << 30
            } else {
                64 * MIB
            },
            memory_guard_bytes: if LARGE_ADDRESS_SPACE {
                32 * MIB
            } else {
                64 * KIB
            },
            max_wasm_stack_bytes: 512 * KIB,
            epoch_tick_ms: 5,
            fuel_yield_interval: 1_000_000,
        }
    }
}

/// Everything the executor needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// Where the precompiled guest is cached. Default `./data/cache`.
    pub cache_dir: PathBuf,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Pool settings.
    pub pool: PoolConfig,
    /// Limits for scripts that set none of their own.
    pub default_limits: InvocationLimits,
    /// The most any app or script may ask for; overrides are clamped to it.
    /// Defaults: the default limits, with fuel ×10, deadline 30 s, 64 MiB of
    /// memory and 1 MiB of output.
    pub max_limits: InvocationLimits,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        let default_limits = InvocationLimits::default();
        let engine = EngineConfig::default();
        ExecutorConfig {
            cache_dir: PathBuf::from("./data/cache"),
            max_limits: InvocationLimits {
                fuel: default_limits.fuel * 10,
                deadline_ms: 30_000,
                memory_bytes: 64 * MIB,
                output_bytes: MIB,
                rhai: RhaiLimits {
                    max_operations: 0,
                    ..default_limits.rhai
                },
            },
            engine,
            pool: PoolConfig::default(),
            default_limits,
        }
    }
}
