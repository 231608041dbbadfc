//! Giving memory back to the system: PiCloud promises a small resident set
//! at rest on boards with 1 to 8 GiB, also after a burst of traffic.
//!
//! On glibc two settings matter. Its allocator raises its mmap threshold each
//! time a large block is freed, up to 32 MiB, so after some traffic the
//! large temporary buffers of a burst (record batches, request bodies, SQL
//! statements) come from the heap and their pages stay resident; a fixed
//! threshold keeps them in their own mappings, unmapped when freed. And
//! free pages inside the heap are only returned by `malloc_trim`, which the
//! server calls once traffic has stopped ([`release_free_memory`]).
//! Elsewhere (musl, macOS) both are no-ops.

/// Blocks of at least this size get their own mapping: glibc's initial
/// threshold, kept instead of letting it grow.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;

/// Fixes the allocator's mmap threshold; call it once at start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called at
    // start, and glibc takes its own lock for it.
    // It runs before logging is set up, and a refusal only means glibc's
    // default behaviour, so its result is not reported.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

/// Returns the heap's free pages to the system; the records buffer calls it
/// once traffic has stopped. Takes a few milliseconds at most.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        // SAFETY: `malloc_trim` only releases memory the allocator holds
        // free; it takes the allocator's locks itself.
        let released = unsafe { libc::malloc_trim(0) } != 0;
        tracing::debug!(
            released,
            elapsed_us = started.elapsed().as_micros() as u64,
            "returned free heap memory to the system"
        );
    }
}
