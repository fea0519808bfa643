//! The `ironhost` binary as a user runs it: exit codes, one-line errors, JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ironhost_fixtures as fx;

fn ironhost(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironhost"))
        .args(args)
        .current_dir(cwd)
        .env("IRONHOST_CACHE_DIR", cwd.join("cache"))
        .output()
        .expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A bundle of fixtures with absolute component paths.
fn fixture_bundle(dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    let manifest = format!(
        r#"[bundle]
name = "fixtures"

[[policy]]
component = {guard:?}
capabilities = ["config"]
[policy.config]
keyword = "DROP TABLE"

[[policy]]
component = {rewrite:?}
capabilities = ["events", "state"]

[[policy]]
component = {trap:?}
capabilities = ["config"]
failure-mode = "fail-open"

[[policy]]
component = {deny:?}
failure-mode = "monitor"
"#,
        guard = fx::KEYWORD_GUARD,
        rewrite = fx::REWRITE,
        trap = fx::TRAP,
        deny = fx::DENY_ALL,
    );
    std::fs::write(bundle.join("bundle.toml"), manifest).expect("write");
    bundle
}

#[test]
fn version_names_the_wit_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ironhost(&["--version"], dir.path());
    assert!(out.status.success());
    let wit = ironhost::policy::bindings::CURRENT_WIT_VERSION;
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "ironhost {} (WIT ironhost:policy@{wit})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn policy_list_json_prints_the_chain_in_order_with_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = fixture_bundle(dir.path());
    let out = ironhost(
        &[
            "policy",
            "list",
            "--bundle",
            bundle.to_str().expect("utf-8"),
            "--json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let rows = rows.as_array().expect("array");
    let names: Vec<_> = rows
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["keyword-guard", "rewrite", "trap", "deny-all"]);
    let rewrite = &rows[1];
    assert_eq!(rewrite["order"], 2);
    assert_eq!(rewrite["version"], "1.0.0");
    assert_eq!(rewrite["wit_version"], "0.1.0");
    assert_eq!(rewrite["failure_mode"], "fail-closed");
    assert_eq!(
        rewrite["capabilities"]["requested"],
        serde_json::json!(["events", "state"])
    );
    assert_eq!(
        rewrite["capabilities"]["granted"],
        serde_json::json!(["events", "state"])
    );
    assert_eq!(rewrite["hooks"][0], "llm-request");
    assert_eq!(rows[2]["failure_mode"], "fail-open");
    assert_eq!(rows[3]["failure_mode"], "monitor");
    assert_eq!(rows[0]["sha256"].as_str().map(str::len), Some(64));

    // The table form has a header and one row per policy.
    let table = ironhost(
        &[
            "policy",
            "list",
            "--bundle",
            bundle.to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    let text = stdout(&table);
    assert!(
        text.starts_with("bundle fixtures: 4 policies\n#  NAME"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 6);
}

#[test]
fn policy_list_reports_manifest_and_admission_errors_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ironhost(&["policy", "list", "--bundle", "nowhere"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nowhere/bundle.toml: cannot read bundle manifest"),
        "{}",
        stderr(&out)
    );

    let bundle = dir.path().join("b");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    std::fs::write(
        bundle.join("bundle.toml"),
        format!("[[policy]]\ncomponent = {:?}\n", fx::UNGRANTED),
    )
    .expect("write");
    let out = ironhost(&["policy", "list", "--bundle", "b"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not grant"), "{err}");
}

#[test]
fn policy_check_describes_a_valid_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ironhost(&["policy", "check", fx::REWRITE, "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(report["valid"], true);
    assert_eq!(report["wit_version"], "0.1.0");
    assert_eq!(report["policy"]["name"], "rewrite");
    assert_eq!(
        report["exports"],
        serde_json::json!(["ironhost:policy/hooks@0.1.0"])
    );
    let imports: Vec<_> = report["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(imports.contains(&"ironhost:policy/events@0.1.0"));
    assert!(imports.contains(&"ironhost:policy/state@0.1.0"));
    assert_eq!(
        report["capabilities"],
        serde_json::json!(["events", "state"])
    );
    // The SDK stamped which SDK and WIT version built it.
    let sdk = report["sdk"].as_str().unwrap_or_default();
    assert!(
        sdk.starts_with("ironhost-policy ") && sdk.ends_with("; ironhost:policy@0.1.0"),
        "{report}"
    );

    let text = ironhost(&["policy", "check", fx::REWRITE], dir.path());
    assert!(
        stdout(&text)
            .contains("valid policy component `rewrite` 1.0.0 (WIT ironhost:policy@0.1.0)")
    );
}

#[test]
fn policy_check_refuses_bad_files_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("notes.wasm"), "just some text, not wasm").expect("write");
    // The smallest valid core module: magic and version 1, no sections.
    std::fs::write(d.join("core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    let full = std::fs::read(fx::ALLOW_ALL).expect("fixture");
    std::fs::write(d.join("truncated.wasm"), &full[..full.len() / 2]).expect("write");
    std::fs::copy(fx::WRONG_WIT, d.join("wrong-wit.wasm")).expect("copy");

    let cases = [
        ("notes.wasm", "not a WebAssembly file"),
        ("core.wasm", "a core WebAssembly module, not a component"),
        ("truncated.wasm", "truncated or malformed component"),
        ("wrong-wit.wasm", "built against ironhost:policy@0.9.0"),
        ("missing.wasm", "cannot read"),
    ];
    for (file, reason) in cases {
        let out = ironhost(&["policy", "check", file], d);
        assert_eq!(out.status.code(), Some(2), "{file}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
        assert!(err.contains(file) && err.contains(reason), "{file}: {err}");
        assert!(stdout(&out).is_empty());
        // With --json the same verdict is also on stdout, as JSON.
        let json = ironhost(&["policy", "check", file, "--json"], d);
        assert_eq!(json.status.code(), Some(2));
        let v: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("JSON verdict");
        assert_eq!(v["valid"], false);
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{v}"
        );
    }
}

#[test]
fn policy_run_prints_one_line_per_input_and_reports_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = fixture_bundle(dir.path());
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        [
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"my secret"}]}"#,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user" "content":"broken"}]}"#,
            "",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"DROP TABLE x"}]}"#,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"boom"}]}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    let out = ironhost(
        &[
            "policy",
            "run",
            "--bundle",
            bundle.to_str().expect("utf-8"),
            "--hook",
            "llm-request",
            "--input",
            "in.jsonl",
        ],
        dir.path(),
    );
    // A bad line makes the exit code 2, but every other line is still run.
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);

    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["decision"], "continue");
    assert_eq!(lines[0]["value"]["messages"][0]["content"], "my [redacted]");
    assert_eq!(lines[0]["events"][0]["kind"], "fixture.rewrite");
    assert_eq!(lines[0]["policies"].as_array().map(Vec::len), Some(4));
    assert!(lines[0]["latency_ns"].as_u64().is_some_and(|n| n > 0));

    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid llm-request input"))
    );
    assert!(
        stderr(&out).contains("in.jsonl:2: invalid llm-request input"),
        "{}",
        stderr(&out)
    );

    assert_eq!(lines[2]["line"], 4);
    assert_eq!(lines[2]["decision"], "deny");
    assert_eq!(lines[2]["policy"], "keyword-guard");

    assert_eq!(lines[3]["line"], 5);
    assert_eq!(lines[3]["decision"], "continue");
    assert_eq!(lines[3]["policies"][2]["verdict"], "failed");
    assert_eq!(lines[3]["policies"][2]["failure"]["kind"], "trap");
}

#[test]
fn policy_run_streams_chunks_through_one_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("chunks.jsonl");
    std::fs::write(
        &input,
        "{\"text\":\"a sec\"}\n{\"text\":\"ret b\"}\n{\"text\":\" end\",\"last\":true}\n",
    )
    .expect("write");
    let out = ironhost(
        &[
            "policy",
            "run",
            fx::REWRITE,
            "--hook",
            "llm-chunk",
            "--input",
            "chunks.jsonl",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let emitted: String = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["value"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(emitted, "a [redacted] b end");
}

#[test]
fn policy_run_rejects_an_unknown_hook_and_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("x.jsonl"), "{}\n").expect("write");
    let out = ironhost(
        &[
            "policy",
            "run",
            fx::ALLOW_ALL,
            "--hook",
            "on-everything",
            "--input",
            "x.jsonl",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown hook `on-everything`"),
        "{}",
        stderr(&out)
    );

    let out = ironhost(
        &[
            "policy",
            "run",
            fx::KEYWORD_GUARD,
            "--hook",
            "llm-request",
            "--input",
            "x.jsonl",
            "--config",
            "{}",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("rejected its config: `keyword` is required"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_run_goes_on_after_a_line_that_is_not_utf8() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"name\":\"search\"}\n");
    input.extend_from_slice(b"{\"name\":\"caf\xe9\"}\n");
    input.extend_from_slice(b"{\"name\":\"lookup\"}\r\n");
    std::fs::write(dir.path().join("calls.jsonl"), input).expect("write");
    let out = ironhost(
        &[
            "policy",
            "run",
            fx::ALLOW_ALL,
            "--hook",
            "tool-call",
            "--input",
            "calls.jsonl",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["value"]["name"], "search");
    assert!(
        lines[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not UTF-8")),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["value"]["name"], "lookup");
    assert!(
        stderr(&out).contains("calls.jsonl:2: not UTF-8"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_run_accepts_a_null_tool_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("results.jsonl"),
        "{\"call\":{\"name\":\"f\"},\"result\":null}\n",
    )
    .expect("write");
    let out = ironhost(
        &[
            "policy",
            "run",
            fx::ALLOW_ALL,
            "--hook",
            "tool-result",
            "--input",
            "results.jsonl",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(line["value"]["ok"], "null");
}

#[test]
fn policy_new_scaffolds_a_crate_that_builds_checks_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = ironhost(&["policy", "new", "topic-guard"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let krate = d.join("topic-guard");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "bundle/bundle.toml",
        "vendor/ironhost-policy/wit/policy.wit",
    ] {
        assert!(krate.join(file).is_file(), "{file} missing");
    }

    // Refusals: an existing directory, a bad name; nothing half-written is left behind.
    let again = ironhost(&["policy", "new", "topic-guard"], d);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let bad = ironhost(&["policy", "new", "Topic Guard"], d);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("not a valid policy name"),
        "{}",
        stderr(&bad)
    );
    let entries: Vec<_> = std::fs::read_dir(d)
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["topic-guard"], "nothing else was left behind");

    // The crate builds with plain cargo for wasm32-wasip2, exactly as its README says.
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let build = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .current_dir(&krate)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let check = ironhost(
        &[
            "policy",
            "check",
            "target/wasm32-wasip2/release/topic_guard.wasm",
        ],
        &krate,
    );
    assert!(check.status.success(), "{}", stderr(&check));
    let run = ironhost(
        &[
            "policy",
            "run",
            "--bundle",
            "bundle",
            "--hook",
            "llm-request",
            "--input",
            "inputs/requests.jsonl",
        ],
        &krate,
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let decisions: Vec<String> = stdout(&run)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["decision"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(decisions, ["continue", "deny"]);
}

#[test]
fn policy_run_never_prints_injected_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("b");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    std::fs::write(
        bundle.join("bundle.toml"),
        "[[policy]]\ncomponent = \"builtin:secrets-inject\"\ncapabilities = [\"config\", \"secrets\", \"events\"]\n[policy.config]\ninject = [{ env = \"SERP_API_KEY\" }, { env = \"CRM_TOKEN\" }]\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("agents.jsonl"),
        "{\"agent_id\":\"lg-1\",\"environment\":\"dev\"}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ironhost"))
        .args([
            "policy",
            "run",
            "--bundle",
            "b",
            "--hook",
            "agent-start",
            "--input",
            "agents.jsonl",
            "--secret",
            "SERP_API_KEY",
        ])
        .current_dir(dir.path())
        .env("IRONHOST_CACHE_DIR", dir.path().join("cache"))
        .env("SERP_API_KEY", "serp-value-4242")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains("serp-value-4242"),
        "the value leaked: {text}"
    );
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON");
    assert_eq!(
        line["value"]["env"],
        serde_json::json!([["SERP_API_KEY", "<set>"]])
    );
    assert_eq!(
        line["events"][0]["detail"]["missing"],
        serde_json::json!(["CRM_TOKEN"])
    );

    let missing = ironhost(
        &[
            "policy",
            "run",
            "--bundle",
            "b",
            "--hook",
            "agent-start",
            "--input",
            "agents.jsonl",
            "--secret",
            "NOPE_NOT_SET",
        ],
        dir.path(),
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("--secret NOPE_NOT_SET"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn the_default_bundle_is_built_into_the_binary() {
    // An empty directory: nothing on disk but the binary.
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["policy", "list", "--json"][..],
        &["policy", "list", "--bundle", "default", "--json"][..],
    ] {
        let out = ironhost(args, dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
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
                "circuit-breaker",
                "budget",
                "prompt-guard",
                "pii-redact"
            ]
        );
        assert!(rows.as_array().expect("rows").iter().all(|r| {
            r["component"]
                .as_str()
                .unwrap_or("")
                .starts_with("builtin:")
        }));
    }
    // A bundle of one's own can use built-in components by name; unknown names are refused.
    std::fs::create_dir_all(dir.path().join("b")).expect("mkdir");
    std::fs::write(
        dir.path().join("b/bundle.toml"),
        "[[policy]]\ncomponent = \"builtin:nope\"\n",
    )
    .expect("write");
    let out = ironhost(&["policy", "list", "--bundle", "b"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("builtin:nope: no such built-in component (built in: secrets-inject, circuit-breaker, budget, prompt-guard, pii-redact)"), "{}", stderr(&out));
}
