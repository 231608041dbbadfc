//! Builds the Rhai guest (`guest/`) for `wasm32-wasip1` as part of
//! `cargo build`, into its own target directory (`target/guest`), and exposes
//! its path to the crate as `PICLOUD_GUEST_WASM` and its SHA-256 digest as
//! `PICLOUD_GUEST_SHA256`. The digest is part of the compiled guest's cache
//! key; computing it here means a start from the cache never reads the
//! embedded guest, so its pages are never loaded into memory.
//!
//! The guest is its own Cargo workspace, so this nested build never contends
//! with the outer one for the same lock, and the guest is always built in
//! release mode: its speed is the product's speed, even in dev builds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace_root = manifest_dir
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let guest_dir = workspace_root.join("guest");
    let shared_dir = workspace_root.join("crates").join("shared");

    for watched in [
        guest_dir.join("Cargo.toml"),
        guest_dir.join("Cargo.lock"),
        guest_dir.join("src"),
        shared_dir.join("Cargo.toml"),
        shared_dir.join("src"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }

    let target_dir = guest_target_dir(&workspace_root);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&guest_dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--locked",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Settings meant for the outer build must not leak into the guest's.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        command.env_remove(variable);
    }
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && (key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_FEATURE_"))
        {
            command.env_remove(key);
        }
    }
    let status = command
        .status()
        .expect("failed to run cargo to build the guest (guest/)");
    assert!(
        status.success(),
        "building the guest failed; is the wasm32-wasip1 target installed? (`rustup target add wasm32-wasip1`)"
    );

    let wasm = target_dir.join("wasm32-wasip1/release/picloud_guest.wasm");
    assert!(
        wasm.exists(),
        "the guest build did not produce {}",
        wasm.display()
    );
    println!("cargo:rustc-env=PICLOUD_GUEST_WASM={}", wasm.display());
    let bytes = std::fs::read(&wasm).expect("cannot read the built guest");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    println!("cargo:rustc-env=PICLOUD_GUEST_SHA256={digest}");
}

/// `target/guest` next to the outer build's profile folders, found from
/// OUT_DIR (`target/<profile>/build/<crate>/out`) so it honours a custom
/// `CARGO_TARGET_DIR`.
fn guest_target_dir(workspace_root: &Path) -> PathBuf {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(|build| build.parent())
        .and_then(|profile| profile.parent())
        .map(|target| target.join("guest"))
        .unwrap_or_else(|| workspace_root.join("target").join("guest"))
}
