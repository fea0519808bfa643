//! Builds the default policies (`policies/*`) to wasm32-wasip2 components and embeds them, so
//! `--bundle default` works from the installed binary alone.
//!
//! The components are built by a nested `cargo build` into `<target>/wasm`, a target directory
//! of its own (the outer cargo holds the lock on the main one while build scripts run).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Default policy crates under `policies/`; each package is named after its directory.
const POLICIES: &[&str] = &["secrets-inject", "circuit-breaker", "budget", "pii-redact"];
const PROFILE: &str = "policy";
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest_dir.join("..");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = wasm_target_dir(&out_dir);
    for dir in ["policies", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for name in POLICIES {
        cmd.args(["-p", name]);
    }
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
        .expect("cannot run cargo to build the default policies");
    assert!(
        status.success(),
        "building the default policies for {TARGET} failed; is the target installed? \
         (`rustup target add {TARGET}`, which scripts/setup.sh runs)"
    );

    let mut code = String::from(
        "/// The default policy components: (name, component bytes).\npub const COMPONENTS: &[(&str, &[u8])] = &[\n",
    );
    for name in POLICIES {
        let file = target_dir
            .join(TARGET)
            .join(PROFILE)
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(file.is_file(), "{} was not built", file.display());
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("default_policies.rs"), code)
        .expect("cannot write default_policies.rs");
}

/// `<target>/wasm`, found from `OUT_DIR` = `<target>/<profile>/build/<pkg>-<hash>/out`.
fn wasm_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm"))
        .unwrap_or_else(|| out_dir.join("wasm"))
}
