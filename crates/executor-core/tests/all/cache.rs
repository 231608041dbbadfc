//! The precompiled guest is cached on disk, validated, and rebuilt when the
//! cache file is damaged.

use picloud_executor_core::{Executor, ExecutorConfig, GuestOrigin, PoolConfig};

use crate::{body, get, script};

fn config(cache_dir: &std::path::Path) -> ExecutorConfig {
    ExecutorConfig {
        cache_dir: cache_dir.to_path_buf(),
        // Small pools: these executors only live for this test.
        pool: PoolConfig {
            max_concurrent_invocations: 4,
            max_warm_instances: 4,
            ..PoolConfig::default()
        },
        ..ExecutorConfig::default()
    }
}

#[tokio::test]
async fn the_guest_is_compiled_once_then_loaded_from_the_cache() {
    let directory = tempfile::tempdir().unwrap();

    let first = Executor::new(config(directory.path())).unwrap();
    assert_eq!(first.guest_origin(), GuestOrigin::Compiled);
    let cache_file = first.guest_cache_file();
    assert!(cache_file.exists());
    drop(first);

    let second = Executor::new(config(directory.path())).unwrap();
    assert_eq!(second.guest_origin(), GuestOrigin::Cache);
    assert_eq!(
        body(&second.invoke(&script("40 + 2"), get("/")).await),
        "42"
    );
    drop(second);

    // Truncate the cache file: the next start must notice and rebuild.
    let length = std::fs::metadata(&cache_file).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&cache_file)
        .unwrap();
    file.set_len(length / 2).unwrap();
    drop(file);
    let third = Executor::new(config(directory.path())).unwrap();
    assert_eq!(third.guest_origin(), GuestOrigin::Compiled);
    assert_eq!(std::fs::metadata(&cache_file).unwrap().len(), length);
    assert_eq!(body(&third.invoke(&script("40 + 2"), get("/")).await), "42");
    drop(third);

    // Flip bytes in the middle without changing the length: same story.
    let mut bytes = std::fs::read(&cache_file).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 64] {
        *byte ^= 0xff;
    }
    std::fs::write(&cache_file, &bytes).unwrap();
    let fourth = Executor::new(config(directory.path())).unwrap();
    assert_eq!(fourth.guest_origin(), GuestOrigin::Compiled);

    // And a healthy cache is used again afterwards.
    drop(fourth);
    let fifth = Executor::new(config(directory.path())).unwrap();
    assert_eq!(fifth.guest_origin(), GuestOrigin::Cache);
}
