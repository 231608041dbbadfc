use serde::{Deserialize, Serialize};

/// Rhai's own limits, enforced inside the guest by the Rhai engine.
///
/// These complement the host's WebAssembly-level limits (fuel, deadline,
/// memory): they stop a runaway script earlier and with a message that names
/// the script line, where a fuel trap can only say "out of fuel".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RhaiLimits {
    /// Maximum Rhai operations per invocation (0 = unlimited; fuel still applies).
    pub max_operations: u64,
    /// Maximum depth of nested function calls.
    pub max_call_levels: u32,
    /// Maximum nesting depth of an expression at global level.
    pub max_expr_depth: u32,
    /// Maximum nesting depth of an expression inside a function body.
    pub max_function_expr_depth: u32,
    /// Maximum length of a string, in bytes.
    pub max_string_size: u32,
    /// Maximum number of elements in an array.
    pub max_array_size: u32,
    /// Maximum number of properties in an object map.
    pub max_map_size: u32,
    /// Maximum number of variables in scope at once.
    pub max_variables: u32,
    /// Maximum number of functions a script may define.
    pub max_functions: u32,
    /// Maximum size of the encoded response body, in bytes.
    pub max_response_bytes: u32,
}

impl Default for RhaiLimits {
    fn default() -> Self {
        RhaiLimits {
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 10_000,
            max_variables: 1_000,
            max_functions: 500,
            max_response_bytes: 4 << 20,
        }
    }
}

/// Input of the guest's `load` export: compile one script.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRequest {
    /// The Rhai source of the script version.
    pub source: String,
    /// Limits applied to every later invocation of this instance.
    pub limits: RhaiLimits,
}

/// A position in a script, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number, starting at 1.
    pub column: u32,
}

/// Output of the guest's `load` export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadOutcome {
    /// The script compiled and is ready to handle requests.
    Loaded,
    /// The script has a syntax error.
    CompileError {
        /// Rhai's message, without the position.
        message: String,
        /// Where the error is, when Rhai knows.
        position: Option<Position>,
    },
}

/// One HTTP request as a script sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Upper-case method, `GET`, `POST`, ...
    pub method: String,
    /// Full request path, for example `/shop/orders/42`.
    pub path: String,
    /// The part of the path below the script's own, for example `/42`; empty
    /// when the script itself was called.
    pub subpath: String,
    /// Query parameters in order; a key may repeat.
    pub query: Vec<(String, String)>,
    /// Headers in order, names in lower case; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The request id, the same one that appears in the host's logs.
    pub request_id: String,
}

/// A response produced by a script.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// What went wrong inside a script, as the guest classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScriptErrorKind {
    /// An ordinary runtime error: a type mismatch, an unknown function, a
    /// `throw` that nobody caught.
    Runtime,
    /// Rhai's operation limit was reached.
    TooManyOperations,
    /// A string, array or map grew past its size limit.
    DataTooLarge,
    /// Function calls nested deeper than the call-level limit.
    StackOverflow,
    /// The encoded response is larger than the response limit.
    ResponseTooLarge,
    /// The script returned a value that cannot become a response.
    InvalidResponse,
}

/// An error raised while a script handled a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptError {
    /// The class of the error.
    pub kind: ScriptErrorKind,
    /// Rhai's message, without the position.
    pub message: String,
    /// Where the error was raised, when Rhai knows.
    pub position: Option<Position>,
}

/// Output of the guest's `handle` export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleOutcome {
    /// The script produced a response.
    Response(Response),
    /// The script failed.
    Error(ScriptError),
}

/// Severity of one line of script output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(i32)]
pub enum OutputLevel {
    /// From `print`.
    Print = 0,
    /// From `debug`.
    Debug = 1,
}

impl OutputLevel {
    /// Converts the ABI's integer back into a level; unknown values are `Print`.
    pub fn from_i32(value: i32) -> OutputLevel {
        match value {
            1 => OutputLevel::Debug,
            _ => OutputLevel::Print,
        }
    }

    /// The lower-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputLevel::Print => "print",
            OutputLevel::Debug => "debug",
        }
    }
}
