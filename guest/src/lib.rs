//! PiCloud's guest: a Rhai interpreter compiled to WebAssembly.
//!
//! The host (crates/executor-core) instantiates this module once per warm
//! instance, loads exactly one script version into it, and then calls
//! `handle` for each request routed to that version. The ABI is documented in
//! `picloud_shared::abi`; this file is its guest side.
//!
//! The Rhai engine is built by `picloud_init`, which the host runs once under
//! the Wizer pre-initialiser and snapshots, so a fresh instance starts with the
//! engine ready and only has to compile its script.
//!
//! A script is parsed by Rhai and then lowered to bytecode by Rhai Grain
//! (stock Rhai's bytecode VM, `rhai::grain`), which runs loops and function
//! calls about one and a half times as fast as Rhai's tree-walking
//! interpreter here. Both give the same results: the conformance test in
//! crates/executor-core checks the guest against native Rhai's interpreter.

mod alloc;
mod convert;
mod helpers;
mod json;
mod services;

use std::cell::RefCell;

use picloud_shared::{
    HandleOutcome, LoadOutcome, LoadRequest, OutputLevel, Position, RequestFields, RequestRef,
    RhaiLimits, ScriptError, ScriptErrorKind, abi, decode, encode, encode_into,
};
use rhai::grain::{Compiler, SharedProgram, Vm};
use rhai::{Dynamic, Engine, EvalAltResult, Scope};

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: alloc::Pooled = alloc::Pooled::new();

#[link(wasm_import_module = "picloud")]
unsafe extern "C" {
    /// One line of script output; the host enforces the per-invocation cap.
    #[link_name = "output"]
    fn host_output(level: i32, ptr: *const u8, len: usize);
}

/// Everything the guest keeps between calls.
struct Guest {
    engine: Engine,
    /// The loaded script as bytecode; `None` until `load` succeeds.
    script: Option<Script>,
    /// The parts of `request` the loaded script may read
    /// ([`picloud_shared::request_fields`]); the map is built with these
    /// keys only, and with none the request is not even decoded.
    request_fields: RequestFields,
    limits: RhaiLimits,
    /// The last output buffer handed to the host; valid until the next call.
    output: Vec<u8>,
}

/// A loaded script, lowered to bytecode.
struct Script {
    program: SharedProgram,
    /// Whether the program can hand a function pointer to a native function
    /// (`array.map(|x| ...)`): then each run registers callbacks for its
    /// functions, which the others are spared.
    makes_fn_pointers: bool,
}

thread_local! {
    static GUEST: RefCell<Option<Guest>> = const { RefCell::new(None) };
}

fn send_output(level: OutputLevel, text: &str) {
    // SAFETY: the host reads `len` bytes at `ptr` from this module's memory
    // during the call and keeps no reference to them afterwards.
    unsafe { host_output(level as i32, text.as_ptr(), text.len()) }
}

fn new_engine() -> Engine {
    let mut engine = Engine::new();
    // Scripts are single files: `import` has nowhere to load modules from.
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.on_print(|text| send_output(OutputLevel::Print, text));
    engine.on_debug(|text, _source, position| {
        let line = match position.line() {
            Some(line) => format!("[line {line}] {text}"),
            None => text.to_string(),
        };
        send_output(OutputLevel::Debug, &line)
    });
    convert::register_response_api(&mut engine);
    convert::register_request_api(&mut engine);
    json::register(&mut engine);
    helpers::register(&mut engine);
    services::register(&mut engine);
    apply_limits(&mut engine, &RhaiLimits::default());
    engine
}

fn apply_limits(engine: &mut Engine, limits: &RhaiLimits) {
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels as usize)
        .set_max_expr_depths(
            limits.max_expr_depth as usize,
            limits.max_function_expr_depth as usize,
        )
        .set_max_string_size(limits.max_string_size as usize)
        .set_max_array_size(limits.max_array_size as usize)
        .set_max_map_size(limits.max_map_size as usize)
        .set_max_variables(limits.max_variables as usize)
        .set_max_functions(limits.max_functions as usize);
}

fn with_guest<R>(f: impl FnOnce(&mut Guest) -> R) -> R {
    GUEST.with(|cell| {
        let mut slot = cell.borrow_mut();
        let guest = slot.get_or_insert_with(|| Guest {
            engine: new_engine(),
            script: None,
            request_fields: RequestFields::ALL,
            limits: RhaiLimits::default(),
            output: Vec::new(),
        });
        f(guest)
    })
}

/// Size of the scratch input buffer: requests up to this size are written
/// there by the host, saving a call to `picloud_alloc` per request.
const SCRATCH_SIZE: usize = 64 * 1024;

struct Scratch(std::cell::UnsafeCell<[u8; SCRATCH_SIZE]>);

// SAFETY: the guest is single-threaded; the buffer is only read during a
// call into the guest and only written by the host between calls.
unsafe impl Sync for Scratch {}

static SCRATCH: Scratch = Scratch(std::cell::UnsafeCell::new([0; SCRATCH_SIZE]));

fn scratch_ptr() -> *mut u8 {
    SCRATCH.0.get() as *mut u8
}

/// An input buffer: either the scratch buffer or one from `picloud_alloc`.
enum Input {
    Scratch(usize),
    Owned(Box<[u8]>),
}

impl Input {
    /// # Safety
    /// `ptr`/`len` must be the scratch buffer (with `len <= SCRATCH_SIZE`) or
    /// come from one `picloud_alloc(len)` call, not yet taken.
    unsafe fn take(ptr: *mut u8, len: usize) -> Input {
        if ptr == scratch_ptr() && len <= SCRATCH_SIZE {
            Input::Scratch(len)
        } else {
            // SAFETY: forwarded from this function's contract.
            Input::Owned(unsafe { take_input(ptr, len) })
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: the host wrote `len` bytes before this call and does not
            // touch the buffer until the call returns.
            Input::Scratch(len) => unsafe { std::slice::from_raw_parts(scratch_ptr(), *len) },
            Input::Owned(bytes) => bytes,
        }
    }
}

/// Takes ownership of an input buffer allocated by [`picloud_alloc`].
///
/// # Safety
/// `ptr` and `len` must come from one `picloud_alloc(len)` call, not yet taken.
unsafe fn take_input(ptr: *mut u8, len: usize) -> Box<[u8]> {
    // SAFETY: guaranteed by the caller: the buffer was leaked from a boxed
    // slice of exactly this length.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
}

fn hand_over(guest: &mut Guest, bytes: Vec<u8>) -> i64 {
    guest.output = bytes;
    abi::pack(guest.output.as_ptr() as u32, guest.output.len() as u32)
}

fn to_position(position: rhai::Position) -> Option<Position> {
    Some(Position {
        line: position.line()? as u32,
        column: position.position().unwrap_or(0) as u32,
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn picloud_abi_version() -> i32 {
    abi::ABI_VERSION
}

#[unsafe(no_mangle)]
pub extern "C" fn picloud_scratch() -> i64 {
    abi::pack(scratch_ptr() as u32, SCRATCH_SIZE as u32)
}

#[unsafe(no_mangle)]
pub extern "C" fn picloud_init() {
    with_guest(|_| ());
}

#[unsafe(no_mangle)]
pub extern "C" fn picloud_alloc(len: usize) -> *mut u8 {
    Box::into_raw(vec![0u8; len].into_boxed_slice()) as *mut u8
}

/// # Safety
/// `ptr`/`len` must describe the scratch buffer or a buffer from [`picloud_alloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picloud_load(ptr: *mut u8, len: usize) -> i64 {
    // SAFETY: forwarded from this function's contract.
    let input = unsafe { Input::take(ptr, len) };
    with_guest(|guest| {
        let outcome = match decode::<LoadRequest>(input.bytes()) {
            Err(error) => LoadOutcome::CompileError {
                message: format!("malformed load request from host: {error}"),
                position: None,
            },
            Ok(request) => {
                guest.limits = request.limits;
                apply_limits(&mut guest.engine, &request.limits);
                match guest.engine.compile(&request.source) {
                    Ok(ast) => {
                        let program = Compiler::new().compile(&ast);
                        guest.script = Some(Script {
                            makes_fn_pointers: program.makes_fn_pointers(),
                            program: program.into_shared(),
                        });
                        guest.request_fields = picloud_shared::request_fields(&request.source);
                        LoadOutcome::Loaded
                    }
                    Err(error) => LoadOutcome::CompileError {
                        message: error.err_type().to_string(),
                        position: to_position(error.position()),
                    },
                }
            }
        };
        hand_over(guest, encode(&outcome))
    })
}

/// # Safety
/// `ptr`/`len` must describe the scratch buffer or a buffer from [`picloud_alloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn picloud_handle(ptr: *mut u8, len: usize) -> i64 {
    // SAFETY: forwarded from this function's contract.
    let input = unsafe { Input::take(ptr, len) };
    with_guest(|guest| {
        // Release the previous response before building the next one, so an
        // instance never holds two large bodies at once; a small buffer is
        // kept and reused.
        let mut buffer = std::mem::take(&mut guest.output);
        if buffer.capacity() > REUSED_OUTPUT_BYTES {
            buffer = Vec::new();
        } else {
            buffer.clear();
        }
        let answer = if guest.request_fields.is_empty() {
            drop(input);
            run(guest, None, buffer)
        } else {
            match decode::<RequestRef<'_>>(input.bytes()) {
                Err(error) => encode_outcome(
                    &HandleOutcome::Error(ScriptError {
                        kind: ScriptErrorKind::Runtime,
                        message: format!("malformed request from host: {error}"),
                        position: None,
                    }),
                    buffer,
                ),
                Ok(request) => {
                    let request = convert::request_to_dynamic(request, guest.request_fields);
                    drop(input);
                    run(guest, Some(request), buffer)
                }
            }
        };
        hand_over(guest, answer)
    })
}

/// Encodes `outcome` into `buffer`, sized first so that encoding grows no
/// buffer.
pub(crate) fn encode_outcome(outcome: &HandleOutcome, mut buffer: Vec<u8>) -> Vec<u8> {
    buffer.reserve(encoded_size_hint(outcome));
    encode_into(outcome, buffer)
}

/// The largest response buffer an instance keeps for the next response.
const REUSED_OUTPUT_BYTES: usize = 64 * 1024;

/// About the size of `outcome` encoded, so that encoding grows no buffer.
fn encoded_size_hint(outcome: &HandleOutcome) -> usize {
    match outcome {
        HandleOutcome::Response(response) => {
            let headers: usize = response
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len() + 4)
                .sum();
            response.body.len() + headers + 16
        }
        HandleOutcome::Error(error) => error.message.len() + 32,
    }
}

/// Runs the loaded script and encodes its answer into `buffer`; `request` is
/// `None` when the script never reads it.
fn run(guest: &mut Guest, request: Option<Dynamic>, buffer: Vec<u8>) -> Vec<u8> {
    let Some(script) = guest.script.as_ref() else {
        let error = ScriptError {
            kind: ScriptErrorKind::Runtime,
            message: "no script is loaded".into(),
            position: None,
        };
        return encode_outcome(&HandleOutcome::Error(error), buffer);
    };
    // A fresh scope per request: nothing a script stores in a variable can
    // be seen by the next request served by this instance.
    let mut scope = Scope::new();
    if let Some(request) = request {
        scope.push_constant("request", request);
    }
    let mut vm = Vm::new(&guest.engine);
    let result = if script.makes_fn_pointers {
        vm.eval_with_callbacks(&mut scope, &script.program)
    } else {
        vm.eval_with_scope(&mut scope, &script.program)
    };
    match result {
        Ok(value) => convert::encode_result(value, guest.limits.max_response_bytes, buffer),
        Err(error) => encode_outcome(&HandleOutcome::Error(classify(*error)), buffer),
    }
}

/// Turns a Rhai error into the ABI's error, keeping the innermost position
/// so that an error inside a function names the line in that function.
fn classify(error: EvalAltResult) -> ScriptError {
    let outer_position = to_position(error.position());
    let called_function = match &error {
        EvalAltResult::ErrorInFunctionCall(name, ..) => Some(name.clone()),
        _ => None,
    };
    let mut innermost = into_innermost(error);
    let position = to_position(innermost.take_position()).or(outer_position);
    let kind = match innermost {
        EvalAltResult::ErrorTooManyOperations(..) => ScriptErrorKind::TooManyOperations,
        EvalAltResult::ErrorDataTooLarge(..) => ScriptErrorKind::DataTooLarge,
        EvalAltResult::ErrorStackOverflow(..) => ScriptErrorKind::StackOverflow,
        _ => ScriptErrorKind::Runtime,
    };
    let message = match innermost {
        EvalAltResult::ErrorRuntime(value, _) if value.is_string() => {
            value.into_string().unwrap_or_default()
        }
        other => other.to_string(),
    };
    let message = match called_function {
        Some(name) => format!("{message} (in call to function '{name}')"),
        None => message,
    };
    ScriptError {
        kind,
        message,
        position,
    }
}

fn into_innermost(error: EvalAltResult) -> EvalAltResult {
    match error {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => into_innermost(*inner),
        other => other,
    }
}
