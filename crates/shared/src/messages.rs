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

/// A [`Request`] that borrows its parts from the bytes it was decoded from
/// (postcard reads a `&str` where a `String` was written and a borrowed byte
/// slice where a `Vec<u8>` was). The guest decodes the host's request with
/// it and builds the script's `request` value from it, copying each part
/// once, into the Rhai string it becomes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRef<'a> {
    /// Upper-case method, `GET`, `POST`, ...
    pub method: &'a str,
    /// Full request path.
    pub path: &'a str,
    /// The part of the path below the script's own.
    pub subpath: &'a str,
    /// Query parameters in order; a key may repeat.
    #[serde(borrow)]
    pub query: Vec<(&'a str, &'a str)>,
    /// Headers in order, names in lower case; a name may repeat.
    #[serde(borrow)]
    pub headers: Vec<(&'a str, &'a str)>,
    /// Raw body.
    #[serde(with = "serde_bytes")]
    pub body: &'a [u8],
    /// The request id.
    pub request_id: &'a str,
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

/// A [`HandleOutcome::Response`] that borrows its parts, encoded to exactly
/// the same bytes (postcard writes a `&str` like a `String` and a borrowed
/// byte slice like a `Vec<u8>`). The guest encodes a script's plain result
/// with it straight from the Rhai value, without copying the body and the
/// content type into owned strings first; the host decodes a
/// [`HandleOutcome`].
#[derive(Debug, Serialize)]
pub enum HandleOutcomeRef<'a> {
    /// The script produced a response (variant 0, as [`HandleOutcome::Response`]).
    Response(ResponseRef<'a>),
}

/// A [`Response`] that borrows its headers and body; see [`HandleOutcomeRef`].
#[derive(Debug, Serialize)]
pub struct ResponseRef<'a> {
    /// HTTP status code.
    pub status: u16,
    /// Headers in order.
    pub headers: &'a [(&'a str, &'a str)],
    /// Body bytes.
    #[serde(with = "serde_bytes")]
    pub body: &'a [u8],
}

/// Severity of one line of script output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(i32)]
pub enum OutputLevel {
    /// From `print`.
    Print = 0,
    /// From `debug`.
    Debug = 1,
    /// From `log("info", ...)`.
    Info = 2,
    /// From `log("warn", ...)`.
    Warn = 3,
    /// From `log("error", ...)`.
    Error = 4,
}

impl OutputLevel {
    /// Converts the ABI's integer back into a level; unknown values are `Print`.
    pub fn from_i32(value: i32) -> OutputLevel {
        match value {
            1 => OutputLevel::Debug,
            2 => OutputLevel::Info,
            3 => OutputLevel::Warn,
            4 => OutputLevel::Error,
            _ => OutputLevel::Print,
        }
    }

    /// The lower-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputLevel::Print => "print",
            OutputLevel::Debug => "debug",
            OutputLevel::Info => "info",
            OutputLevel::Warn => "warn",
            OutputLevel::Error => "error",
        }
    }

    /// The level named `name` (`print`, `debug`, `info`, `warn` or `error`,
    /// `warning` accepted), if any.
    pub fn from_name(name: &str) -> Option<OutputLevel> {
        Some(match name {
            "print" => OutputLevel::Print,
            "debug" => OutputLevel::Debug,
            "info" => OutputLevel::Info,
            "warn" | "warning" => OutputLevel::Warn,
            "error" => OutputLevel::Error,
            _ => return None,
        })
    }
}

/// A call from a script to one of the host's services (the `kv`, `vars`,
/// `secrets`, `http`, `files` and `scripts` modules). Values cross as JSON
/// text: postcard cannot carry self-describing data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostCall {
    /// `kv::get(key)`.
    KvGet {
        /// The key, in the calling app's key space.
        key: String,
    },
    /// `kv::set(key, value)` and `kv::set(key, value, ttl_ms)`.
    KvSet {
        /// The key.
        key: String,
        /// The value as JSON text.
        value: String,
        /// Time to live in milliseconds, if any.
        ttl_ms: Option<u64>,
    },
    /// `kv::delete(key)`.
    KvDelete {
        /// The key.
        key: String,
    },
    /// `kv::list(prefix)`, `kv::list(prefix, after, limit)`.
    KvList {
        /// Keys starting with this.
        prefix: String,
        /// Only keys after this one (the previous page's `next`).
        after: Option<String>,
        /// The most entries to return.
        limit: u32,
    },
    /// `kv::incr(key)`, `kv::incr(key, by)`.
    KvIncrement {
        /// The key.
        key: String,
        /// The amount to add.
        by: i64,
    },
    /// `vars::get(name)`.
    VarGet {
        /// The variable's name.
        name: String,
    },
    /// `secrets::get(name)`.
    SecretGet {
        /// The secret's name.
        name: String,
    },
    /// `http::get`, `http::post`, `http::request`.
    Http(HttpCall),
    /// `files::read(path)`, `files::read_blob(path)`.
    FileRead {
        /// The file's path inside the app's folder.
        path: String,
    },
    /// `files::list(prefix)`.
    FileList {
        /// Paths starting with this.
        prefix: String,
    },
    /// `scripts::invoke(name, payload)`.
    CallScript {
        /// The script's name, in the calling app.
        script: String,
        /// The payload as JSON text; the callee sees it as its JSON body.
        payload: String,
    },
}

impl HostCall {
    /// The script-facing name of the function, for error messages.
    pub fn function_name(&self) -> &'static str {
        match self {
            HostCall::KvGet { .. } => "kv::get",
            HostCall::KvSet { .. } => "kv::set",
            HostCall::KvDelete { .. } => "kv::delete",
            HostCall::KvList { .. } => "kv::list",
            HostCall::KvIncrement { .. } => "kv::incr",
            HostCall::VarGet { .. } => "vars::get",
            HostCall::SecretGet { .. } => "secrets::get",
            HostCall::Http(_) => "http::request",
            HostCall::FileRead { .. } => "files::read",
            HostCall::FileList { .. } => "files::list",
            HostCall::CallScript { .. } => "scripts::invoke",
        }
    }
}

/// An outbound HTTP request made by a script.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    /// Upper-case method.
    pub method: String,
    /// Absolute `http` or `https` URL.
    pub url: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The host's answer to a [`HostCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostReply {
    /// Nothing to return, or nothing found (`()` in Rhai).
    Unit,
    /// A yes/no answer (`kv::delete` says whether the key existed).
    Bool(bool),
    /// An integer (`kv::incr`).
    Int(i64),
    /// A string (`vars::get`, `secrets::get`, `files::read`).
    Text(String),
    /// Raw bytes (`files::read_blob`).
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A value as JSON text (`kv::get`, `scripts::call`).
    Json(String),
    /// A list of strings (`files::list`).
    List(Vec<String>),
    /// One page of `kv::list`: keys with their values as JSON text.
    KvPage {
        /// Keys and values, in key order.
        entries: Vec<(String, String)>,
        /// The key to pass as `after` for the next page, if there is one.
        next: Option<String>,
    },
    /// The answer to an outbound HTTP request.
    Http(HttpAnswer),
    /// The call failed; the script sees a Rhai error it can catch.
    Error {
        /// A stable code, such as `quota_exceeded` or `host_not_allowed`.
        code: String,
        /// A human message.
        message: String,
    },
}

impl HostReply {
    /// An error reply.
    pub fn error(code: &str, message: impl Into<String>) -> HostReply {
        HostReply::Error {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// The response to an outbound HTTP request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}
