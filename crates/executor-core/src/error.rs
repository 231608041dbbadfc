//! The executor's typed errors.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use picloud_shared::Position;

/// Formats an optional position as ` at line L, column C`.
struct At(Option<Position>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(Position { line, column: 0 }) => write!(f, " at line {line}"),
            Some(Position { line, column }) => write!(f, " at line {line}, column {column}"),
            None => Ok(()),
        }
    }
}

/// A script that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error{}: {message}", At(*.position))]
pub struct CompileError {
    /// Rhai's message, without the position.
    pub message: String,
    /// Where the error is, when known.
    pub position: Option<Position>,
}

/// Which of Rhai's own limits a script hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptLimit {
    /// The operation counter (`max_operations`).
    Operations,
    /// A string, array or map size limit.
    DataSize,
    /// The function call depth limit.
    CallDepth,
}

/// What produced too much output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `print` and `debug` lines.
    Log,
    /// The response body.
    Response,
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputKind::Log => "script output",
            OutputKind::Response => "response body",
        })
    }
}

/// Why an invocation did not produce a response.
///
/// Every variant is a different story for the script author and maps to a
/// different answer for the caller; the HTTP layer decides which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The script does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The script raised an error: a type mismatch, a missing function, an
    /// uncaught `throw`.
    #[error("runtime error{}: {message}", At(*.position))]
    Runtime {
        /// Rhai's message.
        message: String,
        /// Where it was raised, when known.
        position: Option<Position>,
    },
    /// The invocation used all of its fuel.
    #[error("the script used all of its fuel ({limit} units)")]
    FuelExhausted {
        /// The fuel budget of the invocation.
        limit: u64,
    },
    /// The invocation ran past its wall-clock deadline.
    #[error("the script ran past its deadline of {} ms", .limit.as_millis())]
    DeadlineExceeded {
        /// The deadline of the invocation.
        limit: Duration,
    },
    /// The instance tried to grow its memory past its limit.
    #[error("the script exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimitExceeded {
        /// The memory limit of the instance.
        limit_bytes: u64,
    },
    /// The script hit one of Rhai's own limits.
    #[error("the script hit a limit{}: {message}", At(*.position))]
    ScriptLimit {
        /// Which limit.
        limit: ScriptLimit,
        /// Rhai's message.
        message: String,
        /// Where, when known.
        position: Option<Position>,
    },
    /// The script printed too much or returned too large a body.
    #[error("the {kind} exceeded its limit of {limit_bytes} bytes")]
    OutputLimitExceeded {
        /// What was too large.
        kind: OutputKind,
        /// The limit.
        limit_bytes: u64,
    },
    /// The script returned something that cannot be a response.
    #[error("invalid response: {message}")]
    InvalidResponse {
        /// What is wrong with it.
        message: String,
    },
    /// The guest trapped for another reason (a wasm stack overflow, a bug in
    /// the guest). The instance is discarded.
    #[error("the sandbox trapped: {message}")]
    Trap {
        /// wasmtime's description of the trap.
        message: String,
    },
    /// Every invocation slot stayed busy for the whole queue timeout.
    #[error("all {capacity} invocation slots stayed busy for {} ms", .waited.as_millis())]
    PoolExhausted {
        /// Number of slots.
        capacity: u32,
        /// How long the request waited.
        waited: Duration,
    },
}

impl InvokeError {
    /// A short, stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            InvokeError::Compile(_) => "compile_error",
            InvokeError::Runtime { .. } => "runtime_error",
            InvokeError::FuelExhausted { .. } => "fuel_exhausted",
            InvokeError::DeadlineExceeded { .. } => "deadline_exceeded",
            InvokeError::MemoryLimitExceeded { .. } => "memory_limit_exceeded",
            InvokeError::ScriptLimit {
                limit: ScriptLimit::Operations,
                ..
            } => "operation_limit_exceeded",
            InvokeError::ScriptLimit {
                limit: ScriptLimit::DataSize,
                ..
            } => "data_too_large",
            InvokeError::ScriptLimit {
                limit: ScriptLimit::CallDepth,
                ..
            } => "call_depth_exceeded",
            InvokeError::OutputLimitExceeded {
                kind: OutputKind::Log,
                ..
            } => "output_limit_exceeded",
            InvokeError::OutputLimitExceeded {
                kind: OutputKind::Response,
                ..
            } => "response_too_large",
            InvokeError::InvalidResponse { .. } => "invalid_response",
            InvokeError::Trap { .. } => "trap",
            InvokeError::PoolExhausted { .. } => "pool_exhausted",
        }
    }

    /// The line the error points at, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            InvokeError::Compile(error) => error.position,
            InvokeError::Runtime { position, .. } | InvokeError::ScriptLimit { position, .. } => {
                *position
            }
            _ => None,
        }
    }
}

/// Errors while starting the executor.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// wasmtime refused the engine configuration.
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    /// The guest could not be pre-initialised or compiled.
    #[error("cannot prepare the guest: {0}")]
    Guest(String),
    /// The guest reports an ABI version this host does not speak.
    #[error("the guest speaks ABI version {found}, this host speaks {expected}")]
    AbiMismatch {
        /// The host's ABI version.
        expected: i32,
        /// The guest's.
        found: i32,
    },
    /// The cache directory cannot be used.
    #[error("cannot use the cache directory {path}: {source}")]
    Cache {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid executor configuration: {0}")]
    Config(String),
}
