//! Integration tests of the executor: the real guest in the real wasmtime.
//!
//! One test binary for the crate; every module shares one [`Executor`] (one
//! engine, one compiled guest) through [`executor()`].

mod cache;
mod cases;
mod concurrency;
mod conformance;
mod doc_examples;
mod hostile;
mod isolation;
mod limits;
mod outbound;
mod pool;
mod services;

use std::sync::LazyLock;

use picloud_executor_core::{Executor, ExecutorConfig, Invocation, Request, ScriptVersion};

/// The cache directory shared by the test executors, kept across runs so the
/// guest is compiled once per build, not once per test run.
pub fn test_cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("executor-cache")
}

static EXECUTOR: LazyLock<Executor> = LazyLock::new(|| {
    let config = ExecutorConfig {
        cache_dir: test_cache_dir(),
        ..ExecutorConfig::default()
    };
    Executor::new(config).expect("the executor starts")
});

/// The shared executor.
pub fn executor() -> &'static Executor {
    &EXECUTOR
}

static NEXT_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A script version with a fresh id, so tests never share pools by accident.
pub fn script(source: &str) -> ScriptVersion {
    let id = NEXT_VERSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ScriptVersion::new(id, &format!("test/script@{id}"), source)
}

/// A GET request for `path`.
pub fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        request_id: "test".into(),
        ..Request::default()
    }
}

/// Runs a script once against a GET `/`.
pub async fn run(source: &str) -> Invocation {
    executor().invoke(&script(source), get("/")).await
}

/// The body of a successful invocation, as text.
pub fn body(invocation: &Invocation) -> String {
    match &invocation.result {
        Ok(response) => String::from_utf8_lossy(&response.body).into_owned(),
        Err(error) => panic!("expected a response, got {error:?}"),
    }
}
