//! Settings that must be refused. Included with `#[path = "common/refused.rs"] mod refused;`
//! next to `mod common;`.

use super::common::{ironhost_in, repo};

/// `ironhost start` with `config` as its `ironhost.toml`, which must be refused: the exit code
/// is 2 (a configuration error) and the message is returned.
pub fn refused_config(config: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ironhost.toml"), config).expect("config");
    let out = ironhost_in(dir.path())
        .args(["start", "--no-api"])
        .arg(repo().join("tests/agents/argv_env.py"))
        .output()
        .expect("ironhost runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{config}: {stderr}");
    stderr
}
