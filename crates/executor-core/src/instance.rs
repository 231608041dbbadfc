//! One instance of the guest, loaded with one script version.

use std::time::{Duration, Instant};

use picloud_shared::{
    HandleOutcome, LoadOutcome, LoadRequest, Request, Response, ScriptErrorKind, abi, decode,
    encode, encode_to_slice,
};
use wasmtime::{InstancePre, Memory, Store, Trap, TypedFunc};

use crate::config::InvocationLimits;
use crate::engine::EpochTicker;
use crate::error::{CompileError, InvokeError, OutputKind, ScriptLimit};
use crate::host::{GuestExited, HostCallDeadline, HostState, OutputCapReached, OutputLine};
use crate::services::InvocationContext;

/// What one invocation cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvocationStats {
    /// Fuel the invocation used.
    pub fuel_used: u64,
    /// The invocation's fuel budget.
    pub fuel_limit: u64,
    /// Size of the instance's linear memory after the invocation; memories
    /// never shrink, so this is the peak.
    pub memory_bytes: u64,
    /// The instance's memory limit.
    pub memory_limit_bytes: u64,
    /// Wall-clock time from the request entering the executor to its answer,
    /// including any wait for a slot and any cold start.
    pub duration: Duration,
    /// Whether a new instance had to be created and the script compiled.
    pub cold_start: bool,
    /// Host calls the script made (KV, HTTP, ...).
    pub host_calls: u32,
    /// Time spent waiting for host calls; part of `duration`, not of fuel.
    pub host_wait: Duration,
}

/// A guest instance holding one compiled script.
pub(crate) struct WarmInstance {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    handle: TypedFunc<(i32, i32), i64>,
    /// The guest's scratch input buffer (pointer, capacity).
    scratch: (u32, u32),
    /// Set once the instance trapped or hit a host-enforced limit: its state
    /// can no longer be trusted and it must not serve again.
    pub poisoned: bool,
    pub last_used: Instant,
}

impl WarmInstance {
    /// Instantiates the guest and loads `source` into it.
    pub async fn create(
        instance_pre: &InstancePre<HostState>,
        source: &str,
        limits: &InvocationLimits,
        ticker: &EpochTicker,
        fuel_yield_interval: u64,
    ) -> Result<WarmInstance, InvokeError> {
        let engine = instance_pre.module().engine();
        let mut store = Store::new(
            engine,
            HostState::new(limits.memory_bytes, limits.output_bytes),
        );
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store
            .fuel_async_yield_interval(Some(fuel_yield_interval))
            .map_err(|error| trap(format!("{error}")))?;
        store
            .set_fuel(limits.fuel)
            .map_err(|error| trap(format!("{error}")))?;
        store.set_epoch_deadline(ticker.ticks_for(limits.deadline()));
        let _active = ticker.enter();

        let instance = match instance_pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(error) if store.data().limiter.refused => {
                tracing::debug!(%error, "instantiation refused by the memory limit");
                return Err(InvokeError::MemoryLimitExceeded {
                    limit_bytes: limits.memory_bytes,
                });
            }
            Err(error) => return Err(trap(format!("instantiation failed: {error}"))),
        };
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| trap("the guest exports no memory".into()))?;
        let typed = |name: &str| trap(format!("the guest export `{name}` is missing or mistyped"));
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, abi::EXPORT_ALLOC)
            .map_err(|_| typed(abi::EXPORT_ALLOC))?;
        let load = instance
            .get_typed_func::<(i32, i32), i64>(&mut store, abi::EXPORT_LOAD)
            .map_err(|_| typed(abi::EXPORT_LOAD))?;
        let handle = instance
            .get_typed_func::<(i32, i32), i64>(&mut store, abi::EXPORT_HANDLE)
            .map_err(|_| typed(abi::EXPORT_HANDLE))?;

        let scratch_export = instance
            .get_typed_func::<(), i64>(&mut store, abi::EXPORT_SCRATCH)
            .map_err(|_| typed(abi::EXPORT_SCRATCH))?;
        let scratch = match scratch_export.call_async(&mut store, ()).await {
            Ok(packed) => abi::unpack(packed),
            Err(error) => {
                return Err(trap(format!(
                    "the guest's scratch buffer is unavailable: {error}"
                )));
            }
        };
        let mut warm = WarmInstance {
            store,
            memory,
            alloc,
            handle,
            scratch,
            poisoned: false,
            last_used: Instant::now(),
        };
        let input = encode(&LoadRequest {
            source: source.to_string(),
            limits: limits.rhai,
        });
        let output = match warm.call(Entry::Other(&load), &input).await {
            Ok(output) => output,
            Err(error) => return Err(warm.classify(error, limits)),
        };
        match decode::<LoadOutcome>(warm.output(output)) {
            Ok(LoadOutcome::Loaded) => Ok(warm),
            Ok(LoadOutcome::CompileError { message, position }) => {
                Err(InvokeError::Compile(CompileError { message, position }))
            }
            Err(error) => Err(trap(format!(
                "the guest's load answer is malformed: {error}"
            ))),
        }
    }

    /// Handles one request, started at `now`. Per-invocation state (fuel,
    /// deadline, output) is reset first, so every invocation gets its full
    /// budget. The call's end is read once, into `last_used`, which the
    /// caller also uses for the invocation's duration.
    pub async fn handle(
        &mut self,
        request: Option<&Request>,
        limits: &InvocationLimits,
        ticker: &EpochTicker,
        context: InvocationContext,
        now: Instant,
    ) -> (
        Result<Response, InvokeError>,
        Vec<OutputLine>,
        InvocationStats,
    ) {
        let deadline = match context.deadline {
            Some(deadline) => deadline.min(now + limits.deadline()),
            None => now + limits.deadline(),
        };
        self.store
            .data_mut()
            .begin_invocation(context.services, deadline);
        let mut stats = InvocationStats {
            fuel_limit: limits.fuel,
            memory_limit_bytes: limits.memory_bytes,
            ..InvocationStats::default()
        };
        if let Err(error) = self.store.set_fuel(limits.fuel) {
            self.poisoned = true;
            self.last_used = Instant::now();
            return (Err(trap(format!("{error}"))), Vec::new(), stats);
        }
        self.store
            .set_epoch_deadline(ticker.ticks_for(deadline.saturating_duration_since(now)));
        let active = ticker.enter();
        // A script that never reads `request` gets none: the guest skips
        // decoding for such a script (the same `request_fields` rule).
        let called = match request {
            Some(request) => match self.put_message(request).await {
                Ok((ptr, len)) => self.call_at(Entry::Handle, ptr, len).await,
                Err(error) => Err(error),
            },
            None => self.call(Entry::Handle, &[]).await,
        };
        drop(active);
        self.last_used = Instant::now();

        stats.fuel_used = limits
            .fuel
            .saturating_sub(self.store.get_fuel().unwrap_or(0));
        stats.memory_bytes = self.memory_bytes();
        stats.host_calls = self.store.data().host_calls;
        stats.host_wait = self.store.data().host_wait;
        self.store.data_mut().end_invocation();
        let result = match called {
            Err(error) => Err(self.classify(error, limits)),
            Ok(output) => match decode::<HandleOutcome>(self.output(output)) {
                Ok(HandleOutcome::Response(response)) => Ok(response),
                Ok(HandleOutcome::Error(error)) => Err(match error.kind {
                    ScriptErrorKind::Runtime => InvokeError::Runtime {
                        message: error.message,
                        position: error.position,
                    },
                    ScriptErrorKind::TooManyOperations => InvokeError::ScriptLimit {
                        limit: ScriptLimit::Operations,
                        message: error.message,
                        position: error.position,
                    },
                    ScriptErrorKind::DataTooLarge => InvokeError::ScriptLimit {
                        limit: ScriptLimit::DataSize,
                        message: error.message,
                        position: error.position,
                    },
                    ScriptErrorKind::StackOverflow => InvokeError::ScriptLimit {
                        limit: ScriptLimit::CallDepth,
                        message: error.message,
                        position: error.position,
                    },
                    ScriptErrorKind::ResponseTooLarge => InvokeError::OutputLimitExceeded {
                        kind: OutputKind::Response,
                        limit_bytes: u64::from(limits.rhai.max_response_bytes),
                    },
                    ScriptErrorKind::InvalidResponse => InvokeError::InvalidResponse {
                        message: error.message,
                    },
                }),
                Err(error) => {
                    self.poisoned = true;
                    Err(trap(format!("the guest's answer is malformed: {error}")))
                }
            },
        };
        let output = std::mem::take(&mut self.store.data_mut().output);
        (result, output, stats)
    }

    /// Current size of the linear memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.data_size(&self.store) as u64
    }

    /// Copies `input` into a guest buffer, calls `entry` with it and
    /// returns where in the guest's memory its packed output lies.
    async fn call(
        &mut self,
        entry: Entry<'_>,
        input: &[u8],
    ) -> wasmtime::Result<std::ops::Range<usize>> {
        let (ptr, len) = self.put_bytes(input).await?;
        self.call_at(entry, ptr, len).await
    }

    /// Puts `message` into the guest, encoded straight into its scratch
    /// buffer when it fits (sparing a host buffer and a copy), and returns
    /// where it lies.
    async fn put_message<T: serde::Serialize>(
        &mut self,
        message: &T,
    ) -> wasmtime::Result<(i32, i32)> {
        let (scratch_ptr, scratch_capacity) = self.scratch;
        let start = scratch_ptr as usize;
        if let Some(slot) = self
            .memory
            .data_mut(&mut self.store)
            .get_mut(start..start + scratch_capacity as usize)
            && let Some(written) = encode_to_slice(message, slot)
        {
            return Ok((scratch_ptr as i32, written.len() as i32));
        }
        self.put_bytes(&encode(message)).await
    }

    /// Copies `input` into a guest buffer (the scratch buffer when it fits)
    /// and returns where it lies.
    async fn put_bytes(&mut self, input: &[u8]) -> wasmtime::Result<(i32, i32)> {
        let len =
            i32::try_from(input.len()).map_err(|_| wasmtime::format_err!("input too large"))?;
        let (scratch_ptr, scratch_capacity) = self.scratch;
        let ptr = if input.len() <= scratch_capacity as usize {
            scratch_ptr as i32
        } else {
            self.alloc.call_async(&mut self.store, len).await?
        };
        self.memory
            .write(&mut self.store, ptr as u32 as usize, input)
            .map_err(|_| {
                wasmtime::format_err!("the guest returned an input buffer outside its memory")
            })?;
        Ok((ptr, len))
    }

    /// Calls `entry` with the input at `ptr` and returns where in the
    /// guest's memory its packed output lies.
    async fn call_at(
        &mut self,
        entry: Entry<'_>,
        ptr: i32,
        len: i32,
    ) -> wasmtime::Result<std::ops::Range<usize>> {
        // Borrowed, not cloned: cloning a `TypedFunc` clones its registered
        // type, which showed in the profile of every warm invocation.
        let function = match entry {
            Entry::Handle => &self.handle,
            Entry::Other(function) => function,
        };
        let packed = function.call_async(&mut self.store, (ptr, len)).await?;
        let (out_ptr, out_len) = abi::unpack(packed);
        let start = out_ptr as usize;
        match start.checked_add(out_len as usize) {
            Some(end) if end <= self.memory.data_size(&self.store) => Ok(start..end),
            _ => wasmtime::bail!("the guest returned an output buffer outside its memory"),
        }
    }

    /// The guest's output buffer that [`call`](Self::call) checked, read in
    /// place (decoding copies what it keeps).
    fn output(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.memory.data(&self.store)[range]
    }

    /// Classifies a failed call; every such failure poisons the instance.
    fn classify(&mut self, error: wasmtime::Error, limits: &InvocationLimits) -> InvokeError {
        self.poisoned = true;
        if let Some(OutputCapReached(kind)) = error.downcast_ref::<OutputCapReached>() {
            return InvokeError::OutputLimitExceeded {
                kind: *kind,
                limit_bytes: limits.output_bytes,
            };
        }
        if error.downcast_ref::<HostCallDeadline>().is_some() {
            return InvokeError::DeadlineExceeded {
                limit: limits.deadline(),
            };
        }
        if self.store.data().limiter.refused {
            return InvokeError::MemoryLimitExceeded {
                limit_bytes: limits.memory_bytes,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => return InvokeError::FuelExhausted { limit: limits.fuel },
            Some(Trap::Interrupt) => {
                return InvokeError::DeadlineExceeded {
                    limit: limits.deadline(),
                };
            }
            Some(Trap::StackOverflow) => {
                return trap("the script overflowed the WebAssembly stack".into());
            }
            _ => {}
        }
        if let Some(GuestExited(code)) = error.downcast_ref::<GuestExited>() {
            return trap(format!("the guest exited with code {code}"));
        }
        let stderr = String::from_utf8_lossy(&self.store.data().stderr)
            .trim()
            .to_string();
        let message = if stderr.is_empty() {
            format!("{error}")
        } else {
            format!("{error}: {stderr}")
        };
        trap(message)
    }
}

/// The export [`WarmInstance::call`] calls.
enum Entry<'a> {
    /// The instance's `handle` export.
    Handle,
    /// Another export taking an input buffer (`load`).
    Other(&'a TypedFunc<(i32, i32), i64>),
}

fn trap(message: String) -> InvokeError {
    InvokeError::Trap { message }
}
