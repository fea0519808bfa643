//! Shared by the end-to-end test files: where the repository and its test virtualenv are.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The virtualenv `scripts/setup.sh` made, with the official SDKs.
pub fn venv() -> PathBuf {
    let v = repo().join(".venv");
    assert!(
        v.join("bin/python").exists(),
        "{} is missing: run scripts/setup.sh first",
        v.display()
    );
    v
}

/// The `ironhost` binary run in `dir` with the test virtualenv and nothing inherited: no
/// provider keys and no `IRONHOST_*` settings but the compile cache's directory.
pub fn ironhost_in(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ironhost"));
    c.current_dir(dir)
        .env("VIRTUAL_ENV", venv())
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY");
    for (k, _) in std::env::vars() {
        if k.starts_with("IRONHOST_") && k != "IRONHOST_CACHE_DIR" {
            c.env_remove(k);
        }
    }
    c
}
