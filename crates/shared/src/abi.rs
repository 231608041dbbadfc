//! The host–guest ABI, version [`ABI_VERSION`].
//!
//! The guest is a core WebAssembly module (not a component) so that calls
//! stay as cheap as a function call plus a copy. All buffers live in the
//! guest's exported `memory`. A *packed slice* is an `i64` whose high 32 bits
//! are a pointer and low 32 bits a length.
//!
//! ## Exports of the guest
//! | name | signature | meaning |
//! |---|---|---|
//! | [`EXPORT_ABI_VERSION`] | `() -> i32` | returns [`ABI_VERSION`] |
//! | [`EXPORT_INIT`] | `() -> ()` | builds the Rhai engine; run once by the host's pre-initialiser (Wizer) and removed from the snapshot |
//! | [`EXPORT_SCRATCH`] | `() -> i64` | packed slice of the guest's scratch input buffer; the host writes inputs that fit there instead of calling `alloc` |
//! | [`EXPORT_ALLOC`] | `(len: i32) -> i32` | reserves an input buffer of `len` bytes that the host then fills |
//! | [`EXPORT_LOAD`] | `(ptr: i32, len: i32) -> i64` | input: a [`LoadRequest`](crate::LoadRequest); output (packed slice): a [`LoadOutcome`](crate::LoadOutcome) |
//! | [`EXPORT_HANDLE`] | `(ptr: i32, len: i32) -> i64` | input: a [`Request`](crate::Request) with the parts the loaded script can read filled in, or nothing (`len` 0) when it never names `request` ([`request_fields`](crate::request_fields), which both sides apply to the same source); output (packed slice): a [`HandleOutcome`](crate::HandleOutcome) |
//!
//! An input buffer belongs to the guest once the call starts; an output
//! buffer stays valid until the next call into the guest.
//!
//! ## Imports of the guest (module [`IMPORT_MODULE`])
//! | name | signature | meaning |
//! |---|---|---|
//! | [`IMPORT_OUTPUT`] | `(level: i32, ptr: i32, len: i32) -> ()` | one line of script output ([`OutputLevel`](crate::OutputLevel)); the host counts bytes and traps past the invocation's cap |
//! | [`IMPORT_CALL`] | `(ptr: i32, len: i32) -> i32` | a [`HostCall`](crate::HostCall) to a host service; the host runs it (the guest is suspended meanwhile, using no fuel; the wait counts against the deadline) and keeps the encoded [`HostReply`](crate::HostReply), returning its length |
//! | [`IMPORT_REPLY`] | `(ptr: i32) -> ()` | copies the reply of the last `call` into the guest's buffer at `ptr`, which has room for the length `call` returned |
//!
//! The guest also imports a handful of WASI preview-1 functions that Rust's
//! standard library needs (clock, random, `fd_write` for panic messages).
//! The host links them with no file system, no environment and no sockets.

/// Version of this ABI. The host refuses a guest that reports another one.
pub const ABI_VERSION: i32 = 3;

/// Export: `() -> i32`, the guest's ABI version.
pub const EXPORT_ABI_VERSION: &str = "picloud_abi_version";
/// Export: `() -> ()`, the pre-initialisation entry point.
pub const EXPORT_INIT: &str = "picloud_init";
/// Export: `() -> i64`, the scratch input buffer (packed pointer and capacity).
pub const EXPORT_SCRATCH: &str = "picloud_scratch";
/// Export: `(len: i32) -> i32`, allocate an input buffer.
pub const EXPORT_ALLOC: &str = "picloud_alloc";
/// Export: `(ptr: i32, len: i32) -> i64`, load (compile) a script.
pub const EXPORT_LOAD: &str = "picloud_load";
/// Export: `(ptr: i32, len: i32) -> i64`, handle one request.
pub const EXPORT_HANDLE: &str = "picloud_handle";

/// Module name of PiCloud's own imports.
pub const IMPORT_MODULE: &str = "picloud";
/// Import: `(level: i32, ptr: i32, len: i32) -> ()`, one line of output.
pub const IMPORT_OUTPUT: &str = "output";
/// Import: `(ptr: i32, len: i32) -> i32`, call a host service.
pub const IMPORT_CALL: &str = "call";
/// Import: `(ptr: i32) -> ()`, fetch the reply of the last call.
pub const IMPORT_REPLY: &str = "reply";

/// Packs a pointer and a length into one `i64`.
pub fn pack(ptr: u32, len: u32) -> i64 {
    (((ptr as u64) << 32) | len as u64) as i64
}

/// Splits a packed slice into its pointer and length.
pub fn unpack(packed: i64) -> (u32, u32) {
    let packed = packed as u64;
    ((packed >> 32) as u32, packed as u32)
}
