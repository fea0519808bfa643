//! What the host does with each fixture policy: real components, real engine, real limits.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ironhost::model::*;
use ironhost::policy::admission::{AdmissionError, admit_policy};
use ironhost::policy::bundle::{Bundle, FailureMode, PolicyEntry};
use ironhost::policy::chain::{Chain, Outcome, POLICY_FAILED, VerdictKind};
use ironhost::policy::engine::{CompileSource, EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;
use ironhost::policy::inspect::InspectError;
use ironhost::policy::instance::FailureKind;
use ironhost::policy::meter::EPOCH_TICK;
use ironhost::policy::meter::thread_cpu_time;
use ironhost::policy::state::{MemoryState, StateBackend, StateKey};
use ironhost::policy::{Capability, admit_bundle};
use ironhost_fixtures as fx;

struct Host {
    engine: PolicyEngine,
    state: Arc<MemoryState>,
}

/// One engine for the whole test binary, as in the real host (one ticker, one cache).
fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let state = Arc::new(MemoryState::default());
        let services = HostServices {
            state: state.clone(),
            ..HostServices::default()
        };
        let options = EngineOptions::in_memory(256);
        Host {
            engine: PolicyEngine::new(options, services).expect("engine"),
            state,
        }
    })
}

fn entry(component: &str) -> PolicyEntry {
    PolicyEntry::for_component(PathBuf::from(component))
}

fn with_caps(mut e: PolicyEntry, caps: &[Capability]) -> PolicyEntry {
    e.capabilities = caps.iter().copied().collect();
    e
}

fn with_mode(mut e: PolicyEntry, mode: FailureMode) -> PolicyEntry {
    e.failure_mode = mode;
    e
}

fn chain_of(entries: Vec<PolicyEntry>) -> Chain {
    let policies = entries
        .iter()
        .map(|e| admit_policy(&host().engine, e).unwrap_or_else(|err| panic!("admission: {err}")))
        .collect();
    Chain::new("test", policies)
}

fn ctx(agent: &str) -> CallContext {
    CallContext::new(agent, "c1")
}

fn request(text: &str) -> LlmRequest {
    let messages = vec![
        Message::text(Role::System, "be brief"),
        Message::text(Role::User, text),
    ];
    let mut r = LlmRequest::new("openai", "gpt-4o-mini", messages);
    r.max_output_tokens = Some(100);
    r
}

fn response(text: &str) -> LlmResponse {
    LlmResponse {
        id: "r1".into(),
        ..LlmResponse::text("gpt-4o-mini", text, Some(Usage::new(10, 5)))
    }
}

fn tool(name: &str) -> ToolCall {
    ToolCall {
        id: "t1".into(),
        name: name.into(),
        arguments: r#"{"q":"x"}"#.into(),
    }
}

fn continued<T: std::fmt::Debug>(o: Outcome<T>) -> T {
    match o {
        Outcome::Continue { value } => value,
        other => panic!("expected continue, got {other:?}"),
    }
}

fn denial<T: std::fmt::Debug>(o: Outcome<T>) -> (String, Denial) {
    match o {
        Outcome::Deny { policy, denial } => (policy, denial),
        other => panic!("expected deny, got {other:?}"),
    }
}

#[test]
fn allow_all_passes_every_hook_unchanged() {
    let chain = chain_of(vec![entry(fx::ALLOW_ALL)]);
    let c = ctx("allow");
    let run = chain.on_llm_request(&c, request("hello"));
    assert_eq!(run.policies.len(), 1);
    assert_eq!(run.policies[0].verdict, VerdictKind::Pass);
    assert_eq!(continued(run.outcome), request("hello"));

    let out = chain.on_llm_response(&c, request("hello"), LlmOutcome::Ok(response("hi")));
    assert_eq!(continued(out.outcome), LlmOutcome::Ok(response("hi")));

    let mut stream = chain.stream(&c);
    let a = stream.push(LlmChunk {
        index: 0,
        text: "he".into(),
        finish_reason: None,
        usage: None,
        last: false,
    });
    let b = stream.push(LlmChunk {
        index: 1,
        text: "llo".into(),
        finish_reason: Some("stop".into()),
        usage: None,
        last: true,
    });
    assert_eq!(continued(a.outcome) + &continued(b.outcome), "hello");

    assert_eq!(
        continued(chain.on_tool_call(&c, tool("search")).outcome),
        tool("search")
    );
    let result = ToolOutcome::Ok(r#"{"n":1}"#.into());
    assert_eq!(
        continued(
            chain
                .on_tool_result(&c, tool("search"), result.clone())
                .outcome
        ),
        result
    );

    let agent = AgentInfo {
        agent_id: "allow".into(),
        name: "t".into(),
        environment: "dev".into(),
    };
    assert_eq!(
        continued(chain.on_agent_start(&agent).outcome),
        StartEffects::default()
    );
}

#[test]
fn deny_all_stops_the_chain_before_later_policies() {
    let chain = chain_of(vec![entry(fx::DENY_ALL), entry(fx::ALLOW_ALL)]);
    let run = chain.on_llm_request(&ctx("deny"), request("hello"));
    // allow-all never ran: the first deny stops the call.
    assert_eq!(run.policies.len(), 1);
    let (policy, d) = denial(run.outcome);
    assert_eq!(policy, "deny-all");
    assert_eq!(d.code, "denied_by_fixture");
    assert!(d.message.contains("gpt-4o-mini"));

    let (_, d) = denial(chain.on_tool_call(&ctx("deny"), tool("delete")).outcome);
    assert_eq!(d.message, "tool delete is not allowed");
    let stats = chain.snapshot().members[0].policy.stats.snapshot();
    assert_eq!((stats.calls, stats.denials, stats.failures), (2, 2, 0));
}

#[test]
fn monitor_mode_records_denials_without_enforcing_them() {
    let chain = chain_of(vec![
        with_mode(entry(fx::DENY_ALL), FailureMode::Monitor),
        entry(fx::ALLOW_ALL),
    ]);
    let run = chain.on_llm_request(&ctx("monitor"), request("hello"));
    assert_eq!(run.policies.len(), 2);
    assert_eq!(run.policies[0].verdict, VerdictKind::Deny);
    assert!(!run.policies[0].enforced);
    assert_eq!(
        run.policies[0].denial.as_ref().map(|d| d.code.as_str()),
        Some("denied_by_fixture")
    );
    assert_eq!(continued(run.outcome), request("hello"));
}

#[test]
fn verdicts_on_an_already_streamed_answer_are_recorded_not_applied() {
    let chain = chain_of(vec![entry(fx::DENY_ALL)]);
    let mut streamed = request("hello");
    streamed.stream = true;
    let answer = LlmOutcome::Ok(response("hi"));
    let run = chain.on_llm_response(&ctx("streamed"), streamed, answer.clone());
    assert_eq!(run.policies[0].verdict, VerdictKind::Deny);
    assert!(!run.policies[0].enforced);
    assert_eq!(continued(run.outcome), answer);
    // The same answer to a non-streamed request is denied.
    let run = chain.on_llm_response(&ctx("streamed"), request("hello"), answer);
    assert_eq!(denial(run.outcome).0, "deny-all");
}

#[test]
fn rewrite_changes_what_later_policies_and_the_caller_see() {
    let rewrite = with_caps(entry(fx::REWRITE), &[Capability::Events, Capability::State]);
    // A later policy sees the rewritten request: this guard denies the redaction marker.
    let mut guard = with_caps(entry(fx::KEYWORD_GUARD), &[Capability::Config]);
    guard.config = serde_json::json!({"keyword": "[redacted] and your [redacted]"});
    let guarded = chain_of(vec![rewrite.clone(), guard]);
    let run = guarded.on_llm_request(
        &ctx("rewrite-guarded"),
        request("my secret and your secret"),
    );
    assert_eq!(denial(run.outcome).0, "keyword-guard");
    assert_eq!(
        continued(
            guarded
                .on_llm_request(&ctx("rewrite-guarded"), request("x"))
                .outcome
        ),
        request("x")
    );

    let chain = chain_of(vec![rewrite]);
    let agent = "rewrite-agent";
    let run = chain.on_llm_request(&ctx(agent), request("my secret and your secret"));
    assert_eq!(run.policies[0].verdict, VerdictKind::Rewrite);
    let events: Vec<_> = run.events().collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "fixture.rewrite");
    assert_eq!(events[0].severity, Severity::Medium);
    assert_eq!(events[0].detail["count"], 2);
    // The event carries a keyed fingerprint of the value, never the value or a plain hash.
    let fingerprint = host().engine.services().fingerprints.fingerprint("secret");
    assert_eq!(events[0].detail["fingerprint"], fingerprint.as_str());
    assert!(!events[0].detail.to_string().contains("\"secret\""));
    let sent = continued(run.outcome);
    assert_eq!(
        sent.messages[1].joined_text(),
        "my [redacted] and your [redacted]"
    );

    // The response and tool result are rewritten too, and the count lives in host state,
    // scoped to this policy and agent.
    let out = chain.on_llm_response(&ctx(agent), sent, LlmOutcome::Ok(response("the secret")));
    match continued(out.outcome) {
        LlmOutcome::Ok(r) => assert_eq!(r.message.joined_text(), "the [redacted]"),
        other => panic!("{other:?}"),
    }
    let result = chain.on_tool_result(
        &ctx(agent),
        tool("search"),
        ToolOutcome::Ok(r#"{"v":"secret"}"#.into()),
    );
    assert_eq!(
        continued(result.outcome),
        ToolOutcome::Ok(r#"{"v":"[redacted]"}"#.into())
    );
    let key = StateKey {
        policy: "rewrite".into(),
        agent: Some(agent.into()),
        key: "rewrites".into(),
    };
    assert_eq!(host().state.get(&key).as_deref(), Some("4"));
}

#[test]
fn rewrite_catches_a_word_split_across_stream_chunks() {
    let chain = chain_of(vec![with_caps(
        entry(fx::REWRITE),
        &[Capability::Events, Capability::State],
    )]);
    let mut stream = chain.stream(&ctx("stream-agent"));
    let emitted = push_all(&mut stream, &["the se", "cr", "et is o", "ut, sec", "ret"]);
    // A possible start of the word is held back until the next chunk decides it, so no
    // fragment of it is ever released, and nothing else is held longer than needed.
    assert_eq!(
        emitted,
        ["the ", "", "[redacted] is o", "ut, ", "[redacted]"]
    );
    // After the last chunk the stream is finished.
    let after = stream.push(LlmChunk {
        index: 9,
        text: "x".into(),
        finish_reason: None,
        usage: None,
        last: false,
    });
    assert_eq!(denial(after.outcome).1.code, "stream_finished");
}

#[test]
fn respond_and_fallback_short_circuit_the_call() {
    let chain = chain_of(vec![
        with_caps(entry(fx::REWRITE), &[Capability::Events, Capability::State]),
        entry(fx::DENY_ALL),
    ]);
    match chain
        .on_llm_request(&ctx("short"), request("a canned question"))
        .outcome
    {
        Outcome::Respond { policy, response } => {
            assert_eq!(policy, "rewrite");
            assert_eq!(response.message.joined_text(), "canned answer");
        }
        other => panic!("{other:?}"),
    }
    match chain.on_tool_call(&ctx("short"), tool("cached")).outcome {
        Outcome::Fallback { policy, result } => {
            assert_eq!(policy, "rewrite");
            assert_eq!(result, r#"{"cached":true}"#);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn infinite_loop_is_stopped_within_three_deadlines_of_cpu_and_the_host_keeps_serving() {
    let chain = chain_of(vec![entry(fx::INFINITE_LOOP)]);
    let deadline = Duration::from_millis(10);
    // The deadline is CPU time of the calling thread (see `policy::meter`), charged from the
    // first epoch tick: what ran before it counts as at most one tick.
    let cpu = thread_cpu_time();
    let run = chain.on_llm_request(&ctx("loop"), request("please spin"));
    let used = thread_cpu_time() - cpu;
    let report = &run.policies[0];
    let failure = report.failure.as_ref().expect("a failure");
    assert_eq!(failure.kind, FailureKind::Deadline);
    assert!(used < deadline * 3, "stopped after {used:?} of CPU");
    assert!(
        used >= deadline - EPOCH_TICK,
        "stopped early, after {used:?} of CPU"
    );
    // fail-closed is the default: the call is denied, naming the policy and the reason.
    let (policy, d) = denial(run.outcome);
    assert_eq!(policy, "infinite-loop");
    assert_eq!(d.code, POLICY_FAILED);
    assert!(
        d.message.contains("deadline of 10 ms exceeded"),
        "{}",
        d.message
    );
    // The next call is served by a fresh instance.
    let next = chain.on_llm_request(&ctx("loop"), request("hello"));
    assert_eq!(continued(next.outcome), request("hello"));
}

#[test]
fn memory_hog_is_capped_and_the_host_keeps_serving() {
    let mut e = with_mode(entry(fx::MEMORY_HOG), FailureMode::FailOpen);
    e.memory_mib = 8;
    // The memory cap is under test, not the deadline: on a loaded machine, growing 8 MiB can
    // take longer than the default 10 ms.
    e.deadline_ms = 2000;
    let chain = chain_of(vec![e]);
    let run = chain.on_llm_request(&ctx("hog"), request("hog it all"));
    let failure = run.policies[0].failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::MemoryLimit);
    assert!(
        failure.message.contains("memory limit of 8 MiB"),
        "{}",
        failure.message
    );
    // fail-open: the call goes on unchanged.
    assert_eq!(continued(run.outcome), request("hog it all"));
    let next = chain.on_llm_request(&ctx("hog"), request("hello"));
    assert!(next.policies[0].failure.is_none());
}

#[test]
fn trap_follows_each_failure_mode() {
    let trap = |mode| with_mode(with_caps(entry(fx::TRAP), &[Capability::Config]), mode);

    let closed = chain_of(vec![trap(FailureMode::FailClosed)]);
    let run = closed.on_llm_request(&ctx("trap"), request("boom"));
    let failure = run.policies[0].failure.clone().expect("a failure");
    assert!(
        failure.message.contains("fixture trap on purpose"),
        "the report keeps the panic message: {}",
        failure.message
    );
    let (_, d) = denial(run.outcome);
    assert_eq!(d.code, POLICY_FAILED);
    // The agent sees the kind of failure, never the policy's own output.
    assert_eq!(d.message, "policy `trap` failed: it trapped");
    assert_eq!(
        run.policies[0].failure.as_ref().map(|f| f.kind),
        Some(FailureKind::Trap)
    );

    let open = chain_of(vec![trap(FailureMode::FailOpen), entry(fx::DENY_ALL)]);
    let run = open.on_llm_request(&ctx("trap"), request("boom"));
    assert_eq!(run.policies[0].verdict, VerdictKind::Failed);
    assert!(!run.policies[0].enforced);
    // The chain went on to the next policy.
    assert_eq!(denial(run.outcome).0, "deny-all");

    let monitor = chain_of(vec![trap(FailureMode::Monitor)]);
    let run = monitor.on_llm_request(&ctx("trap"), request("boom"));
    assert_eq!(continued(run.outcome), request("boom"));
    assert_eq!(run.policies[0].verdict, VerdictKind::Failed);

    // After each trap the next call works.
    for chain in [&closed, &open, &monitor] {
        let run = chain.on_llm_request(&ctx("trap"), request("fine"));
        assert!(run.policies[0].failure.is_none());
    }
    let stats = closed.snapshot().members[0].policy.stats.snapshot();
    assert_eq!((stats.calls, stats.failures), (2, 1));
}

#[test]
fn a_capability_that_is_not_granted_is_refused_at_admission() {
    let err = admit_policy(&host().engine, &entry(fx::UNGRANTED)).expect_err("refused");
    assert!(matches!(
        err,
        AdmissionError::NotGranted {
            capability: Capability::Secrets,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("fixture_ungranted.wasm"), "{msg}");
    assert!(msg.contains("imports the `secrets` capability, which its bundle entry does not grant (granted: none)"), "{msg}");
    // Granted, it is admitted and its import works (this host has no secrets to give).
    let chain = chain_of(vec![with_caps(
        entry(fx::UNGRANTED),
        &[Capability::Secrets],
    )]);
    assert_eq!(
        denial(chain.on_llm_request(&ctx("s"), request("x")).outcome)
            .1
            .code,
        "no_key"
    );
}

#[test]
fn a_component_built_against_another_wit_version_is_refused() {
    let err = admit_policy(&host().engine, &entry(fx::WRONG_WIT)).expect_err("refused");
    match &err {
        AdmissionError::Inspect {
            source: InspectError::UnsupportedWit { found },
            ..
        } => assert_eq!(found, "0.9.0"),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("built against ironhost:policy@0.9.0")
    );
}

#[test]
fn validate_config_and_the_probe_call_gate_admission() {
    let guard = with_caps(entry(fx::KEYWORD_GUARD), &[Capability::Config]);
    let err = admit_policy(&host().engine, &guard).expect_err("no keyword");
    assert!(matches!(err, AdmissionError::Config { .. }));
    assert!(
        err.to_string()
            .ends_with("policy `keyword-guard` rejected its config: `keyword` is required"),
        "{err}"
    );

    let mut configured = guard.clone();
    configured.config = serde_json::json!({"keyword": "forbidden"});
    let chain = chain_of(vec![configured]);
    assert_eq!(
        denial(
            chain
                .on_llm_request(&ctx("k"), request("a forbidden word"))
                .outcome
        )
        .1
        .code,
        "keyword"
    );
    assert_eq!(
        continued(chain.on_llm_request(&ctx("k"), request("fine")).outcome),
        request("fine")
    );

    let mut always = with_caps(entry(fx::TRAP), &[Capability::Config]);
    always.config = serde_json::json!({"always": true});
    let err = admit_policy(&host().engine, &always).expect_err("probe traps");
    assert!(
        matches!(
            err,
            AdmissionError::Probe {
                hook: Hook::LlmRequest,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("probe call of llm-request failed"),
        "{err}"
    );
}

#[test]
fn the_sandbox_has_no_environment_files_or_clock() {
    // The test process itself has an environment and a root directory.
    assert!(std::env::vars().count() > 0);
    let chain = chain_of(vec![with_caps(
        entry(fx::SANDBOX_PROBE),
        &[Capability::Events],
    )]);
    let run = chain.on_llm_request(&ctx("sandbox"), request("x"));
    let event = run
        .events()
        .next()
        .expect("the probe reports")
        .detail
        .clone();
    assert_eq!(event["env_vars"], 0);
    assert_eq!(event["args"], 0);
    assert!(
        event["root"]
            .as_str()
            .is_some_and(|s| s.starts_with("error")),
        "{event}"
    );
    assert!(
        event["passwd"]
            .as_str()
            .is_some_and(|s| s.starts_with("error")),
        "{event}"
    );
    assert_eq!(event["wall_secs"], 0);
}

#[test]
fn hot_swap_lets_calls_in_flight_finish_on_the_old_chain() {
    let mut slow = with_caps(entry(fx::SLOW), &[Capability::Clock, Capability::Config]);
    slow.config = serde_json::json!({"busy-ms": 300});
    slow.deadline_ms = 5_000;
    let chain = Arc::new(chain_of(vec![slow]));
    let before = chain.snapshot().generation;

    let in_flight = {
        let chain = chain.clone();
        std::thread::spawn(move || chain.on_llm_request(&ctx("swap"), request("hello")))
    };
    // Wait until the call has taken the policy's warm instance: it is then running on the
    // snapshot it started with.
    let slow_policy = chain.snapshot().members[0].policy.clone();
    let waiting = Instant::now();
    while slow_policy.warm_instances() > 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "the call never started"
        );
        std::thread::yield_now();
    }
    let deny = admit_policy(&host().engine, &entry(fx::DENY_ALL)).expect("admitted");
    let after = chain.swap_bundle("swapped", vec![deny]);
    assert!(after > before);

    // The call that started before the swap ran on the old chain.
    let old = in_flight.join().expect("thread");
    assert_eq!(old.generation, before);
    assert_eq!(old.policies[0].policy, "slow");
    assert_eq!(continued(old.outcome), request("hello"));
    // New calls see the new chain.
    let new = chain.on_llm_request(&ctx("swap"), request("hello"));
    assert_eq!(new.generation, after);
    assert_eq!(denial(new.outcome).0, "deny-all");
}

#[test]
fn one_policy_can_be_replaced_disabled_and_reordered() {
    let chain = chain_of(vec![entry(fx::ALLOW_ALL), entry(fx::DENY_ALL)]);
    assert_eq!(
        denial(chain.on_llm_request(&ctx("ops"), request("x")).outcome).0,
        "deny-all"
    );

    chain.set_enabled("deny-all", false).expect("known policy");
    assert_eq!(
        continued(chain.on_llm_request(&ctx("ops"), request("x")).outcome),
        request("x")
    );
    chain.set_enabled("deny-all", true).expect("known policy");

    chain
        .reorder(&["deny-all", "allow-all"])
        .expect("same names");
    let run = chain.on_llm_request(&ctx("ops"), request("x"));
    assert_eq!(run.policies.len(), 1, "deny-all runs first now");
    assert!(chain.reorder(&["deny-all"]).is_err());
    assert!(chain.set_enabled("nope", true).is_err());

    // Replace deny-all in place with a monitor-mode copy of itself.
    let mut e = with_mode(entry(fx::DENY_ALL), FailureMode::Monitor);
    e.name = Some("deny-all".into());
    chain.upsert_policy(admit_policy(&host().engine, &e).expect("admitted"));
    let run = chain.on_llm_request(&ctx("ops"), request("x"));
    assert_eq!(run.policies.len(), 2);
    assert_eq!(continued(run.outcome), request("x"));
}

#[test]
fn concurrent_calls_share_state_without_losing_updates() {
    let chain = Arc::new(chain_of(vec![with_caps(
        entry(fx::REWRITE),
        &[Capability::Events, Capability::State],
    )]));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let chain = chain.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let run = chain.on_llm_request(&ctx("concurrent"), request("a secret"));
                    assert_eq!(
                        continued(run.outcome).messages[1].joined_text(),
                        "a [redacted]"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let key = StateKey {
        policy: "rewrite".into(),
        agent: Some("concurrent".into()),
        key: "rewrites".into(),
    };
    assert_eq!(host().state.get(&key).as_deref(), Some("200"));
}

#[test]
fn components_are_compiled_once_and_reloaded_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(fx::ALLOW_ALL).expect("fixture");
    let options = || EngineOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        max_instances: 16,
        ..EngineOptions::in_memory(16)
    };
    let first = PolicyEngine::new(options(), HostServices::default()).expect("engine");
    assert_eq!(
        first.compile(&bytes).expect("compiles").1,
        CompileSource::Compiled
    );
    assert_eq!(
        first.compile(&bytes).expect("compiles").1,
        CompileSource::Memory
    );
    let second = PolicyEngine::new(options(), HostServices::default()).expect("engine");
    assert_eq!(
        second.compile(&bytes).expect("loads").1,
        CompileSource::DiskCache
    );
    // A corrupt cache entry is ignored and rewritten, never trusted.
    let cached: Vec<_> = walk(dir.path());
    assert_eq!(cached.len(), 1);
    std::fs::write(&cached[0], b"garbage").expect("overwrite");
    let third = PolicyEngine::new(options(), HostServices::default()).expect("engine");
    assert_eq!(
        third.compile(&bytes).expect("recompiles").1,
        CompileSource::Compiled
    );
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_bundle_is_admitted_whole_in_order_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = format!(
        "[bundle]\nname = \"t\"\n\n[[policy]]\ncomponent = {:?}\n\n[[policy]]\ncomponent = {:?}\nfailure-mode = \"monitor\"\n",
        fx::ALLOW_ALL,
        fx::DENY_ALL
    );
    std::fs::write(dir.path().join("bundle.toml"), manifest).expect("write");
    let bundle = Bundle::load(dir.path()).expect("parses");
    let chain = admit_bundle(&host().engine, &bundle).expect("admitted");
    let names: Vec<_> = chain
        .snapshot()
        .members
        .iter()
        .map(|m| m.policy.name.clone())
        .collect();
    assert_eq!(names, ["allow-all", "deny-all"]);

    let bad = format!(
        "[[policy]]\ncomponent = {:?}\n\n[[policy]]\ncomponent = {:?}\n",
        fx::ALLOW_ALL,
        fx::UNGRANTED
    );
    std::fs::write(dir.path().join("bundle.toml"), bad).expect("write");
    let err = admit_bundle(&host().engine, &Bundle::load(dir.path()).expect("parses"))
        .expect_err("refused");
    assert!(err.to_string().contains("fixture_ungranted.wasm"), "{err}");

    let twice = format!(
        "[[policy]]\ncomponent = {:?}\n\n[[policy]]\ncomponent = {:?}\n",
        fx::ALLOW_ALL,
        fx::ALLOW_ALL
    );
    std::fs::write(dir.path().join("bundle.toml"), twice).expect("write");
    let err = admit_bundle(&host().engine, &Bundle::load(dir.path()).expect("parses"))
        .expect_err("duplicate");
    assert!(
        err.to_string().contains("`allow-all` is already used"),
        "{err}"
    );
}

#[test]
fn policies_that_passed_a_request_are_told_when_it_is_abandoned() {
    let rewrite = with_caps(entry(fx::REWRITE), &[Capability::Events, Capability::State]);
    let chain = chain_of(vec![rewrite, entry(fx::ALLOW_ALL), entry(fx::DENY_ALL)]);
    let agent = "abandon-agent";
    let run = chain.on_llm_request(&ctx(agent), request("hello"));
    let verdicts: Vec<_> = run
        .policies
        .iter()
        .map(|r| (r.policy.as_str(), r.verdict))
        .collect();
    // deny-all stopped the call; the two before it were told, latest first.
    assert_eq!(
        verdicts,
        [
            ("rewrite", VerdictKind::Pass),
            ("allow-all", VerdictKind::Pass),
            ("deny-all", VerdictKind::Deny),
            ("allow-all", VerdictKind::Notified),
            ("rewrite", VerdictKind::Notified),
        ]
    );
    let told = run
        .events()
        .find(|e| e.kind == "fixture.abandoned")
        .expect("rewrite was told");
    assert_eq!(told.detail["code"], "denied_by_fixture");
    assert_eq!(told.detail["by"], "deny-all");
    assert_eq!(denial(run.outcome).0, "deny-all");

    // A policy answering the request itself abandons it too, with code `responded`.
    let chain = chain_of(vec![
        entry(fx::ALLOW_ALL),
        with_caps(entry(fx::REWRITE), &[Capability::Events, Capability::State]),
    ]);
    let run = chain.on_llm_request(&ctx(agent), request("canned please"));
    assert!(matches!(run.outcome, Outcome::Respond { .. }));
    assert_eq!(
        run.policies.last().map(|r| (r.policy.as_str(), r.verdict)),
        Some(("allow-all", VerdictKind::Notified))
    );

    // The host can also report an abandonment itself (the agent gave up).
    let chain = chain_of(vec![with_caps(
        entry(fx::REWRITE),
        &[Capability::Events, Capability::State],
    )]);
    let reason = Denial {
        code: "cancelled".into(),
        message: "agent stopped".into(),
        retry_after_ms: None,
    };
    let run = chain.on_llm_abandoned(&ctx(agent), request("x"), reason, None, None);
    assert_eq!(
        run.events().next().map(|e| e.detail["code"].clone()),
        Some(serde_json::json!("cancelled"))
    );
    let key = StateKey {
        policy: "rewrite".into(),
        agent: Some(agent.into()),
        key: "abandoned".into(),
    };
    assert_eq!(host().state.get(&key).as_deref(), Some("2"));
}

#[test]
fn a_rewrite_outside_what_the_hook_allows_is_a_policy_failure() {
    let chain = chain_of(vec![with_caps(
        entry(fx::REWRITE),
        &[Capability::Events, Capability::State],
    )]);
    let run = chain.on_tool_call(&ctx("bad-rewrite"), tool("rename"));
    let failure = run.policies[0].failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::BadVerdict);
    assert!(
        failure.message.contains("only `arguments` may change"),
        "{}",
        failure.message
    );
    let (_, d) = denial(run.outcome);
    assert_eq!(
        d.message,
        "policy `rewrite` failed: it gave an answer the host cannot accept"
    );
}

#[test]
fn a_streamed_call_that_failed_can_still_be_denied_or_answered() {
    let chain = chain_of(vec![entry(fx::DENY_ALL)]);
    let mut streamed = request("hello");
    streamed.stream = true;
    let failed = LlmOutcome::Error(ProviderError {
        kind: ProviderErrorKind::RateLimited,
        status: Some(429),
        message: "slow down".into(),
        retry_after_ms: Some(1000),
    });
    let run = chain.on_llm_response(&ctx("streamed-error"), streamed, failed);
    assert!(run.policies[0].enforced);
    assert_eq!(denial(run.outcome).0, "deny-all");
}

#[test]
fn a_policy_cannot_sleep_past_its_deadline() {
    let chain = chain_of(vec![with_caps(
        entry(fx::SANDBOX_PROBE),
        &[Capability::Events],
    )]);
    let started = Instant::now();
    let run = chain.on_llm_request(&ctx("sleeper"), request("please sleep"));
    let took = started.elapsed();
    // The policy asked for two seconds; the sandbox refused at once.
    assert!(took < Duration::from_millis(500), "took {took:?}");
    let failure = run.policies[0].failure.clone().expect("a failure");
    assert!(
        failure.message.contains("may not sleep or wait"),
        "{}",
        failure.message
    );
    assert_eq!(denial(run.outcome).1.code, POLICY_FAILED);
}

#[test]
fn writing_to_stderr_on_every_call_never_breaks_a_policy() {
    let chain = chain_of(vec![with_caps(
        entry(fx::SANDBOX_PROBE),
        &[Capability::Events],
    )]);
    for i in 0..100 {
        let run = chain.on_llm_request(&ctx("noisy"), request("noisy"));
        assert!(
            run.policies[0].failure.is_none(),
            "call {i}: {:?}",
            run.policies[0].failure
        );
    }
}

#[test]
fn a_secrets_allowlist_limits_which_names_a_policy_can_read() {
    struct OneSecret;
    impl ironhost::policy::host::SecretResolver for OneSecret {
        fn get(&self, _env: &str, name: &str) -> Option<String> {
            (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned())
        }
    }
    let services = HostServices {
        secrets: Arc::new(OneSecret),
        ..HostServices::default()
    };
    let engine = PolicyEngine::new(EngineOptions::in_memory(16), services).expect("engine");
    let admit = |allow: Option<&[&str]>| {
        let mut e = with_caps(entry(fx::UNGRANTED), &[Capability::Secrets]);
        e.secrets = allow.map(|names| names.iter().map(|n| n.to_string()).collect());
        Chain::new("t", vec![admit_policy(&engine, &e).expect("admitted")])
    };
    // The fixture passes when it can read OPENAI_API_KEY and denies with `no_key` otherwise.
    let all = admit(None);
    assert!(matches!(
        all.on_llm_request(&ctx("s"), request("x")).outcome,
        Outcome::Continue { .. }
    ));
    let listed = admit(Some(&["OPENAI_API_KEY"]));
    assert!(matches!(
        listed.on_llm_request(&ctx("s"), request("x")).outcome,
        Outcome::Continue { .. }
    ));
    let other = admit(Some(&["ANTHROPIC_API_KEY"]));
    assert_eq!(
        denial(other.on_llm_request(&ctx("s"), request("x")).outcome)
            .1
            .code,
        "no_key"
    );
}

#[test]
fn the_compile_cache_is_refused_when_others_can_write_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let options = EngineOptions {
        cache_dir: Some(shared.clone()),
        max_instances: 16,
        ..EngineOptions::in_memory(16)
    };
    let engine = PolicyEngine::new(options, HostServices::default()).expect("engine still works");
    assert_eq!(engine.cache_dir(), None);
    let bytes = std::fs::read(fx::ALLOW_ALL).expect("fixture");
    assert_eq!(
        engine.compile(&bytes).expect("compiles").1,
        CompileSource::Compiled
    );
    assert_eq!(
        walk(&shared).len(),
        0,
        "nothing was written to the shared directory"
    );
}

#[test]
fn running_out_of_instance_slots_is_a_clear_admission_error() {
    let options = EngineOptions::in_memory(8);
    let engine = PolicyEngine::new(options, HostServices::default()).expect("engine");
    // Each admitted policy keeps one warm instance, so the ninth finds no free slot.
    let mut kept = Vec::new();
    let err = loop {
        let mut e = entry(fx::ALLOW_ALL);
        e.name = Some(format!("allow-{}", kept.len()));
        match admit_policy(&engine, &e) {
            Ok(p) => kept.push(p),
            Err(err) => break err,
        }
        assert!(kept.len() <= 8, "the pool limit was never hit");
    };
    assert_eq!(kept.len(), 8);
    let msg = err.to_string();
    assert!(msg.contains("fixture_allow_all.wasm"), "{msg}");
    assert!(msg.contains("instance"), "{msg}");
}

fn push_all(stream: &mut ironhost::policy::chain::ChainStream, pieces: &[&str]) -> Vec<String> {
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let run = stream.push(LlmChunk {
                index: i as u32,
                text: (*p).into(),
                finish_reason: None,
                usage: None,
                last: i + 1 == pieces.len(),
            });
            continued(run.outcome)
        })
        .collect()
}

#[test]
fn streams_through_several_holding_policies_lose_and_repeat_nothing() {
    let rewrite = |name: &str| {
        let mut e = with_caps(entry(fx::REWRITE), &[Capability::Events, Capability::State]);
        e.name = Some(name.into());
        e
    };
    let chain = chain_of(vec![
        rewrite("first"),
        entry(fx::ALLOW_ALL),
        rewrite("second"),
    ]);
    let mut stream = chain.stream(&ctx("two-holders"));
    let emitted = push_all(&mut stream, &["a s", "e", "cret, s", "ecre", "t b"]);
    assert_eq!(emitted.concat(), "a [redacted], [redacted] b");
    assert!(
        emitted
            .iter()
            .all(|e| !e.contains('s') || e.contains("[redacted]")),
        "{emitted:?}"
    );
}

#[test]
fn a_monitor_mode_policy_never_changes_a_stream() {
    let mut e = with_caps(entry(fx::REWRITE), &[Capability::Events, Capability::State]);
    e.failure_mode = FailureMode::Monitor;
    let chain = chain_of(vec![e]);
    let mut stream = chain.stream(&ctx("monitor-stream"));
    let emitted = push_all(&mut stream, &["the se", "cret is out"]);
    // Released exactly as the provider sent it, chunk by chunk, though the policy held back
    // and rewrote (recorded, not enforced).
    assert_eq!(emitted, ["the se", "cret is out"]);
}

#[test]
fn a_fail_open_policy_failing_mid_stream_releases_what_it_held() {
    let mut e = with_caps(entry(fx::REWRITE), &[Capability::Events, Capability::State]);
    e.failure_mode = FailureMode::FailOpen;
    let chain = chain_of(vec![e]);
    let mut stream = chain.stream(&ctx("fail-open-stream"));
    let emitted = push_all(&mut stream, &["the se", " boom", " end"]);
    // "se" was held when the policy trapped on the next chunk: it is released, not lost.
    assert_eq!(emitted, ["the ", "se boom", " end"]);

    // Fail-closed, the same failure ends the stream with a denial.
    let chain = chain_of(vec![with_caps(
        entry(fx::REWRITE),
        &[Capability::Events, Capability::State],
    )]);
    let mut stream = chain.stream(&ctx("fail-closed-stream"));
    let first = stream.push(LlmChunk {
        index: 0,
        text: "the se".into(),
        finish_reason: None,
        usage: None,
        last: false,
    });
    assert_eq!(continued(first.outcome), "the ");
    let second = stream.push(LlmChunk {
        index: 1,
        text: " boom".into(),
        finish_reason: None,
        usage: None,
        last: false,
    });
    assert_eq!(denial(second.outcome).1.code, POLICY_FAILED);
}

#[test]
fn the_sdk_stamp_is_found_only_in_sdk_built_components() {
    use ironhost::policy::inspect::sdk_stamp;
    let stamped = sdk_stamp(&std::fs::read(fx::ALLOW_ALL).expect("fixture"));
    assert_eq!(
        stamped.as_deref(),
        Some("ironhost-policy 0.1.0; ironhost:policy@0.1.0")
    );
    // wrong-wit is built with wit-bindgen directly, without the SDK.
    assert_eq!(
        sdk_stamp(&std::fs::read(fx::WRONG_WIT).expect("fixture")),
        None
    );
}

fn hanging(step: &str) -> PolicyEntry {
    let mut e = with_caps(entry(fx::HANG), &[Capability::Config]);
    e.config = serde_json::json!({ "hang-in": step });
    e
}

#[test]
fn a_policy_that_hangs_in_any_admission_step_is_refused_within_the_admission_deadline() {
    let limit = host().engine.admission_deadline();
    assert_eq!(limit, Duration::from_millis(1000), "the default");
    for step in ["describe", "validate-config", "probe"] {
        let cpu = thread_cpu_time();
        let err = admit_policy(&host().engine, &hanging(step)).expect_err(step);
        let took = thread_cpu_time() - cpu;
        let message = err.to_string();
        assert!(
            message.contains("admission deadline of 1000 ms exceeded"),
            "{step}: {message}"
        );
        match step {
            "describe" => assert!(matches!(err, AdmissionError::Describe { .. }), "{message}"),
            "validate-config" => assert!(matches!(err, AdmissionError::Config { .. }), "{message}"),
            _ => assert!(matches!(err, AdmissionError::Probe { .. }), "{message}"),
        }
        assert!(
            took >= limit - EPOCH_TICK,
            "{step}: refused early, after {took:?} of CPU"
        );
        assert!(
            took < limit * 2,
            "{step}: refused only after {took:?} of CPU"
        );
    }
    // Told to hang nowhere, the same component is admitted.
    admit_policy(&host().engine, &hanging("nowhere")).expect("admitted");
}

#[test]
fn admission_runs_under_its_own_deadline_and_calls_under_the_policy_deadline() {
    // A probe that spins 300 ms passes admission (as a slow first call on a busy machine does),
    // while real calls keep the 10 ms deadline of the entry. (The spin is wall-clock time: on a
    // loaded machine it is less CPU time, but still far more than 10 ms.)
    let mut e = with_caps(entry(fx::SLOW), &[Capability::Clock, Capability::Config]);
    e.config = serde_json::json!({ "busy-ms": 300 });
    assert_eq!(e.deadline_ms, 10);
    let chain = chain_of(vec![with_mode(e, FailureMode::FailOpen)]);
    let run = chain.on_llm_request(&ctx("slow"), request("take your time"));
    let failure = run.policies[0]
        .failure
        .clone()
        .expect("the call misses its deadline");
    assert_eq!(failure.kind, FailureKind::Deadline);
    assert!(
        failure.message.contains("deadline of 10 ms exceeded")
            && !failure.message.contains("admission"),
        "{}",
        failure.message
    );
}

/// The hostile fixture, granted `caps` and what it always imports (log, events).
fn hostile(
    config: serde_json::Value,
    caps: &[Capability],
    secrets: Option<&[&str]>,
) -> PolicyEntry {
    let mut caps = caps.to_vec();
    caps.extend([Capability::Log, Capability::Events]);
    let mut e = with_caps(entry(fx::HOSTILE), &caps);
    e.config = config;
    e.secrets = secrets.map(|names| names.iter().map(|n| (*n).to_owned()).collect());
    e
}

#[test]
fn a_policy_may_name_only_a_credential_it_is_granted() {
    let db = serde_json::json!({ "credential": "DB_PASSWORD" });
    let escalate = || request("escalate, please");
    // No `secrets` capability, or a list without the name: a failure (fail-closed: denied).
    for e in [
        hostile(db.clone(), &[Capability::Config], None),
        hostile(
            db.clone(),
            &[Capability::Config, Capability::Secrets],
            Some(&["OPENAI_API_KEY"]),
        ),
    ] {
        let run = chain_of(vec![e]).on_llm_request(&ctx("esc"), escalate());
        let failure = run.policies[0].failure.clone().expect("a failure");
        assert_eq!(failure.kind, FailureKind::BadVerdict);
        assert!(
            failure
                .message
                .contains("named the credential `DB_PASSWORD`, a secret it is not granted"),
            "{}",
            failure.message
        );
        assert_eq!(denial(run.outcome).1.code, POLICY_FAILED);
    }
    // Under fail-open the call goes on without the credential.
    let open = with_mode(
        hostile(db.clone(), &[Capability::Config], None),
        FailureMode::FailOpen,
    );
    let run = chain_of(vec![open]).on_llm_request(&ctx("esc"), escalate());
    assert_eq!(continued(run.outcome).credential, None);
    // Granted by name (or every secret, with no list): the credential is named.
    for names in [Some(&["DB_PASSWORD"][..]), None] {
        let e = hostile(
            db.clone(),
            &[Capability::Config, Capability::Secrets],
            names,
        );
        let run = chain_of(vec![e]).on_llm_request(&ctx("esc"), escalate());
        assert_eq!(
            continued(run.outcome).credential.as_deref(),
            Some("DB_PASSWORD")
        );
    }
}

#[test]
fn a_later_policy_cannot_swap_the_credential_secrets_inject_named() {
    let inject = default_bundle_entry("secrets-inject");
    // Keeping the name secrets-inject chose needs no grant; swapping it for another does.
    let keep = hostile(
        serde_json::json!({ "credential": "OPENAI_API_KEY" }),
        &[Capability::Config],
        None,
    );
    let run = chain_of(vec![inject.clone(), keep]).on_llm_request(&ctx("esc"), request("escalate"));
    assert_eq!(
        continued(run.outcome).credential.as_deref(),
        Some("OPENAI_API_KEY")
    );
    let swap = hostile(
        serde_json::json!({ "credential": "DB_PASSWORD" }),
        &[Capability::Config],
        None,
    );
    let run = chain_of(vec![inject, swap]).on_llm_request(&ctx("esc"), request("escalate"));
    assert_eq!(
        run.policies[1].failure.as_ref().map(|f| f.kind),
        Some(FailureKind::BadVerdict)
    );
    assert_eq!(denial(run.outcome).0, "hostile");
}

/// The entry of the default bundle's policy `name` (its built-in component and grants).
fn default_bundle_entry(name: &str) -> PolicyEntry {
    ironhost::policy::defaults::default_bundle()
        .expect("parses")
        .policies
        .into_iter()
        .find(|e| e.component == std::path::Path::new(&format!("builtin:{name}")))
        .unwrap_or_else(|| panic!("no {name} in the default bundle"))
}

#[test]
fn text_a_policy_writes_is_printable_and_bounded() {
    let is_plain = |t: &str| {
        !t.chars()
            .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))
    };
    let policy = admit_policy(
        &host().engine,
        &hostile(serde_json::json!({}), &[Capability::Config], None),
    )
    .expect("admitted");
    assert!(
        is_plain(&policy.info.description),
        "{:?}",
        policy.info.description
    );
    assert!(policy.info.description.contains("to get"));
    // A denial cannot carry escapes or forge a log line.
    let chain = Chain::new("test", vec![policy]);
    let (_, d) = denial(chain.on_llm_request(&ctx("esc"), request("escape")).outcome);
    assert!(is_plain(&d.code) && is_plain(&d.message), "{d:?}");
    assert!(d.message.starts_with("denied "), "{}", d.message);
    // A megabyte of config error is cut to a readable length.
    let err = admit_policy(
        &host().engine,
        &hostile(
            serde_json::json!({ "long-error": true }),
            &[Capability::Config],
            None,
        ),
    )
    .expect_err("rejected");
    let message = err.to_string();
    assert!(matches!(err, AdmissionError::Config { .. }), "{message}");
    assert!(message.len() < 1024, "{} bytes", message.len());
    assert!(message.ends_with('…'), "{message}");
}

/// Each policy report of a run: the policy and its verdict, in order.
fn steps<T>(run: &ironhost::policy::ChainRun<T>) -> Vec<(&str, VerdictKind)> {
    run.policies
        .iter()
        .map(|r| (r.policy.as_str(), r.verdict))
        .collect()
}

#[test]
fn a_rewrite_after_the_budget_is_reserved_for_as_it_will_be_sent() {
    let mut budget = default_bundle_entry("budget");
    budget.config = serde_json::json!({ "limit-usd": 0.05 });
    let upgrade = hostile(serde_json::json!({}), &[Capability::Config], None);
    let chain = chain_of(vec![budget, upgrade]);
    // Alone, the short gpt-4o-mini request fits in $0.05.
    let plain = chain.on_llm_request(&ctx("upgrade-1"), request("hello"));
    assert!(matches!(plain.outcome, Outcome::Continue { .. }));
    // Switched to o1 with a long prompt after the budget passed it: the budget is told its
    // version was abandoned, sees the request as it will be sent, and refuses it.
    let run = chain.on_llm_request(&CallContext::new("upgrade-1", "c2"), request("upgrade"));
    assert_eq!(
        steps(&run),
        [
            ("budget", VerdictKind::Pass),
            ("hostile", VerdictKind::Rewrite),
            ("budget", VerdictKind::Notified),
            ("budget", VerdictKind::Deny),
            // The hostile policy passed the call the budget then ended: it is told.
            ("hostile", VerdictKind::Notified),
        ]
    );
    let (policy, d) = denial(run.outcome);
    assert_eq!(
        (policy.as_str(), d.code.as_str()),
        ("budget", "budget_exceeded")
    );
    assert!(
        d.message.contains("budget of $0.05 reached"),
        "{}",
        d.message
    );
    // Nothing stays reserved for the refused call: the short request still fits.
    let again = chain.on_llm_request(&CallContext::new("upgrade-1", "c3"), request("hello"));
    assert!(
        matches!(again.outcome, Outcome::Continue { .. }),
        "{:?}",
        again.outcome
    );
}

#[test]
fn a_policy_checked_again_may_not_change_what_is_sent() {
    // Two copies of the hostile policy after the budget: the first is checked again after the
    // second's rewrite (it implements on-llm-abandoned), and rewrites once more: a failure.
    let budget = default_bundle_entry("budget");
    let upgrade = || hostile(serde_json::json!({}), &[Capability::Config], None);
    let mut second = upgrade();
    second.name = Some("hostile-2".to_owned());
    let chain = chain_of(vec![budget, upgrade(), second]);
    let run = chain.on_llm_request(&ctx("twice"), request("upgrade"));
    assert_eq!(
        steps(&run),
        [
            ("budget", VerdictKind::Pass),
            ("hostile", VerdictKind::Rewrite),
            ("hostile-2", VerdictKind::Rewrite),
            // The final check, in bundle order: the budget passes the final request...
            ("budget", VerdictKind::Notified),
            ("budget", VerdictKind::Pass),
            // ...the first hostile copy changes it again and fails (fail-closed)...
            ("hostile", VerdictKind::Notified),
            ("hostile", VerdictKind::Failed),
            // ...and those that passed the call are told, latest first: the budget releases
            // what it reserved.
            ("hostile-2", VerdictKind::Notified),
            ("budget", VerdictKind::Notified),
        ]
    );
    let failure = run.policies[6].failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::BadVerdict);
    assert!(
        failure
            .message
            .contains("rewrote the request when it was checked again as it will be sent"),
        "{}",
        failure.message
    );
    assert_eq!(denial(run.outcome).0, "hostile");
}

#[test]
fn a_verdict_may_add_at_most_the_policys_verdict_limit() {
    let flood = |kib: u64, limit: Option<u64>| {
        let mut e = hostile(
            serde_json::json!({ "flood-kib": kib }),
            &[Capability::Config],
            None,
        );
        e.memory_mib = 64;
        // Writing megabytes takes the guest longer than the default 10 ms; not what is tested.
        e.deadline_ms = 2000;
        if let Some(l) = limit {
            e.verdict_kib = l;
        }
        chain_of(vec![e])
    };
    assert_eq!(
        PolicyEntry::for_component("x.wasm".into()).verdict_kib,
        1024,
        "the default"
    );
    // 8 MiB of fallback under the default 1 MiB: refused before it is parsed.
    let run = flood(8192, None).on_tool_call(&ctx("flood"), tool("flood"));
    let failure = run.policies[0].failure.clone().expect("a failure");
    assert_eq!(failure.kind, FailureKind::BadVerdict);
    assert!(
        failure
            .message
            .contains("its verdict adds 8193 KiB, more than its limit of 1024 KiB (`verdict-kib`)"),
        "{}",
        failure.message
    );
    assert_eq!(denial(run.outcome).1.code, POLICY_FAILED);
    // Allowed by the entry's own limit, it is served (checked as JSON, not built in memory).
    let run = flood(8192, Some(16 * 1024)).on_tool_call(&ctx("flood"), tool("flood"));
    match run.outcome {
        Outcome::Fallback { result, .. } => assert!(result.len() > 8 << 20),
        other => panic!("{other:?}"),
    }
    // Small ones pass under the default.
    let run = flood(4, None).on_tool_call(&ctx("flood"), tool("flood"));
    assert!(
        matches!(run.outcome, Outcome::Fallback { .. }),
        "{:?}",
        run.outcome
    );
}
