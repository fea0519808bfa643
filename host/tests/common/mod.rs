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
