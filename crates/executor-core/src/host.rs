//! What the host gives the guest: the per-instance state, the memory limiter,
//! the `picloud.output` import and a minimal WASI preview-1 surface.
//!
//! **The guest sees no file system, no environment, no arguments and no
//! sockets.** Rust's standard library imports a few WASI functions; each one
//! is implemented here explicitly, and any other import is linked as a trap.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use picloud_shared::{HostCall, HostReply, OutputLevel, abi, decode, encode};
use wasmtime::{Caller, Linker, Memory, ResourceLimiter};

use crate::services::HostServices;

use crate::error::OutputKind;

/// One line of script output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// `print` or `debug`.
    pub level: OutputLevel,
    /// The text, as the script produced it (invalid UTF-8 replaced).
    pub text: String,
}

/// Marker error a host function returns to stop the guest because an output
/// cap was reached; the executor turns it into `OutputLimitExceeded`.
#[derive(Debug)]
pub(crate) struct OutputCapReached(pub OutputKind);

impl std::fmt::Display for OutputCapReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} limit reached", self.0)
    }
}

impl std::error::Error for OutputCapReached {}

/// Marker error a host call returns when the invocation's deadline passed
/// while it waited; the executor turns it into `DeadlineExceeded`.
#[derive(Debug)]
pub(crate) struct HostCallDeadline;

impl std::fmt::Display for HostCallDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the deadline passed during a host call")
    }
}

impl std::error::Error for HostCallDeadline {}

/// The largest encoded host call a guest may send (an outbound request body
/// or a KV value is bounded far below this by the services themselves).
const MAX_HOST_CALL_BYTES: u32 = 16 * 1024 * 1024;

/// Marker error for a guest that called WASI's `proc_exit`.
#[derive(Debug)]
pub(crate) struct GuestExited(pub i32);

impl std::fmt::Display for GuestExited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the guest exited with code {}", self.0)
    }
}

impl std::error::Error for GuestExited {}

/// Caps an instance's linear memory and remembers whether it said no, so a
/// trap that follows a refused growth is reported as a memory-limit error.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub limit_bytes: u64,
    pub refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit_bytes {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// State the host keeps per instance, reset at the start of each invocation.
pub(crate) struct HostState {
    pub limiter: MemoryLimiter,
    pub output: Vec<OutputLine>,
    pub output_bytes: u64,
    pub output_limit: u64,
    /// What the guest wrote to stdout/stderr (a panic message), bounded.
    pub stderr: Vec<u8>,
    /// The services of the running invocation, if it has any.
    pub services: Option<Arc<dyn HostServices>>,
    /// The running invocation's wall-clock deadline.
    pub deadline: Option<Instant>,
    /// The encoded reply of the last host call, until the guest fetches it.
    pub reply: Vec<u8>,
    /// Time the running invocation spent waiting for host calls.
    pub host_wait: Duration,
    /// Host calls the running invocation made.
    pub host_calls: u32,
}

const STDERR_CAP: usize = 4096;

impl HostState {
    pub fn new(memory_limit_bytes: u64, output_limit: u64) -> HostState {
        HostState {
            limiter: MemoryLimiter {
                limit_bytes: memory_limit_bytes,
                refused: false,
            },
            output: Vec::new(),
            output_bytes: 0,
            output_limit,
            stderr: Vec::new(),
            services: None,
            deadline: None,
            reply: Vec::new(),
            host_wait: Duration::ZERO,
            host_calls: 0,
        }
    }

    /// Prepares for the next invocation.
    pub fn begin_invocation(&mut self, services: Option<Arc<dyn HostServices>>, deadline: Instant) {
        self.limiter.refused = false;
        self.output.clear();
        self.output_bytes = 0;
        self.stderr.clear();
        self.services = services;
        self.deadline = Some(deadline);
        self.reply = Vec::new();
        self.host_wait = Duration::ZERO;
        self.host_calls = 0;
    }

    /// Forgets the invocation's services, so an idle instance holds nothing
    /// of the app it served.
    pub fn end_invocation(&mut self) {
        self.services = None;
        self.deadline = None;
        self.reply = Vec::new();
    }
}

/// Runs one host call for the guest and keeps the encoded reply.
async fn host_call(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    if len as u32 > MAX_HOST_CALL_BYTES {
        wasmtime::bail!("the guest sent a host call of {} bytes", len as u32);
    }
    let bytes = read_bytes(caller, ptr, len)?;
    let reply = match decode::<HostCall>(&bytes) {
        Err(error) => HostReply::error("bad_call", format!("malformed host call: {error}")),
        Ok(call) => {
            let state = caller.data_mut();
            state.host_calls += 1;
            match (state.services.clone(), state.deadline) {
                (Some(services), Some(deadline)) => {
                    let started = Instant::now();
                    let answered =
                        tokio::time::timeout_at(deadline.into(), services.call(call, deadline))
                            .await;
                    caller.data_mut().host_wait += started.elapsed();
                    match answered {
                        // A service that gave up at the deadline itself (an
                        // outbound request's timeout) ends the invocation
                        // the same way as one the executor stopped waiting for.
                        Ok(_) if Instant::now() >= deadline => {
                            return Err(wasmtime::Error::new(HostCallDeadline));
                        }
                        Ok(reply) => reply,
                        Err(_) => return Err(wasmtime::Error::new(HostCallDeadline)),
                    }
                }
                _ => HostReply::error(
                    "unavailable",
                    format!("{} is not available here", call.function_name()),
                ),
            }
        }
    };
    let encoded = encode(&reply);
    let len = i32::try_from(encoded.len())
        .map_err(|_| wasmtime::format_err!("a host reply is too large"))?;
    caller.data_mut().reply = encoded;
    Ok(len)
}

fn memory(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(wasmtime::Extern::Memory(memory)) => Ok(memory),
        _ => wasmtime::bail!("the guest exports no memory"),
    }
}

fn read_bytes(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let memory = memory(caller)?;
    let data = memory.data(&caller);
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize);
    match end.and_then(|end| data.get(start..end)) {
        Some(bytes) => Ok(bytes.to_vec()),
        None => wasmtime::bail!("the guest passed a buffer outside its memory"),
    }
}

fn write_bytes(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let memory = memory(caller)?;
    memory
        .write(caller, ptr as u32 as usize, bytes)
        .map_err(|_| wasmtime::format_err!("the guest passed a buffer outside its memory"))
}

// WASI preview-1 error numbers used below.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;

/// Adds PiCloud's imports and the WASI stubs to a linker.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        abi::IMPORT_MODULE,
        abi::IMPORT_OUTPUT,
        |mut caller: Caller<'_, HostState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<()> {
            let state = caller.data();
            let len_bytes = len as u32 as u64;
            if state.output_bytes + len_bytes > state.output_limit {
                return Err(wasmtime::Error::new(OutputCapReached(OutputKind::Log)));
            }
            let bytes = read_bytes(&mut caller, ptr, len)?;
            let state = caller.data_mut();
            state.output_bytes += len_bytes;
            state.output.push(OutputLine {
                level: OutputLevel::from_i32(level),
                text: String::from_utf8_lossy(&bytes).into_owned(),
            });
            Ok(())
        },
    )?;

    linker.func_wrap_async(
        abi::IMPORT_MODULE,
        abi::IMPORT_CALL,
        |mut caller: Caller<'_, HostState>, (ptr, len): (i32, i32)| {
            Box::new(async move { host_call(&mut caller, ptr, len).await })
        },
    )?;
    linker.func_wrap(
        abi::IMPORT_MODULE,
        abi::IMPORT_REPLY,
        |mut caller: Caller<'_, HostState>, ptr: i32| -> wasmtime::Result<()> {
            let reply = std::mem::take(&mut caller.data_mut().reply);
            write_bytes(&mut caller, ptr, &reply)
        },
    )?;

    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         nwritten: i32|
         -> wasmtime::Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(ERRNO_BADF);
            }
            let mut written: u32 = 0;
            for index in 0..iovs_len.clamp(0, 64) {
                let entry = read_bytes(&mut caller, iovs + index * 8, 8)?;
                let ptr = i32::from_le_bytes(entry[0..4].try_into().unwrap());
                let len = i32::from_le_bytes(entry[4..8].try_into().unwrap());
                let bytes = read_bytes(&mut caller, ptr, len)?;
                let stderr = &mut caller.data_mut().stderr;
                let room = STDERR_CAP.saturating_sub(stderr.len());
                stderr.extend_from_slice(&bytes[..bytes.len().min(room)]);
                written = written.wrapping_add(len as u32);
            }
            write_bytes(&mut caller, nwritten, &written.to_le_bytes())?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Caller<'_, HostState>, buf: i32, len: i32| -> wasmtime::Result<i32> {
            let mut bytes = vec![0u8; (len as u32 as usize).min(1 << 16)];
            getrandom::fill(&mut bytes)
                .map_err(|error| wasmtime::format_err!("random source failed: {error}"))?;
            write_bytes(&mut caller, buf, &bytes)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>,
         clock: i32,
         _precision: i64,
         out: i32|
         -> wasmtime::Result<i32> {
            let nanos = match clock {
                // Realtime and monotonic both come from the wall clock here:
                // a monotonic clock only needs to be monotonic per instance
                // for Rhai's `timestamp()`, and wall time is.
                0..=3 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|duration| duration.as_nanos() as u64)
                    .unwrap_or(0),
                _ => return Ok(ERRNO_INVAL),
            };
            write_bytes(&mut caller, out, &nanos.to_le_bytes())?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            WASI,
            name,
            |mut caller: Caller<'_, HostState>, count: i32, size: i32| -> wasmtime::Result<i32> {
                write_bytes(&mut caller, count, &0u32.to_le_bytes())?;
                write_bytes(&mut caller, size, &0u32.to_le_bytes())?;
                Ok(ERRNO_SUCCESS)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(WASI, name, |_: i32, _: i32| -> i32 { ERRNO_SUCCESS })?;
    }
    linker.func_wrap(WASI, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(GuestExited(code)))
    })?;
    linker.func_wrap(WASI, "sched_yield", || -> i32 { ERRNO_SUCCESS })?;
    // Descriptors other than stdout/stderr do not exist.
    linker.func_wrap(WASI, "fd_close", |_: i32| -> i32 { ERRNO_BADF })?;
    linker.func_wrap(WASI, "fd_fdstat_get", |_: i32, _: i32| -> i32 {
        ERRNO_BADF
    })?;
    linker.func_wrap(WASI, "fd_prestat_get", |_: i32, _: i32| -> i32 {
        ERRNO_BADF
    })?;
    linker.func_wrap(
        WASI,
        "fd_prestat_dir_name",
        |_: i32, _: i32, _: i32| -> i32 { ERRNO_BADF },
    )?;
    linker.func_wrap(WASI, "fd_seek", |_: i32, _: i64, _: i32, _: i32| -> i32 {
        ERRNO_BADF
    })?;
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |_: i32, _: i32, _: i32, _: i32| -> i32 { ERRNO_NOSYS },
    )?;
    Ok(())
}
