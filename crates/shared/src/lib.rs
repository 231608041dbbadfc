//! Types shared by the PiCloud host and its WebAssembly guest.
//!
//! The guest (`guest/`, a Rhai interpreter compiled to `wasm32-wasip1`) and
//! the host (`picloud-executor-core`) talk through a small, explicit ABI made
//! of a handful of exported and imported functions whose arguments are byte
//! buffers in the guest's linear memory. This crate defines what goes into
//! those buffers; [`abi`] documents the functions themselves. Everything is
//! encoded with [`postcard`], a compact serde format, and every message type
//! is versioned through [`abi::ABI_VERSION`].

pub mod abi;
mod messages;

pub use messages::*;

/// First path segments that belong to PiCloud itself, never to an app: the
/// management API (`/api/v1`), the dashboard and its assets, the health and
/// metrics endpoints, and static files. The control plane refuses them as
/// app slugs and the ingress never routes them to a script; both read this
/// one list so they cannot drift apart.
pub const RESERVED_APP_SLUGS: &[&str] = &[
    "api",
    "dashboard",
    "healthz",
    "readyz",
    "metrics",
    "_static",
    "assets",
    "favicon.ico",
    "robots.txt",
];

/// Encodes a message for the other side of the ABI.
pub fn encode<T: serde::Serialize>(message: &T) -> Vec<u8> {
    // Serialising our own plain data types into a Vec cannot fail: postcard
    // only fails on unsupported types (none here) or a full fixed buffer.
    postcard::to_allocvec(message).expect("ABI messages always serialise")
}

/// Decodes a message received from the other side of the ABI.
pub fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
