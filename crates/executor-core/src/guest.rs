//! Getting the guest ready to instantiate: pre-initialise it with Wizer,
//! compile it, and cache the compiled code on disk.
//!
//! The raw guest (built by `build.rs`) is embedded in the binary. At start
//! the executor looks in the cache directory for `guest-<key>.cwasm`, where
//! the key covers the guest's bytes, the wasmtime version and the engine's
//! compatibility hash (target, compiler flags, fuel, epochs, memory layout),
//! so a cache file from another build or another configuration is never used.
//! A sidecar `guest-<key>.sha256` holds the file's digest: a truncated or
//! corrupt file fails the check and is rebuilt rather than trusted.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use picloud_shared::abi;
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Linker, Module, Store};

use crate::error::StartError;
use crate::host::{self, HostState};

/// The guest module as built by `build.rs`, before pre-initialisation.
/// Only read when the guest has to be compiled: a start from the cache leaves
/// these pages of the binary untouched, so they never count against the
/// process's resident memory.
pub(crate) static GUEST_WASM: &[u8] = include_bytes!(env!("PICLOUD_GUEST_WASM"));

/// The SHA-256 digest of [`GUEST_WASM`], computed by `build.rs`.
const GUEST_SHA256: &str = env!("PICLOUD_GUEST_SHA256");

/// The pinned wasmtime version; part of the cache key.
const WASMTIME_VERSION: &str = "48.0.8";

/// Where the compiled guest came from when the executor started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestOrigin {
    /// A valid file in the cache directory, memory-mapped.
    Cache,
    /// Compiled during this start (and written to the cache).
    Compiled,
}

/// Wasmtime's hash of everything about an engine that its compiled code
/// depends on.
fn compatibility(engine: &Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// The cache key of the guest for this engine.
fn cache_key(engine: &Engine) -> String {
    let mut digest = Sha256::new();
    digest.update(GUEST_SHA256.as_bytes());
    digest.update(WASMTIME_VERSION.as_bytes());
    digest.update(std::env::consts::ARCH.as_bytes());
    digest.update(std::env::consts::OS.as_bytes());
    digest.update(compatibility(engine).to_le_bytes());
    hex::encode(&digest.finalize()[..16])
}

fn cache_error(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Cache {
        path: path.to_path_buf(),
        source,
    }
}

fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        digest.update(&buffer[..read]);
    }
    forget_cached_pages(&file);
    Ok(hex::encode(digest.finalize()))
}

/// Tells the kernel that the pages just read or written are not needed.
/// Reading or writing the whole file fills the page cache with large folios,
/// which the memory-mapped module then maps whole; dropped, the module's code
/// is paged in as it runs, and only what runs counts as resident.
fn forget_cached_pages(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: an advisory call on a file descriptor we own; it changes
        // no memory of this process.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Writes a file atomically: to a temporary name, synced, then renamed into
/// place. Synced pages are clean, so they can leave the page cache too.
///
/// The temporary name is unique to this write, not only to the process: two
/// executors of one process starting at once would otherwise share it, and
/// one could truncate the file the other has just renamed into place and
/// memory-mapped (which kills the process with `SIGBUS`).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = path.with_extension(format!("tmp{}-{write}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    forget_cached_pages(&file);
    std::fs::rename(&temporary, path)
}

/// Loads the compiled guest from the cache, or builds and caches it.
/// `compiler` makes a short-lived engine with `engine`'s code generation to
/// compile with (see [`crate::engine::build_compiler`]); `engine` itself is
/// used when the two would not produce compatible code.
pub(crate) fn load(
    engine: &Engine,
    cache_dir: &Path,
    compiler: impl FnOnce() -> Result<Engine, StartError>,
) -> Result<(Module, GuestOrigin), StartError> {
    std::fs::create_dir_all(cache_dir).map_err(cache_error(cache_dir))?;
    let key = cache_key(engine);
    let module_path = cache_dir.join(format!("guest-{key}.cwasm"));
    let digest_path = cache_dir.join(format!("guest-{key}.sha256"));

    match try_cached(engine, &module_path, &digest_path) {
        Ok(Some(module)) => return Ok((module, GuestOrigin::Cache)),
        Ok(None) => {}
        Err(reason) => tracing::warn!(
            path = %module_path.display(),
            %reason,
            "the cached guest is unusable; compiling it again"
        ),
    }

    let started = std::time::Instant::now();
    let initialised = preinitialise(GUEST_WASM)?;
    let compiler = compiler()?;
    let compiler = if compatibility(&compiler) == compatibility(engine) {
        compiler
    } else {
        engine.clone()
    };
    let compiled = compiler
        .precompile_module(&initialised)
        .map_err(|error| StartError::Guest(format!("compiling the guest failed: {error}")))?;
    drop((compiler, initialised));
    write_atomically(&module_path, &compiled).map_err(cache_error(&module_path))?;
    let digest = hex::encode(Sha256::digest(&compiled));
    write_atomically(&digest_path, digest.as_bytes()).map_err(cache_error(&digest_path))?;
    remove_stale(cache_dir, &key);
    tracing::info!(
        path = %module_path.display(),
        bytes = compiled.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compiled the guest and cached it"
    );
    // Load what was just written so the code is memory-mapped from the file
    // rather than kept in an anonymous allocation.
    // SAFETY: we wrote this file ourselves a moment ago with this engine.
    let module = unsafe { Module::deserialize_file(engine, &module_path) }.map_err(|error| {
        StartError::Guest(format!("loading the compiled guest failed: {error}"))
    })?;
    Ok((module, GuestOrigin::Compiled))
}

/// `Ok(None)` when there is no cache file, `Err` when there is one that
/// cannot be trusted.
fn try_cached(
    engine: &Engine,
    module_path: &Path,
    digest_path: &Path,
) -> Result<Option<Module>, String> {
    if !module_path.exists() {
        return Ok(None);
    }
    let expected = std::fs::read_to_string(digest_path)
        .map_err(|error| format!("its digest file cannot be read: {error}"))?;
    let actual = file_digest(module_path).map_err(|error| format!("it cannot be read: {error}"))?;
    if expected.trim() != actual {
        return Err("its contents do not match the recorded digest (truncated or corrupt)".into());
    }
    // SAFETY: the file is the one this code wrote for this exact engine
    // configuration (the key covers it) and its digest matches; wasmtime
    // additionally checks the header and the engine's compatibility.
    unsafe { Module::deserialize_file(engine, module_path) }
        .map(Some)
        .map_err(|error| format!("wasmtime refused it: {error}"))
}

fn remove_stale(cache_dir: &Path, key: &str) {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("guest-") && !name.contains(key) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs the guest's `picloud_init` under Wizer and returns the snapshot: a
/// module whose memory already holds a ready Rhai engine.
fn preinitialise(wasm: &[u8]) -> Result<Vec<u8>, StartError> {
    let wasm = wasm.to_vec();
    // Wizer is async; run it on a private thread with its own small runtime
    // so that this works whether or not the caller is inside a runtime.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|error| StartError::Guest(format!("cannot start a runtime: {error}")))?;
        runtime.block_on(async move {
            let engine = Engine::default();
            let mut linker = Linker::new(&engine);
            host::add_to_linker(&mut linker).map_err(guest_error)?;
            let mut store = Store::new(&engine, HostState::new(u64::MAX, u64::MAX));
            let mut wizer = wasmtime_wizer::Wizer::new();
            wizer.init_func(abi::EXPORT_INIT);
            wizer
                .run(&mut store, &wasm, async |store, module| {
                    linker.define_unknown_imports_as_traps(module)?;
                    linker.instantiate_async(store, module).await
                })
                .await
                .map_err(guest_error)
        })
    })
    .join()
    .map_err(|_| StartError::Guest("pre-initialising the guest panicked".into()))?
}

fn guest_error(error: wasmtime::Error) -> StartError {
    StartError::Guest(format!("{error:?}"))
}

/// The cache file path for an engine (used by tests to corrupt it).
pub fn cache_file(engine: &Engine, cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("guest-{}.cwasm", cache_key(engine)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiling_engine_makes_code_the_pooled_engine_accepts() {
        let config = crate::ExecutorConfig::default();
        let (engine, _) = crate::engine::build(&config).unwrap();
        let compiler = crate::engine::build_compiler(&config).unwrap();
        assert_eq!(compatibility(&compiler), compatibility(&engine));
    }

    #[test]
    fn the_build_time_digest_is_the_embedded_guests() {
        assert_eq!(GUEST_SHA256, hex::encode(Sha256::digest(GUEST_WASM)));
    }
}
