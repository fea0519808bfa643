// Shared by the build scripts that compile policy crates to wasm32-wasip2 components
// (host/build.rs for the default policies, tests/fixtures/build.rs for the fixtures), included
// with `#[path]`.
//
// The components are built by a nested `cargo build` into `<target>/wasm`, a target directory
// of their own: the outer cargo holds the lock on the main one while build scripts run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo profile policies are built with (release, without debug info).
pub const PROFILE: &str = "policy";
/// The target policies are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Build `packages` of the workspace at `workspace` and return each one's component path.
/// `out_dir` is the calling build script's `OUT_DIR` (it locates the target directory).
pub fn build(workspace: &Path, out_dir: &Path, packages: &[String]) -> Vec<PathBuf> {
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm"))
        .unwrap_or_else(|| out_dir.join("wasm"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // Flags meant for the outer build (clippy's wrapper, coverage flags...) must not leak in.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build policy components");
    assert!(
        status.success(),
        "building policy components for {TARGET} failed; is the target installed? \
         (`rustup target add {TARGET}`, which scripts/setup.sh runs)"
    );
    packages
        .iter()
        .map(|package| {
            let file = target_dir
                .join(TARGET)
                .join(PROFILE)
                .join(format!("{}.wasm", package.replace('-', "_")));
            assert!(file.is_file(), "{} was not built", file.display());
            file
        })
        .collect()
}
