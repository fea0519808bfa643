//! The compatibility suite for the HTTP clients other than the official SDKs' httpx: requests
//! and urllib3, urllib.request and http.client, httpcore and httpcore2 (and httpx on a
//! transport of the application's own), aiohttp, and litellm (sync on the openai SDK, async on
//! its own aiohttp transport), each used unchanged by a script of
//! `tests/compat/agents/clients_*.py` under `ironhost start`, offline on the simulator in echo
//! mode and with `egress = "governed-only"` (the agent has no network: governed requests need
//! none). Every prompt reaches the "provider" redacted and every call is recorded once, priced,
//! with its finding; under a budget too small for any call the denial reaches the code as
//! ironhost's own exception (litellm's too, though it wraps every other error, and it does not
//! retry it), and requests to other hosts go out unchanged. An answer a policy refuses, whole
//! or part way through a stream, reaches litellm code as the denial as well.

use std::collections::BTreeMap;

use serde_json::Value;

mod common;
#[path = "common/compat.rs"]
mod compat;

const EMAIL: &str = "jane.doe@example.com";
const SSN: &str = "123-45-6789";
const PII: &str = "Contact jane.doe@example.com, SSN 123-45-6789.";

/// The host config of the governed runs: the echo, and no network for the agent at all (its
/// governed requests need none: they go to the host through its socket).
const CONFIG: &str = "[simulator]\necho = true\n\n[egress]\nmode = \"governed-only\"\n";

/// Run a script with `config` as its `ironhost.toml`; the run must succeed. litellm is kept
/// from fetching its model cost map at import (it would fail offline and use its bundled copy).
fn run(script: &str, config: &str) -> compat::Run {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ironhost.toml"), config).expect("config");
    let mut cmd = compat::command(dir.path(), &compat::script(script));
    cmd.env("LITELLM_LOCAL_MODEL_COST_MAP", "True");
    let r = compat::finish(cmd);
    assert!(
        r.output.status.success(),
        "{script} failed\nstdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    r
}

/// The cases ran in order, each shows its prompt as the provider got it (redacted), each stream
/// came as several events to its end; the calls are recorded by API (`calls`: how many of each,
/// so none was governed twice, or missed), each answered, priced and with its PII finding.
fn check(script: &str, cases: &[&str], calls: &[(&str, usize)]) {
    let r = run(script, CONFIG);
    let names: Vec<&str> = r.cases.iter().filter_map(|c| c["case"].as_str()).collect();
    assert_eq!(names, cases, "{script}\nstderr:\n{}", r.stderr);
    for case in &r.cases {
        let text = case["text"].as_str().unwrap_or_default();
        assert!(
            !text.contains(EMAIL) && !text.contains(SSN),
            "{script}: {case} reached the provider unredacted"
        );
        assert!(
            text.contains("Contact [EMAIL_REDACTED], SSN [SSN_REDACTED]."),
            "{script}: {case}"
        );
        if case.get("events").is_some() {
            assert!(case["events"].as_u64().unwrap_or(0) > 1, "{script}: {case}");
            assert_eq!(case["done"], true, "{script}: {case}");
        }
    }
    let mut by_api: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &r.calls {
        let api = c["api"].as_str().unwrap_or("?");
        *by_api.entry(api).or_default() += 1;
        let provider = if api == "messages" {
            "anthropic"
        } else {
            "openai"
        };
        assert_eq!(c["provider"], provider, "{script}: {c}");
        assert_eq!(c["outcome"], "ok", "{script}: {c}");
        assert!(c["agent"].is_string() && c["model"].is_string(), "{c}");
        assert!(
            c["cost_usd"].as_f64().expect("cost is a number") > 0.0,
            "{script}: {c}"
        );
        assert!(c["input_tokens"].as_u64().is_some() && c["latency_ms"].is_number());
        let id = c["call_id"].as_str().expect("call id");
        assert!(r.findings.contains(id), "{script}: no PII finding on {c}");
    }
    let expected: BTreeMap<&str, usize> = calls.iter().copied().collect();
    assert_eq!(by_api, expected, "{script}: calls {:?}", r.calls);
}

#[test]
fn requests_and_urllib3() {
    check(
        "clients_requests.py",
        &[
            "requests_chat",
            "requests_chat_stream",
            "requests_raw",
            "requests_anthropic",
            "requests_anthropic_stream",
            "urllib3_chat",
        ],
        &[("chat", 4), ("messages", 2)],
    );
}

#[test]
fn urllib_request_and_http_client() {
    check(
        "clients_urllib.py",
        &[
            "urllib_chat",
            "urllib_chat_stream",
            "urllib_anthropic",
            "http_client_chat",
            "http_client_chat_stream",
        ],
        &[("chat", 4), ("messages", 1)],
    );
}

#[test]
fn httpcore_and_httpcore2_sync_and_async() {
    check(
        "clients_httpcore.py",
        &[
            "httpcore_chat",
            "httpcore_anthropic_stream",
            "httpcore2_chat",
            "httpcore2_anthropic_stream",
            "httpcore_async_anthropic",
            "httpcore_async_chat_stream",
            "httpcore2_async_anthropic",
            "httpcore2_async_chat_stream",
            "httpx_own_transport_chat",
        ],
        &[("chat", 5), ("messages", 4)],
    );
}

#[test]
fn aiohttp_client_session() {
    check(
        "clients_aiohttp.py",
        &[
            "aiohttp_chat",
            "aiohttp_chat_stream",
            "aiohttp_anthropic",
            "aiohttp_anthropic_stream",
            "aiohttp_concurrent",
        ],
        &[("chat", 5), ("messages", 2)],
    );
}

#[test]
fn litellm_completion_and_acompletion() {
    check(
        "clients_litellm.py",
        &[
            "litellm_completion",
            "litellm_completion_stream",
            "litellm_completion_anthropic",
            "litellm_acompletion",
            "litellm_acompletion_stream",
            "litellm_acompletion_anthropic",
        ],
        &[("chat", 4), ("messages", 2)],
    );
}

fn case<'a>(r: &'a compat::Run, name: &str) -> &'a Value {
    r.cases
        .iter()
        .find(|c| c["case"] == name)
        .unwrap_or_else(|| panic!("no case {name}: {:?}\n{}", r.cases, r.stderr))
}

#[test]
fn a_denial_reaches_each_client_and_other_hosts_are_not_governed() {
    let r = run(
        "clients_denied.py",
        "budget = 0.0000001\n\n[simulator]\necho = true\n",
    );
    // litellm, which turns every other error of a provider call into one of its own, raises
    // the denial as it is too: sync and async, plain and streamed, and its retries
    // (`num_retries`, a Router's) do not send the refused call again (the count below).
    for name in [
        "denied_requests",
        "denied_requests_stream",
        "denied_urllib",
        "denied_aiohttp",
        "denied_httpcore",
        "denied_litellm",
        "denied_litellm_stream",
        "denied_litellm_retries",
        "denied_litellm_async",
        "denied_litellm_async_stream",
        "denied_litellm_async_retries",
        "denied_litellm_router",
    ] {
        let c = case(&r, name);
        assert_eq!(c["text"], "BudgetExceeded", "{c}");
        assert_eq!(c["module"], "ironhost.errors", "{c}");
        assert!(
            c["bases"]
                .as_array()
                .is_some_and(|b| b.iter().any(|n| n == "PolicyDenied")),
            "{c}"
        );
        assert_eq!(c["code"], "budget_exceeded", "{c}");
        assert_eq!(c["policy"], "budget", "{c}");
    }
    // An error of litellm's own, raised while the code handles a denial, is not taken for it.
    let c = case(&r, "litellm_after_denial");
    assert_eq!(c["text"], "BadRequestError", "{c}");
    assert_eq!(c["module"], "litellm.exceptions", "{c}");
    assert!(
        c["causes"]
            .as_array()
            .is_some_and(|b| b.iter().any(|n| n == "BudgetExceeded")),
        "{c}"
    );
    for lib in ["requests", "urllib", "aiohttp", "httpcore"] {
        assert_eq!(
            case(&r, &format!("local_{lib}"))["text"],
            format!("local /{lib}: {PII}"),
            "went out unchanged"
        );
    }
    // Only the provider calls reached the host, once each: each refused by the budget, none
    // allowed, none retried.
    assert!(!r.calls.is_empty());
    for c in &r.calls {
        assert_ne!(c["outcome"], "ok", "{c}");
        assert_eq!(c["code"], "budget_exceeded", "{c}");
    }
    assert_eq!(r.calls.len(), 13, "{:?}", r.calls);
}

/// pii-redact blocking, and a simulator reply that gives an email address to a prompt with
/// none: the request passes, the answer is refused (a stream part way, by `on-llm-chunk`).
const BLOCK: &str = "safety-mode = \"block\"\n\n[[simulator.replies]]\n\
                     when = \"contact\"\n\
                     text = \"Thanks for asking. Our team answers every weekday, and our contact is \
                     sales@acme-corp.example.com.\"\n";

#[test]
fn an_answer_refused_whole_or_mid_stream_reaches_litellm_code_as_the_denial() {
    let r = run("clients_litellm_blocked.py", BLOCK);
    for name in [
        "blocked_litellm",
        "blocked_litellm_async",
        "blocked_litellm_stream",
        "blocked_litellm_stream_async",
        "blocked_litellm_stream_anthropic",
        "blocked_litellm_stream_anthropic_async",
    ] {
        let c = case(&r, name);
        assert_eq!(c["text"], "PolicyDenied", "{c}");
        assert_eq!(c["module"], "ironhost.errors", "{c}");
        assert_eq!(c["code"], "pii_detected", "{c}");
        assert_eq!(c["policy"], "pii-redact", "{c}");
        if name.contains("stream") {
            // Refused part way: the code had read the stream's first chunks.
            assert!(c["chunks"].as_u64().unwrap_or(0) > 0, "{c}");
        }
    }
    assert_eq!(r.calls.len(), 6, "{:?}", r.calls);
    for c in &r.calls {
        assert_eq!(c["code"], "pii_detected", "{c}");
    }
}
