//! `ironhost start` end to end: real agent scripts (`tests/agents/`) using the official
//! `openai` and `anthropic` SDKs from `.venv`, the default bundle, and the simulator.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{ironhost_in, repo};

fn agent(name: &str) -> PathBuf {
    repo().join("tests/agents").join(name)
}

/// `ironhost start` in `dir`, offline, with the test virtualenv and no inherited settings.
fn ironhost(dir: &Path) -> Command {
    let mut c = ironhost_in(dir);
    c.env("IRONHOST_LLM_MODE", "simulator");
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    ironhost(dir)
        .arg("start")
        .args(args)
        .output()
        .expect("ironhost runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The text after `label: ` on stdout.
fn line<'a>(stdout: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
}

const EMAIL: &str = "jane.doe@example.org";
const ANSWER_EMAIL: &str = "sales@acme-corp.example.com";

#[test]
fn every_sdk_shape_is_redacted_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ironhost.toml"),
        format!(
            "[[simulator.replies]]\nwhen = \"contact\"\ntext = \"Our contact is {ANSWER_EMAIL}, write today.\"\n"
        ),
    )
    .unwrap();
    let out = run(dir.path(), &[agent("sdk_calls.py").to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for label in [
        "openai-sync-out",
        "openai-stream-out",
        "anthropic-sync-out",
        "openai-async-out",
        "anthropic-async-out",
    ] {
        // The echo model shows what the provider received.
        let got = line(&stdout, label);
        assert!(
            got.starts_with("Mail ") && got.contains("[EMAIL_REDACTED]") && !got.contains(EMAIL),
            "{label}: the prompt reached the provider as {got:?}"
        );
    }
    for label in [
        "openai-sync-in",
        "openai-stream-in",
        "anthropic-stream-in",
        "anthropic-sync-in",
        "openai-async-in",
        "openai-async-stream-in",
    ] {
        let got = line(&stdout, label);
        assert_eq!(
            got, "Our contact is [EMAIL_REDACTED], write today.",
            "{label}: the answer reached the agent as {got:?}"
        );
    }
    // The agent asked for usage on that stream, so it gets the usage chunk.
    assert_ne!(line(&stdout, "openai-stream-usage"), "None");
    // Nothing sensitive in the host's own log either.
    assert!(
        !stderr.contains(EMAIL) && !stderr.contains(ANSWER_EMAIL),
        "{stderr}"
    );
    assert!(stderr.contains("pii redacted email"), "{stderr}");
}

#[test]
fn a_budget_of_a_few_cents_stops_the_agent_with_budget_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "--budget",
            "0.03",
            agent("budget_loop.py").to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("call 1 done"), "{stdout}");
    assert!(
        stderr.contains("ironhost.errors.BudgetExceeded"),
        "the agent did not end with BudgetExceeded:\n{stderr}"
    );
    assert!(stderr.contains("denied: budget_exceeded"), "{stderr}");
    assert!(
        stderr.contains("/ $0.03"),
        "running total missing:\n{stderr}"
    );
}

#[test]
fn a_tool_failing_five_times_opens_the_circuit_and_the_fallback_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[agent("tool_circuit.py").to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        line(&stdout, "first"),
        "{'company': 'Acme', 'employees': 120}"
    );
    assert!(
        stdout.contains("failure 5: 429 Too Many Requests"),
        "{stdout}"
    );
    assert_eq!(
        line(&stdout, "fallback"),
        "{'company': 'Acme', 'employees': 120}"
    );
    // The circuit is open: the tool itself did not run for the fallback.
    assert_eq!(line(&stdout, "ran after open"), "0");
    assert_eq!(line(&stdout, "no fallback"), "circuit_open");
    assert!(
        stderr.contains("circuit opened for tool:linkedin"),
        "{stderr}"
    );
}

#[test]
fn provider_failures_are_retried_by_the_host_and_not_again_by_the_sdk() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ironhost.toml"),
        "[llm]\nbackoff-ms = 10\n\n\
         [[simulator.failures]]\nkind = \"rate-limit\"\nat-calls = [1]\nretry-after-ms = 50\n\n\
         [[simulator.failures]]\nkind = \"server-error\"\nat-calls = [3, 4, 5, 6, 7, 8, 9]\n",
    )
    .unwrap();
    let out = run(dir.path(), &[agent("retries.py").to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Call 1 was rate-limited, call 2 answered: one retry after the provider's wait.
    assert_eq!(line(&stdout, "first answered"), "True");
    assert!(
        stderr.contains("429 rate limited); retry 1 of 2 in 50 ms"),
        "{stderr}"
    );
    assert!(stderr.contains("| 2 attempts"), "{stderr}");
    // Calls 3-5 failed: the host tried 3 times, then the SDK got the 500 and did not retry
    // (it would have reached calls 6-9 and logged more attempts).
    assert_eq!(line(&stdout, "second failed"), "500");
    assert!(stderr.contains("| failed (500) | 3 attempts"), "{stderr}");
    assert_eq!(stderr.matches("| failed (500)").count(), 1, "{stderr}");
}

/// Start `slow_call.py` (answer in 60 s), send `signal` once it is waiting, and return the
/// exit code, stdout and stderr, and how long it took to stop.
/// `ironhost start ARGS slow_call.py` in `dir` with a simulator that takes a minute to answer,
/// once the agent has printed `calling`: the child, the rest of its stdout and what it printed.
fn slow_call_started(
    dir: &Path,
    args: &[&str],
) -> (
    std::process::Child,
    BufReader<std::process::ChildStdout>,
    String,
) {
    std::fs::write(
        dir.join("ironhost.toml"),
        "[simulator]\nlatency-ms = 60000\n",
    )
    .expect("test setup");
    let mut child = ironhost(dir)
        .arg("start")
        .args(args)
        .arg(agent("slow_call.py"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("test setup");
    let mut stdout = BufReader::new(child.stdout.take().expect("test setup"));
    let mut seen = String::new();
    while !seen.contains("calling") {
        let mut l = String::new();
        assert!(
            stdout.read_line(&mut l).expect("test setup") > 0,
            "agent ended early: {seen}"
        );
        seen.push_str(&l);
    }
    (child, stdout, seen)
}

fn stop_with(signal: &str) -> (Option<i32>, String, String, Duration) {
    let dir = tempfile::tempdir().expect("test setup");
    let (mut child, mut stdout, seen) = slow_call_started(dir.path(), &[]);
    // Let the call reach the simulator's wait.
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("test setup");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().expect("test setup") {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("test setup");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("test setup"), &mut err)
        .expect("test setup");
    (code, seen + &rest, err, took)
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn an_agent_whose_host_is_killed_ends_with_it_and_is_not_left_running() {
    let dir = tempfile::tempdir().expect("test setup");
    let (mut child, _stdout, seen) = slow_call_started(dir.path(), &["--no-api"]);
    let id = line(&seen, "agent_id").to_owned();
    let worker = seen
        .split("(process ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the agent prints its process id")
        .to_owned();
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    // The agent's process dies with its host: no agent runs on unsupervised.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ended(&worker) {
        assert!(
            Instant::now() < deadline,
            "the agent's process {worker} outlived its host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next ironhost process on this home finds the agent's process gone.
    let out = run(
        dir.path(),
        &["--no-api", agent("argv_env.py").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "agent {id} was left running by an ironhost process that ended without stopping it"
        )),
        "{}",
        text(&out.stderr)
    );
    let state = Command::new(common::venv().join("bin/python"))
        .args([
            "-c",
            "import sqlite3, sys; print(*sqlite3.connect(sys.argv[1]).execute('SELECT a.state, r.state FROM agents a JOIN agent_runs r ON r.agent_id = a.id WHERE a.id = ?', (sys.argv[2],)).fetchone())",
        ])
        .arg(dir.path().join(".ironhost/ironhost.db"))
        .arg(&id)
        .output()
        .expect("python");
    assert_eq!(
        text(&state.stdout).trim(),
        "failed failed",
        "{}",
        text(&state.stderr)
    );
}

#[test]
fn sigterm_during_a_call_stops_the_agent_cleanly() {
    let (code, stdout, stderr, took) = stop_with("-TERM");
    assert_eq!(code, Some(143), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Stopped through KeyboardInterrupt in the agent (its `finally` ran), not by the watchdog.
    assert!(stdout.contains("unwound"), "{stdout}");
    assert!(stderr.contains("agent stopped (exit 143)"), "{stderr}");
    assert!(!stderr.contains("did not stop within"), "{stderr}");
    // The call in flight was abandoned, so its budget reservation is released.
    assert!(stderr.contains("| cancelled"), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn sigint_during_a_call_exits_130() {
    let (code, stdout, stderr, _) = stop_with("-INT");
    assert_eq!(code, Some(130), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("unwound"), "{stdout}");
}

/// `crash_once.py` (with `extra` arguments) under `--restart on-failure:2`: the restarted run
/// sees the first run's spend under the same id. Returns stderr.
fn restarted_with_its_spend_kept(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("test setup");
    let script = agent("crash_once.py");
    let mut args = vec!["--restart", "on-failure:2", script.to_str().expect("path")];
    args.extend_from_slice(extra);
    let out = run(dir.path(), &args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let spent: f64 = line(&stdout, "run 1 spent").parse().expect("a number");
    assert!(spent > 0.0);
    let id = line(&stdout, "agent_id");
    assert!(
        stdout.contains(&format!("run 2 sees {spent:.6} spent by {id}")),
        "the restarted run lost the spend or the id:\n{stdout}"
    );
    assert!(
        stderr.contains("restarting in 1 s (restart 1 of 2)"),
        "{stderr}"
    );
    stderr
}

#[test]
fn a_crash_with_restart_on_failure_restarts_with_the_spent_budget_kept() {
    let stderr = restarted_with_its_spend_kept(&[]);
    assert!(
        stderr.contains("RuntimeError: the agent crashed"),
        "{stderr}"
    );
}

#[test]
fn a_crash_without_restart_exits_with_the_agents_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[agent("crash_once.py").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stdout).contains("run 2"));
}

#[test]
fn a_native_crash_in_the_agent_is_survived_and_restarted_with_its_spend_kept() {
    let stderr = restarted_with_its_spend_kept(&["--", "--segfault"]);
    assert!(stderr.contains("killed by signal 11 (SIGSEGV)"), "{stderr}");
    let script = agent("crash_once.py");

    // Without a restart policy the host reports the crash and exits as a shell would (139).
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[script.to_str().unwrap(), "--", "--segfault"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(139), "{stderr}");
    assert!(
        stderr.contains("agent failed (exit 139, its process killed by signal 11 (SIGSEGV))"),
        "{stderr}"
    );
}

const TAKEOVER_STEPS: [&str; 15] = [
    "os-environ",
    "proc-self-environ",
    "proc-environ-scan",
    "host-memory",
    "host-fds",
    "home-listing",
    "read-ironhost.db",
    "read-master.key",
    "home-write",
    "store-write",
    "umount",
    "umount-in-new-namespace",
    "raw-disk",
    "signal-host",
    "capabilities",
];

/// Run `tests/agents/takeover.py` with a known master key and admin password (the home in
/// `dir/.ironhost`, or `dir` itself with `home_is_cwd`); its stdout.
fn takeover(dir: &Path, isolation: Option<&str>, home_is_cwd: bool) -> String {
    let home = if home_is_cwd {
        dir.to_path_buf()
    } else {
        dir.join(".ironhost")
    };
    let (key, password) = (
        "takeover-master-key-0123456789abcdef",
        "takeover-admin-pw-42",
    );
    let known = dir.join("known-secrets.txt");
    std::fs::write(&known, format!("{key}\n{password}\n")).expect("test setup");
    let mut cmd = ironhost(dir);
    cmd.env("IRONHOST_MASTER_KEY", key)
        .env("IRONHOST_ADMIN_PASSWORD", password);
    if let Some(i) = isolation {
        cmd.env("IRONHOST_ISOLATION", i);
    }
    if home_is_cwd {
        cmd.env("IRONHOST_HOME", ".");
    }
    let out = cmd
        .args(["start", "--no-api"])
        .arg(agent("takeover.py"))
        .args([
            "--",
            home.to_str().expect("path"),
            known.to_str().expect("path"),
        ])
        .output()
        .expect("ironhost runs");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("takeover attempt finished"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

#[test]
fn agent_code_cannot_reach_the_master_key_the_store_or_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = takeover(dir.path(), None, false);
    for step in TAKEOVER_STEPS {
        assert!(
            stdout.contains(&format!("step {step}: blocked")),
            "step {step} was not blocked:\n{stdout}"
        );
    }
    assert!(!stdout.contains("LEAK"), "{stdout}");
    // The store is the host's alone: nothing was planted, and it still opens with the key.
    let home = dir.path().join(".ironhost");
    assert!(!home.join("planted").exists());
    assert!(home.join("ironhost.db").is_file());
}

#[test]
fn an_agent_working_inside_the_home_still_cannot_reach_the_store_or_the_key() {
    // IRONHOST_HOME=. in the agent's own folder: the folder stays the agent's, ironhost's own
    // entries in it are covered one by one.
    let dir = tempfile::tempdir().expect("test setup");
    let stdout = takeover(dir.path(), None, true);
    for step in TAKEOVER_STEPS
        .iter()
        .filter(|s| !matches!(**s, "home-listing" | "home-write"))
    {
        assert!(
            stdout.contains(&format!("step {step}: blocked")),
            "step {step} was not blocked:\n{stdout}"
        );
    }
    // The store is intact beneath the covers.
    assert!(
        dir.path()
            .join("ironhost.db")
            .metadata()
            .expect("store")
            .len()
            > 0
    );
}

#[test]
fn process_isolation_keeps_the_environment_clean_but_not_the_home() {
    // The weaker setting for kernels without user namespaces or Landlock, as documented: the
    // host's variables and memory stay out of reach, the files of its user do not.
    let dir = tempfile::tempdir().unwrap();
    let stdout = takeover(dir.path(), Some("process"), false);
    for step in [
        "os-environ",
        "proc-self-environ",
        "proc-environ-scan",
        "host-memory",
    ] {
        assert!(
            stdout.contains(&format!("step {step}: blocked")),
            "step {step} was not blocked:\n{stdout}"
        );
    }
    assert!(stdout.contains("step read-ironhost.db: LEAK"), "{stdout}");
}

#[test]
fn the_script_runs_as_main_with_its_arguments_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[agent("argv_env.py").to_str().unwrap(), "--", "--leads", "5"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}");
    assert_eq!(line(&stdout, "argv"), "['--leads', '5']");
    assert_eq!(line(&stdout, "name"), "__main__");
    let id = line(&stdout, "agent_id");
    assert_eq!(line(&stdout, "id"), id);
    // `ae-` from argv_env.py, then 8 hex digits.
    let (prefix, hex) = id.split_once('-').unwrap();
    assert_eq!(prefix, "ae");
    assert!(
        hex.len() == 8 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
}

#[test]
fn log_lines_carry_time_and_agent_id_and_json_logs_parse() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["--budget", "50", agent("crash_once.py").to_str().unwrap()],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let id = line(&stdout, "agent_id").to_owned();
    let call = stderr
        .lines()
        .find(|l| l.contains(" llm gpt-4o "))
        .unwrap_or_else(|| panic!("no call line:\n{stderr}"));
    // [HH:MM:SS] lg-xxxxxxxx llm MODEL IN→OUT tok $COST | $TOTAL / $LIMIT | N ms
    let b = call.as_bytes();
    assert!(
        b[0] == b'[' && b[3] == b':' && b[6] == b':' && b[9] == b']',
        "{call}"
    );
    assert!(call[11..].starts_with(&id), "{call}");
    assert!(call.contains(" / $50.00 | "), "{call}");

    let out = run(
        dir.path(),
        &[
            "--log-format",
            "json",
            agent("crash_once.py").to_str().unwrap(),
        ],
    );
    let stderr = text(&out.stderr);
    let mut parsed = 0;
    for l in stderr.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["agent_id"].as_str().unwrap().starts_with("co-"), "{l}");
        assert!(v["message"].is_string() && v["level"].is_string());
        parsed += 1;
    }
    assert!(parsed >= 3, "{stderr}");
}

/// Every refused setting: exit code 2, one message naming the setting and why, nothing run.
#[test]
fn config_errors_are_refused_before_anything_starts() {
    let script = agent("argv_env.py");
    let script = script.to_str().unwrap();
    let no_budget_bundle = repo().join("tests/fixtures/bundle");
    // (arguments, ironhost.toml, environment, expected message)
    type Case<'a> = (
        Vec<&'a str>,
        Option<&'a str>,
        Vec<(&'a str, &'a str)>,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            vec!["--budget", "-5", script],
            None,
            vec![],
            "budget: -5 is not a positive amount of US dollars (from --budget)",
        ),
        (
            vec!["--budget", "0", script],
            None,
            vec![],
            "budget: 0 is not a positive amount",
        ),
        (
            vec!["missing_agent.py"],
            None,
            vec![],
            "missing_agent.py: the agent script does not exist",
        ),
        (
            vec!["--bundle", "no/such/bundle", script],
            None,
            vec![],
            "bundle: ",
        ),
        (
            vec!["--safety-mode", "shout", script],
            None,
            vec![],
            "safety-mode: `shout` is not `redact`, `block` or `warn`",
        ),
        (
            vec!["--restart", "sometimes", script],
            None,
            vec![],
            "restart: `sometimes` is not `no`, `on-failure` or `on-failure:N`",
        ),
        (
            vec!["--env", "qa", script],
            None,
            vec![],
            "env: `qa` is not `dev`, `staging` or `production`",
        ),
        (
            vec![script],
            Some("budgett = 5\n"),
            vec![],
            "config: budgett: unknown field `budgett`",
        ),
        (
            vec![script],
            Some("budget = \"lots\"\n"),
            vec![],
            "config: budget: invalid type: string \"lots\", expected f64",
        ),
        (
            vec![script],
            Some("budget = -2.5\n"),
            vec![],
            "budget: -2.5 is not a positive amount of US dollars (from ",
        ),
        (
            vec![script],
            Some("[llm]\ntimeout-ms = \"soon\"\n"),
            vec![],
            "config: llm.timeout-ms: invalid type",
        ),
        (
            vec![script],
            None,
            vec![("IRONHOST_BUDGET", "abc")],
            "budget: `abc` is not a number (from IRONHOST_BUDGET)",
        ),
        (
            vec![script],
            None,
            vec![("IRONHOST_BUDGTE", "5")],
            "IRONHOST_BUDGTE: unknown setting",
        ),
        (
            vec![
                "--budget",
                "5",
                "--bundle",
                no_budget_bundle.to_str().unwrap(),
                script,
            ],
            None,
            vec![],
            "has no `budget` policy",
        ),
        (
            vec!["--config", "nope.toml", script],
            None,
            vec![],
            "config: config: cannot read",
        ),
    ];
    for (args, file, env, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        if let Some(f) = file {
            std::fs::write(dir.path().join("ironhost.toml"), f).unwrap();
        }
        let mut cmd = ironhost(dir.path());
        cmd.arg("start").args(&args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} {file:?} {env:?}: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{args:?} {file:?} {env:?}: expected {expected:?} in:\n{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!stdout.contains("agent_id"), "something started: {stdout}");
    }
}

#[test]
fn spend_survives_a_new_process_under_the_same_agent_id() {
    let dir = tempfile::tempdir().unwrap();
    let script = agent("budget_loop.py");
    let script = script.to_str().unwrap();
    let first = run(
        dir.path(),
        &[
            "--budget",
            "0.03",
            "--agent-id",
            "bl-0000beef",
            "--no-api",
            script,
        ],
    );
    let stdout = text(&first.stdout);
    assert_eq!(
        first.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&first.stderr)
    );
    assert!(stdout.contains("agent_id: bl-0000beef"), "{stdout}");
    assert!(stdout.contains("call 1 done"), "{stdout}");

    // A new process, the same agent: the budget policy's spend comes back from the store, so
    // the very first call is refused.
    let again = run(
        dir.path(),
        &[
            "--budget",
            "0.03",
            "--agent-id",
            "bl-0000beef",
            "--no-api",
            script,
        ],
    );
    let (stdout, stderr) = (text(&again.stdout), text(&again.stderr));
    assert_eq!(again.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("call 1 done"),
        "the spend was forgotten:\n{stdout}"
    );
    assert!(
        stderr.contains("ironhost.errors.BudgetExceeded"),
        "{stderr}"
    );

    // Another agent id starts from zero.
    let other = run(dir.path(), &["--budget", "0.03", "--no-api", script]);
    assert!(
        text(&other.stdout).contains("call 1 done"),
        "{}",
        text(&other.stdout)
    );

    let bad = run(dir.path(), &["--agent-id", "no spaces", "--no-api", script]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--agent-id"),
        "{}",
        text(&bad.stderr)
    );
}

/// The count before `marker` in each stderr line that has it, summed.
fn counted(stderr: &str, marker: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.contains(marker))
        .map(|l| {
            let before = &l[..l.find(marker).expect("marker")];
            before
                .split_whitespace()
                .last()
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count before {marker:?} in {l}"))
        })
        .sum()
}

#[test]
fn an_event_flood_from_a_policy_loses_no_call_or_audit_record() {
    let dir = tempfile::tempdir().expect("test setup");
    let bundle = dir.path().join("swamp");
    std::fs::create_dir(&bundle).expect("test setup");
    std::fs::write(
        bundle.join("bundle.toml"),
        format!(
            "[bundle]\nname = \"swamp\"\n\n[[policy]]\ncomponent = {:?}\ncapabilities = [\"config\", \"log\", \"events\"]\n\n\
             [[policy]]\ncomponent = \"builtin:pii-redact\"\ncapabilities = [\"config\", \"events\"]\n[policy.config]\nmode = \"redact\"\n",
            ironhost_fixtures::HOSTILE
        ),
    )
    .expect("test setup");
    // 200 calls in two bursts a second apart; the hostile policy emits 64 events on each of
    // its passes (it is checked again after pii-redact's rewrite): 25,600 events.
    let out = run(
        dir.path(),
        &[
            "--bundle",
            "swamp",
            "--no-api",
            "--agent-id",
            "sw-00000001",
            agent("call_loop.py").to_str().expect("test setup"),
            "--",
            "200",
            "swamp",
            "--pause",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("200 calls done"), "{stdout}");

    let (calls, audit, stored) = tokio::runtime::Runtime::new()
        .expect("test setup")
        .block_on(async {
            let store = ironhost::store::Store::open(&dir.path().join(".ironhost"))
                .await
                .expect("store");
            let count = |sql: &'static str| {
                let pool = store.pool().clone();
                async move {
                    sqlx::query_scalar::<_, i64>(sql)
                        .bind("sw-00000001")
                        .fetch_one(&pool)
                        .await
                        .expect(sql)
                }
            };
            (
                count("SELECT COUNT(*) FROM calls WHERE agent_id = ? AND kind = 'llm'").await,
                count("SELECT COUNT(*) FROM pii_audit WHERE agent_id = ?").await,
                count("SELECT COUNT(*) FROM events WHERE agent_id = ? AND type = 'policy'").await,
            )
        });
    // Every call record and every audit row is in the store.
    assert_eq!(calls, 200, "{stderr}");
    assert_eq!(audit, 200, "{stderr}");
    // The flood is held to 1,000 events a second, and what was dropped is counted in a few
    // aggregated warnings (one a second), not a line per event.
    let dropped = counted(&stderr, " events from policy `hostile` dropped");
    let shed = counted(&stderr, " cost and policy events were not stored");
    assert!(dropped > 0, "nothing was held back:\n{stderr}");
    assert_eq!(stored as u64 + dropped + shed, 25_600, "{stderr}");
    let warnings = stderr.lines().filter(|l| l.contains("hostile")).count();
    assert!(
        warnings <= 10,
        "{warnings} lines about the policy:\n{stderr}"
    );
}

#[test]
fn a_stderr_nobody_reads_does_not_hold_up_the_agent() {
    let dir = tempfile::tempdir().expect("test setup");
    // Each call logs a line; 3,000 are about four times what a pipe holds.
    let mut child = ironhost(dir.path())
        .args([
            "start",
            "--no-api",
            agent("call_loop.py").to_str().expect("test setup"),
            "--",
            "3000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("test setup");
    let stdout = child.stdout.take().expect("test setup");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut all);
        let _ = tx.send(all);
    });
    // Nothing reads stderr until the agent is done. A generous bound: the calls take a few
    // seconds; an agent blocked on its log would never finish.
    let finished = rx.recv_timeout(Duration::from_secs(300));
    let Ok(stdout) = finished else {
        let _ = child.kill();
        panic!("the agent did not finish while its stderr was not read");
    };
    let status = child.wait().expect("test setup");
    assert!(stdout.contains("3000 calls done"), "{stdout}");
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("test setup"), &mut err)
        .expect("test setup");
    // What stderr took is whole lines, in order; the rest was dropped, not half-written.
    assert!(err.contains("starting "), "{err}");
    for line in err.lines() {
        assert!(
            line.starts_with('[') || line.starts_with("ironhost: "),
            "a broken line: {line:?}"
        );
    }
}

#[test]
fn one_agent_id_runs_in_one_process_at_a_time_and_each_run_keeps_its_call_records() {
    let dir = tempfile::tempdir().expect("test setup");
    let id = "du-00000001";
    let (mut first, _stdout, _) = slow_call_started(dir.path(), &["--no-api", "--agent-id", id]);
    // While the first runs, a second process under the same id is refused before it starts.
    let again = run(
        dir.path(),
        &[
            "--no-api",
            "--agent-id",
            id,
            agent("call_loop.py").to_str().expect("test setup"),
        ],
    );
    let _ = first.kill();
    let _ = first.wait();
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "agent_id: agent `{id}` is already running (process {})",
            first.id()
        )),
        "{stderr}"
    );
    assert!(!text(&again.stdout).contains("calls done"));

    // Once it is gone (killed: the OS let go of its lock), the id runs again; two runs' calls
    // are all in the store, under distinct ids.
    std::fs::write(dir.path().join("ironhost.toml"), "").expect("test setup");
    for _ in 0..2 {
        let out = run(
            dir.path(),
            &[
                "--no-api",
                "--agent-id",
                id,
                agent("call_loop.py").to_str().expect("test setup"),
                "--",
                "3",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let ids: Vec<String> = tokio::runtime::Runtime::new()
        .expect("test setup")
        .block_on(async {
            let store = ironhost::store::Store::open(&dir.path().join(".ironhost"))
                .await
                .expect("store");
            sqlx::query_scalar("SELECT id FROM calls WHERE agent_id = ? AND kind = 'llm'")
                .bind(id)
                .fetch_all(store.pool())
                .await
                .expect("calls")
        });
    assert_eq!(ids.len(), 6, "{ids:?}");
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 6, "{ids:?}");
}

#[test]
fn audit_verify_passes_an_untouched_store_and_names_the_row_rewritten_behind_its_back() {
    let dir = tempfile::tempdir().expect("test setup");
    let master = "audit-cli-master-key-0123456789";
    let start = |args: &[&str]| {
        ironhost(dir.path())
            .env("IRONHOST_MASTER_KEY", master)
            .args(["start", "--no-api"])
            .args(args)
            .output()
            .expect("ironhost runs")
    };
    let calls = agent("call_loop.py");
    let out = start(&[calls.to_str().unwrap(), "--", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verify = || {
        ironhost(dir.path())
            .env("IRONHOST_MASTER_KEY", master)
            .args(["audit", "verify"])
            .output()
            .expect("ironhost runs")
    };
    let out = verify();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("pii_audit: 3 rows, chain intact"),
        "{stdout}"
    );
    assert!(
        stdout.contains("secret_audit_log: 0 rows, chain intact"),
        "{stdout}"
    );

    // Someone with the database file rewrites a finding (the triggers do not see REPLACE).
    let db = dir.path().join(".ironhost/ironhost.db");
    let tamper = Command::new(common::venv().join("bin/python"))
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(\"REPLACE INTO pii_audit SELECT id, ts_ms, agent_id, call_id, policy, 'none', severity, location, action, value_hash, value_nonce, value_ciphertext, chain_hash FROM pii_audit WHERE id = 2\"); c.commit()",
        ])
        .arg(&db)
        .output()
        .expect("python");
    assert!(tamper.status.success(), "{}", text(&tamper.stderr));
    let out = verify();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("pii_audit: 3 rows, TAMPERED:")
            && stdout.contains("row 2 does not match its seal"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("the audit chain is broken in pii_audit"),
        "{}",
        text(&out.stderr)
    );
    // The next start says so too, loudly, and still runs the agent.
    let out = start(&[calls.to_str().unwrap(), "--", "1"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ERROR")
            && stderr.contains("`pii_audit`")
            && stderr.contains("has been tampered with"),
        "{stderr}"
    );
    // Without the master key there is nothing to verify with.
    let out = ironhost(dir.path())
        .env("IRONHOST_MASTER_KEY", "another-master-key-0123456789")
        .args(["audit", "verify"])
        .output()
        .expect("ironhost runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
