//! Runs a script of `tests/compat/agents/` unchanged under `ironhost start`, from
//! `.venv-compat` (made by `scripts/setup-compat.sh`), with `--log-format json`, and reads back
//! what it printed and what the host logged. Included by the compatibility test files with
//! `#[path = "common/compat.rs"] mod compat;` next to `mod common;`.

#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::common::{ironhost_in, repo};

/// The compatibility suite's virtualenv.
pub fn venv() -> PathBuf {
    let v = repo().join(".venv-compat");
    assert!(
        v.join("bin/python").exists(),
        "{} is missing: run scripts/setup-compat.sh first",
        v.display()
    );
    v
}

/// A script of `tests/compat/agents/`.
pub fn script(name: &str) -> PathBuf {
    repo().join("tests/compat/agents").join(name)
}

/// What one run printed and logged.
#[derive(Debug)]
pub struct Run {
    /// The cases' lines, as printed by the script (`{"case": ...}`).
    pub cases: Vec<Value>,
    /// The host's LLM call records (target `ironhost::call`, kind `llm`).
    pub calls: Vec<Value>,
    /// The host's tool call records (target `ironhost::call`, kind `tool`).
    pub tools: Vec<Value>,
    /// Every JSON line the host logged.
    pub log: Vec<Value>,
    /// The call ids with a PII finding.
    pub findings: BTreeSet<String>,
    pub stdout: String,
    pub stderr: String,
    pub output: Output,
}

/// The command that runs `script` in `dir` (which holds the run's `ironhost.toml`) on the
/// simulator; add environment or arguments before passing it to [`finish`].
pub fn command(dir: &Path, script: &Path) -> Command {
    let venv = venv();
    let mut c = ironhost_in(dir);
    c.env("VIRTUAL_ENV", &venv)
        .env("TIKTOKEN_CACHE_DIR", venv.join("tiktoken-cache"))
        .env("IRONHOST_LLM_MODE", "simulator")
        .args(["start", "--no-api", "--log-format", "json"])
        .arg(script);
    c
}

/// Run `cmd` and read what it printed and logged; does not judge the exit status.
pub fn finish(mut cmd: Command) -> Run {
    let output = cmd.output().expect("ironhost runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let cases = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("case").is_some())
        .collect();
    let log: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let records = |kind: &str| -> Vec<Value> {
        log.iter()
            .filter(|v| v["target"] == "ironhost::call" && v["kind"] == kind)
            .cloned()
            .collect()
    };
    let calls = records("llm");
    let tools = records("tool");
    let findings = log
        .iter()
        .filter(|v| v["target"] == "ironhost::finding")
        .filter_map(|v| v["call_id"].as_str().map(str::to_owned))
        .collect();
    Run {
        cases,
        calls,
        tools,
        log,
        findings,
        stdout,
        stderr,
        output,
    }
}

/// Run `name` with `config` as its `ironhost.toml`; the run must succeed.
pub fn run(name: &str, config: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ironhost.toml"), config).expect("config");
    let r = finish(command(dir.path(), &script(name)));
    assert!(
        r.output.status.success(),
        "{name} failed\nstdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    r
}
