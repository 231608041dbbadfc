//! `picloud-executor`: the sandbox: Rhai scripts in WebAssembly under wasmtime, as its own process in cluster mode.
//!
//! Cluster mode is not built yet. Everything this process will do runs today
//! inside the all-in-one `picloud serve`; this binary only says so, so that
//! packaging and deployment scripts can already refer to it.

const ROLE: &str = "executor";
const WHAT: &str = "the sandbox: Rhai scripts in WebAssembly under wasmtime";

include!("../../cluster_stub.rs");
