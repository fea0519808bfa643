//! The compatibility suite: real agent frameworks (`tests/compat/agents/`), unchanged, under
//! `ironhost start`, offline on the simulator in echo mode, from `.venv-compat` (made by
//! `scripts/setup-compat.sh`). Each script prints what came back per case; each test asserts
//! that the personal data in every prompt was redacted before it reached the "provider" (the
//! echo shows what it received), and that every call was recorded, by API, with its cost.

use serde_json::Value;

mod common;
#[path = "common/compat.rs"]
mod compat;

const EMAIL: &str = "jane.doe@example.com";
const SSN: &str = "123-45-6789";

/// The host config of every run: the echo, and a price for openai-agents' default model,
/// which the embedded table does not list (the documented way to price a model).
const CONFIG: &str = r#"[simulator]
echo = true

[pricing.models."gpt-5.6-luna"]
provider = "openai"
input = 1.25
output = 10.0
"#;

/// Every case ran, none shows the personal data, and each that echoes the prompt shows it
/// redacted; every API in `apis` was called, answered, priced (free ones: moderations,
/// count_tokens) and had the data found in its input.
fn check(script: &str, expected_cases: usize, apis: &[&str]) {
    let r = compat::run(script, CONFIG);
    assert_eq!(
        r.cases.len(),
        expected_cases,
        "{script}: cases {:?}\nstderr:\n{}",
        r.cases,
        r.stderr
    );
    for case in &r.cases {
        let text = case["text"].to_string();
        assert!(
            !text.contains(EMAIL) && !text.contains(SSN),
            "{script}: {case} reached the provider unredacted"
        );
        if text.contains("Contact ") {
            assert!(
                text.contains("[EMAIL_REDACTED]") && text.contains("[SSN_REDACTED]"),
                "{script}: {case}"
            );
        }
    }
    for api in apis {
        let calls: Vec<&Value> = r.calls.iter().filter(|c| c["api"] == *api).collect();
        assert!(
            !calls.is_empty(),
            "{script}: no `{api}` call recorded: {:?}",
            r.calls
        );
        for c in &calls {
            assert_eq!(c["outcome"], "ok", "{script}: {c}");
            assert!(c["agent"].is_string() && c["model"].is_string(), "{c}");
            let free = matches!(*api, "moderations" | "count_tokens" | "input_tokens");
            let cost = c["cost_usd"].as_f64().expect("cost is a number");
            assert_eq!(cost > 0.0, !free, "{script}: {c}");
            assert!(c["input_tokens"].as_u64().is_some() && c["latency_ms"].is_number());
            assert!(c["verdicts"].is_array(), "{c}");
        }
        assert!(
            calls.iter().any(|c| c["call_id"]
                .as_str()
                .is_some_and(|id| r.findings.contains(id))),
            "{script}: no PII finding on a `{api}` call"
        );
    }
    // Anything else a framework sent (openai-agents' trace export) was refused and recorded,
    // with its reason.
    for c in r.calls.iter().filter(|c| c["outcome"] != "ok") {
        assert_eq!(c["code"], "not_routed", "{script}: {c}");
        assert!(
            c["reason"]
                .as_str()
                .is_some_and(|s| s.contains("not routed"))
        );
    }
}

#[test]
fn openai_sdk_chat_parse_completions_moderations_and_models() {
    check("openai_chat.py", 8, &["chat", "completions", "moderations"]);
}

#[test]
fn openai_sdk_responses_streams_tools_and_retrieval() {
    check("openai_responses.py", 6, &["responses"]);
}

#[test]
fn openai_sdk_embeddings() {
    check("openai_embeddings.py", 4, &["embeddings"]);
}

#[test]
fn anthropic_sdk_cache_control_documents_tools_and_count_tokens() {
    check("anthropic_messages.py", 6, &["messages", "count_tokens"]);
}

#[test]
fn langchain_openai_chat_responses_structured_and_embeddings() {
    check(
        "langchain_openai_chat.py",
        7,
        &["chat", "responses", "embeddings"],
    );
}

#[test]
fn langchain_anthropic_structured_and_tools() {
    check("langchain_anthropic_chat.py", 4, &["messages"]);
}

#[test]
fn langgraph_react_agent() {
    check("langgraph_agent.py", 1, &["chat"]);
}

#[test]
fn openai_agents_default_model() {
    check("openai_agents.py", 2, &["responses"]);
}

#[test]
fn pydantic_ai_openai_and_anthropic() {
    check(
        "pydantic_ai_agents.py",
        9,
        &["responses", "chat", "messages"],
    );
}

#[test]
fn llama_index_llm_and_embeddings() {
    check("llama_index_agent.py", 5, &["chat", "embeddings"]);
}
