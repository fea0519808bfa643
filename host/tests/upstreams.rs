//! Configured upstreams end to end: an agent under `ironhost start` (live mode) calls the
//! default OpenAI client, an OpenRouter-style router by `base_url`, a local OpenAI-compatible
//! server by `OPENAI_BASE_URL`, `AzureOpenAI` and the Anthropic SDK, each answered by its own
//! fake provider on 127.0.0.1. Each request arrives at the upstream it was addressed to, with
//! that upstream's key (none for the keyless local server), redacted; each call is priced
//! (router names and Azure deployments through aliases); an unpriced model is refused with its
//! own code; no upstream key is readable in the agent.

use serde_json::{Value, json};

mod common;
#[path = "common/fake_provider.rs"]
mod fake_provider;
#[path = "common/refused.rs"]
mod refused;
use common::{ironhost_in, repo};
use fake_provider::{FakeProvider, Script, json_answer};

const OPENAI_KEY: &str = "sk-openai-real-1111";
const ROUTER_KEY: &str = "sk-or-real-2222";
const AZURE_KEY: &str = "azure-real-3333";
const ANTHROPIC_KEY: &str = "sk-ant-real-4444";

fn chat_answer(model: &str) -> Script {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "noted"},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}
    });
    json_answer(200, &[], body.to_string().into_bytes())
}

fn messages_answer() -> Script {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
        "content": [{"type": "text", "text": "noted"}], "stop_reason": "end_turn",
        "stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 2}
    });
    json_answer(200, &[], body.to_string().into_bytes())
}

fn auth(r: &fake_provider::Received) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        r.header("authorization"),
        r.header("x-api-key"),
        r.header("api-key"),
    )
}

#[test]
fn each_upstream_gets_its_own_requests_with_its_own_key_and_the_agent_holds_none() {
    let openai = FakeProvider::start(vec![chat_answer("gpt-4o-mini")]);
    let router = FakeProvider::start(vec![chat_answer("anthropic/claude-3.5-haiku")]);
    let local = FakeProvider::start(vec![chat_answer("gpt-4o-mini")]);
    let azure = FakeProvider::start(vec![chat_answer("gpt-4o")]);
    let anthropic = FakeProvider::start(vec![messages_answer()]);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"[llm]
mode = "live"
max-retries = 0

[llm.openai]
base-url = "{openai}"

[llm.anthropic]
base-url = "{anthropic}"

[[llm.upstreams]]
name = "openrouter"
base-url = "{router}/api/v1"
format = "openai"
key-secret = "OPENROUTER_API_KEY"

[[llm.upstreams]]
name = "local"
base-url = "{local}/v1"
format = "openai"

[[llm.upstreams]]
name = "azure"
base-url = "{azure}"
format = "azure-openai"
key-secret = "AZURE_OPENAI_API_KEY"
models = {{ "prod-4o" = "gpt-4o" }}
"#,
        openai = openai.base_url(),
        anthropic = anthropic.base_url(),
        router = router.base_url(),
        local = local.base_url(),
        azure = azure.base_url(),
    );
    std::fs::write(dir.path().join("ironhost.toml"), config).expect("config");
    let out = ironhost_in(dir.path())
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("OPENROUTER_API_KEY", ROUTER_KEY)
        .env("AZURE_OPENAI_API_KEY", AZURE_KEY)
        .env("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        .env("ROUTER_URL", format!("{}/api/v1", router.base_url()))
        .env("LOCAL_URL", format!("{}/v1", local.base_url()))
        .env("AZURE_URL", azure.base_url())
        .args(["start", "--no-api", "--log-format", "json"])
        .arg(repo().join("tests/agents/upstreams.py"))
        .output()
        .expect("ironhost runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let case = |name: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["case"] == name)
            .unwrap_or_else(|| panic!("no case {name}: {stdout}\n{stderr}"))
    };
    for name in ["default", "router", "local", "azure", "anthropic"] {
        assert_eq!(case(name)["text"], "noted", "{name}: {stdout}\n{stderr}");
    }

    // Each upstream received exactly its own request, with its own key, redacted.
    let one = |p: &FakeProvider, what: &str| {
        let got = p.received();
        assert_eq!(got.len(), 1, "{what} received {got:?}");
        let r = got.into_iter().next().expect("one");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            !body.contains("jane.doe@example.com") && body.contains("[EMAIL_REDACTED]"),
            "{what}: {body}"
        );
        r
    };
    let r = one(&openai, "openai");
    assert_eq!(r.path, "/v1/chat/completions");
    let bearer_openai = format!("Bearer {OPENAI_KEY}");
    assert_eq!(auth(&r), (Some(bearer_openai.as_str()), None, None));
    let r = one(&router, "the router");
    assert_eq!(r.path, "/api/v1/chat/completions");
    let bearer_router = format!("Bearer {ROUTER_KEY}");
    assert_eq!(auth(&r), (Some(bearer_router.as_str()), None, None));
    let r = one(&local, "the local server");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        auth(&r),
        (None, None, None),
        "a keyless upstream gets no key"
    );
    let r = one(&azure, "azure");
    assert_eq!(
        r.path,
        "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(auth(&r), (None, None, Some(AZURE_KEY)));
    let r = one(&anthropic, "anthropic");
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(auth(&r), (None, Some(ANTHROPIC_KEY), None));

    // Recorded under the upstream's name, priced: the router's name and the deployment price
    // as the model they name.
    let calls: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "ironhost::call" && v["kind"] == "llm")
        .collect();
    for (provider, model) in [
        ("openai", "gpt-4o-mini"),
        ("openrouter", "anthropic/claude-3.5-haiku"),
        ("local", "gpt-4o-mini"),
        ("azure", "prod-4o"),
        ("anthropic", "claude-3-5-haiku-latest"),
    ] {
        let c = calls
            .iter()
            .find(|c| c["provider"] == provider && c["outcome"] == "ok")
            .unwrap_or_else(|| panic!("no ok call of {provider}: {calls:?}"));
        assert_eq!(c["model"], model, "{c}");
        assert!(c["cost_usd"].as_f64().is_some_and(|x| x > 0.0), "{c}");
        assert_eq!(c["simulated"], false, "{c}");
    }

    // A model with no price is its own refusal, before anything is sent.
    let unpriced = case("unpriced");
    assert_eq!(unpriced["denied"], "UnpricedModel", "{unpriced}");
    assert_eq!(unpriced["code"], "unpriced_model");
    assert!(
        unpriced["message"].as_str().is_some_and(|m| m
            .contains("meta-llama/llama-3.1-8b-instruct")
            && m.contains("openrouter")),
        "{unpriced}"
    );

    // No upstream key is readable in the agent: placeholders only.
    let env = lines
        .iter()
        .find(|l| l.get("environ").is_some())
        .expect("the agent printed its environment");
    let everything = env.to_string();
    for key in [OPENAI_KEY, ROUTER_KEY, AZURE_KEY, ANTHROPIC_KEY] {
        assert!(
            !everything.contains(key),
            "the agent can read {key}: {everything}"
        );
    }
    for var in [
        "OPENAI_API_KEY",
        "OPENROUTER_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ] {
        assert_eq!(
            env["environ"][var], "ironhost-placeholder-key",
            "{var}: {everything}"
        );
    }
}

#[test]
fn intercept_hosts_is_refused_with_the_way_to_configure_an_upstream() {
    let stderr = refused::refused_config("[llm]\nintercept-hosts = [\"openrouter.ai\"]\n");
    assert!(
        stderr.contains("llm.intercept-hosts") && stderr.contains("[[llm.upstreams]]"),
        "{stderr}"
    );
}
