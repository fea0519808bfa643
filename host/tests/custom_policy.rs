//! A customer's policy, built on its own with only the SDK, loaded by an ironhost binary that
//! was built before it and is not rebuilt for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn binary_fingerprint(path: &Path) -> (String, std::time::SystemTime) {
    let bytes = std::fs::read(path).expect("the ironhost binary");
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    (hex::encode(Sha256::digest(&bytes)), modified)
}

#[test]
fn the_custom_policy_example_loads_into_the_unchanged_host_binary() {
    let ironhost = Path::new(env!("CARGO_BIN_EXE_ironhost"));
    let before = binary_fingerprint(ironhost);

    // 1. The customer builds their crate: plain cargo, wasm32-wasip2, outside ironhost's build.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/custom-policy");
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("custom-policy");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let build = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .current_dir(&example)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let component = target.join("wasm32-wasip2/release/model_allowlist.wasm");
    assert!(component.is_file());

    // 2. They add it to a copy of the default bundle (the example ships that copy).
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    let manifest =
        std::fs::read_to_string(example.join("bundle/bundle.toml")).expect("example bundle");
    let manifest = manifest.replace(
        "\"../target/wasm32-wasip2/release/model_allowlist.wasm\"",
        &format!("{:?}", component.display().to_string()),
    );
    std::fs::write(bundle.join("bundle.toml"), manifest).expect("write");

    // 3. The already built host loads it.
    let run = |args: &[&str]| {
        Command::new(ironhost)
            .args(args)
            .current_dir(work.path())
            .env("IRONHOST_CACHE_DIR", work.path().join("cache"))
            .output()
            .expect("ironhost runs")
    };
    let list = run(&["policy", "list", "--bundle", "bundle", "--json"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    let names: Vec<_> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "secrets-inject",
            "model-allowlist",
            "circuit-breaker",
            "budget",
            "pii-redact"
        ]
    );

    std::fs::copy(
        example.join("inputs/requests.jsonl"),
        work.path().join("requests.jsonl"),
    )
    .expect("copy");
    let out = run(&[
        "policy",
        "run",
        "--bundle",
        "bundle",
        "--hook",
        "llm-request",
        "--input",
        "requests.jsonl",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines[0]["value"]["model"], "gpt-4o-mini");
    assert_eq!(
        lines[1]["value"]["model"], "gpt-4o-mini",
        "gpt-4o was swapped for the fallback"
    );
    let rewritten = lines[1]["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "model.rewritten")
        .expect("reported");
    assert_eq!(rewritten["detail"]["requested"], "gpt-4o");

    // 4. The host binary is the same file, byte for byte and by date.
    assert_eq!(
        binary_fingerprint(ironhost),
        before,
        "the ironhost binary was rebuilt or changed"
    );
}
