//! The real-provider path of the gateway (`llm.mode = "live"`), end to end over HTTP: the
//! default bundle, the `HttpUpstream` client and a fake provider on 127.0.0.1 that records what
//! it receives and answers from a script.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::broadcast;

#[path = "common/fake_provider.rs"]
mod fake_provider;
use fake_provider::{FakeProvider, Script, json_answer};

use ironhost::events::{Event, EventBus, EventKind};
use ironhost::gateway::metrics::Metrics;
use ironhost::gateway::{
    Gateway, GatewayError, GatewayOptions, GatewayReply, HttpRequest, LlmMode, PLACEHOLDER_KEY,
};
use ironhost::llm::api::Api;
use ironhost::llm::http::HttpUpstream;
use ironhost::llm::simulator::{Simulator, SimulatorConfig};
use ironhost::llm::sse::SseParser;
use ironhost::llm::upstreams::Upstreams;
use ironhost::model::TokenMeter;
use ironhost::model::tokens::ModelTokenMeter;
use ironhost::model::{AgentInfo, LlmResponse, ProviderError, ProviderErrorKind, Usage};
use ironhost::policy::admit_bundle;
use ironhost::policy::defaults::default_bundle;
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::{HostServices, NoSecrets};

const OPENAI_KEY: &str = "sk-test-123";
const ANTHROPIC_KEY: &str = "sk-ant-test-456";
const EMAIL: &str = "jane.doe@example.org";
// ---- the fake provider ----------------------------------------------------------------------

fn openai_error(status: u16, kind: ProviderErrorKind, extra_headers: &[(&str, &str)]) -> Script {
    let (status, body) = Api::OpenAi.render_error(&ProviderError {
        kind,
        status: Some(status),
        message: format!("scripted {status}"),
        retry_after_ms: None,
    });
    json_answer(status, extra_headers, body)
}

// ---- the gateway under test -----------------------------------------------------------------

struct Harness {
    gateway: Arc<Gateway>,
    events: broadcast::Receiver<Arc<Event>>,
    // Declared last: dropped after the gateway and its HTTP client.
    _runtime: tokio::runtime::Runtime,
}

fn options(timeout: Duration, max_retries: u32) -> GatewayOptions {
    GatewayOptions {
        mode: LlmMode::Live,
        timeout,
        max_retries,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(2),
        budget_usd: None,
        unknown_parts: Default::default(),
        upstreams: Arc::default(),
    }
}

fn harness(provider: &FakeProvider, options: GatewayOptions) -> Harness {
    harness_with(provider, options, Vec::new())
}

/// The default bundle with `extra` policies after it.
fn harness_with(
    provider: &FakeProvider,
    options: GatewayOptions,
    extra: Vec<ironhost::policy::PolicyEntry>,
) -> Harness {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let meter: Arc<dyn TokenMeter> = Arc::new(ModelTokenMeter::embedded());
    let services = HostServices {
        tokens: meter.clone(),
        ..HostServices::default()
    };
    let engine = PolicyEngine::new(EngineOptions::in_memory(32), services).expect("engine");
    let mut bundle = default_bundle().expect("parses");
    bundle.policies.extend(extra);
    let chain = admit_bundle(&engine, &bundle).expect("admitted");
    // Both built-in upstreams are sent to the fake provider.
    let base = provider.base_url();
    let mut options = options;
    options.upstreams =
        Arc::new(Upstreams::new(Some(&base), Some(&base), &[]).expect("valid upstreams"));
    let http = HttpUpstream::new(runtime.handle().clone(), options.timeout).expect("http client");
    let env_keys: BTreeMap<String, String> = [
        ("OPENAI_API_KEY".to_owned(), OPENAI_KEY.to_owned()),
        ("ANTHROPIC_API_KEY".to_owned(), ANTHROPIC_KEY.to_owned()),
    ]
    .into_iter()
    .collect();
    let bus = EventBus::new();
    let events = bus.subscribe();
    let agent = AgentInfo {
        agent_id: "ag-provider-http".to_owned(),
        name: "provider-http".to_owned(),
        environment: "dev".to_owned(),
    };
    let gateway = Arc::new(
        Gateway::builder(Arc::new(chain), agent, meter.clone())
            .simulator(Arc::new(Simulator::new(SimulatorConfig::default(), meter)))
            .http(Some(Arc::new(http)))
            .secrets(Arc::new(NoSecrets))
            .env_keys(env_keys)
            .bus(bus)
            .metrics(Arc::new(Metrics::default()))
            .options(options)
            .build(),
    );
    Harness {
        gateway,
        events,
        _runtime: runtime,
    }
}

impl Harness {
    fn handle(&self, req: HttpRequest) -> Result<GatewayReply, GatewayError> {
        self.gateway.handle(req, &|| false)
    }

    /// The `LlmCall` events published so far (and not yet taken).
    /// The one LlmCall event the call published, as its JSON.
    fn the_call(&mut self) -> Value {
        let calls = self.llm_calls();
        assert_eq!(calls.len(), 1, "one call, however many attempts: {calls:?}");
        serde_json::to_value(&calls[0]).expect("events serialize")
    }

    fn llm_calls(&mut self) -> Vec<EventKind> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            if matches!(e.kind, EventKind::LlmCall { .. }) {
                out.push(e.kind.clone());
            }
        }
        out
    }
}

fn openai_request(body: &Value) -> HttpRequest {
    HttpRequest {
        upstream: "openai".to_owned(),
        method: "POST".to_owned(),
        path: "/v1/chat/completions".to_owned(),
        headers: vec![
            (
                "Authorization".to_owned(),
                format!("Bearer {PLACEHOLDER_KEY}"),
            ),
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Stainless-Lang".to_owned(), "python".to_owned()),
        ],
        body: body.to_string().into_bytes(),
    }
}

fn chat_body(text: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 200,
        "messages": [
            {"role": "system", "content": "You qualify sales leads."},
            {"role": "user", "content": text},
        ],
    })
}

fn answer(model: &str, id: &str, text: &str, usage: Usage) -> LlmResponse {
    let mut r = LlmResponse::text(model, text, Some(usage));
    r.id = id.to_owned();
    r
}

fn full(reply: GatewayReply) -> (u16, Vec<(String, String)>, Vec<u8>) {
    match reply {
        GatewayReply::Full {
            status,
            headers,
            body,
        } => (status, headers, body),
        GatewayReply::Stream(s) => panic!("expected a complete answer, got {s:?}"),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every text content of a chat request's messages, joined.
fn message_texts(body: &Value) -> String {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- the tests ------------------------------------------------------------------------------

#[test]
fn openai_call_gets_the_real_key_and_a_redacted_prompt() {
    let server_answer = "Score: 82/100. A strong lead.";
    let provider = FakeProvider::start(vec![json_answer(
        200,
        &[("x-request-id", "req_abc")],
        Api::OpenAi.render_response(
            None,
            &answer(
                "gpt-4o-mini",
                "chatcmpl-1",
                server_answer,
                Usage::new(31, 9),
            ),
        ),
    )]);
    let mut h = harness(&provider, options(Duration::from_secs(2), 2));

    let prompt = format!("Score this lead: Jane Doe, {EMAIL}, VP of Sales.");
    let reply = h
        .handle(openai_request(&chat_body(&prompt)))
        .expect("answered");

    let got = provider.received();
    assert_eq!(got.len(), 1, "one attempt");
    let sent = &got[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str()),
        "the real key is added at egress"
    );
    assert!(
        sent.headers
            .iter()
            .all(|(_, v)| !v.contains(PLACEHOLDER_KEY)),
        "the placeholder never leaves the host: {:?}",
        sent.headers
    );
    assert_eq!(
        sent.header("x-stainless-lang"),
        Some("python"),
        "the SDK's own headers are passed on"
    );
    let body = sent.json();
    assert_eq!(body["model"], "gpt-4o-mini");
    let texts = message_texts(&body);
    assert!(!texts.contains(EMAIL), "the email left the host: {texts}");
    assert!(texts.contains("[EMAIL_REDACTED]"), "{texts}");
    assert!(texts.contains("Score this lead: Jane Doe"), "{texts}");

    let (status, headers, body) = full(reply);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-request-id"), Some("req_abc"));
    let v: Value = serde_json::from_slice(&body).expect("JSON answer");
    assert_eq!(v["choices"][0]["message"]["content"], server_answer);
    assert_eq!(v["id"], "chatcmpl-1");

    let call = h.the_call();
    assert_eq!(call["outcome"], "ok");
    assert_eq!(call["status"], 200);
    assert_eq!(call["simulated"], false, "the call went to the provider");
    assert_eq!(call["attempts"], 1);
    assert_eq!(
        (&call["input_tokens"], &call["output_tokens"]),
        (&json!(31), &json!(9))
    );
    assert!(
        call["cost_usd"].as_f64() > Some(0.0),
        "priced from the provider's usage"
    );
}

#[test]
fn a_rate_limit_is_retried_after_the_wait_the_provider_asked_for() {
    let provider = FakeProvider::start(vec![
        openai_error(
            429,
            ProviderErrorKind::RateLimited,
            &[("retry-after-ms", "20")],
        ),
        json_answer(
            200,
            &[],
            Api::OpenAi.render_response(
                None,
                &answer(
                    "gpt-4o-mini",
                    "chatcmpl-2",
                    "Hello again.",
                    Usage::new(10, 3),
                ),
            ),
        ),
    ]);
    let mut h = harness(&provider, options(Duration::from_secs(2), 2));

    let started = Instant::now();
    let reply = h
        .handle(openai_request(&chat_body("Say hello.")))
        .expect("answered");
    let took = started.elapsed();

    let (status, _, body) = full(reply);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("JSON answer");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello again.");
    let got = provider.received();
    assert_eq!(got.len(), 2, "the 429 was retried once");
    assert_eq!(got[0].body, got[1].body, "the retry sends the same request");
    assert!(
        took >= Duration::from_millis(20),
        "the retry waited for retry-after-ms (took {took:?})"
    );

    let call = h.the_call();
    assert_eq!(call["outcome"], "ok");
    assert_eq!(call["status"], 200);
    assert_eq!(call["attempts"], 2);
}

#[test]
fn a_persistent_server_error_is_reported_after_the_retries() {
    let provider = FakeProvider::start(
        (0..3)
            .map(|_| openai_error(500, ProviderErrorKind::ServerError, &[]))
            .collect(),
    );
    let mut h = harness(&provider, options(Duration::from_secs(2), 2));

    let reply = h
        .handle(openai_request(&chat_body("Say hello.")))
        .expect("an HTTP answer");

    assert_eq!(provider.received().len(), 3, "1 attempt + 2 retries");
    let (status, headers, body) = full(reply);
    assert_eq!(status, 500);
    assert_eq!(
        header(&headers, "x-should-retry"),
        Some("false"),
        "the SDK must not retry again: {headers:?}"
    );
    let v: Value = serde_json::from_slice(&body).expect("JSON error");
    assert_eq!(
        v["error"]["message"], "scripted 500",
        "the provider's error body"
    );

    let call = h.the_call();
    assert_eq!(call["outcome"], "error");
    assert_eq!(call["status"], 500);
    assert_eq!(call["attempts"], 3);
}

#[test]
fn a_streamed_answer_is_redacted_and_the_usage_chunk_is_kept_from_the_agent() {
    let text = format!("Reach Jane at {EMAIL} before Friday.");
    let events = Api::OpenAi.render_stream(
        &answer("gpt-4o-mini", "chatcmpl-3", &text, Usage::new(42, 11)),
        true,
    );
    assert!(
        events
            .iter()
            .any(|e| { Api::OpenAi.event_info(e).usage_only }),
        "the provider's stream ends with a usage-only chunk"
    );
    let provider = FakeProvider::start(vec![Script::Sse(events)]);
    let mut h = harness(&provider, options(Duration::from_secs(2), 2));

    let mut body = chat_body("Who should I call?");
    body["stream"] = json!(true);
    let reply = h.handle(openai_request(&body)).expect("answered");

    let got = provider.received();
    assert_eq!(got.len(), 1);
    let sent = got[0].json();
    assert_eq!(sent["stream"], true);
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "the host asks for usage: {sent}"
    );
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );

    let GatewayReply::Stream(mut stream) = reply else {
        panic!("expected a stream, got {reply:?}")
    };
    assert!(
        header(stream.headers(), "content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        stream.headers()
    );
    let mut parser = SseParser::default();
    let mut received = Vec::new();
    let mut reads = 0;
    while let Some(bytes) = stream.next_bytes(&|| false).expect("stream") {
        received.extend(parser.feed(&bytes));
        reads += 1;
        assert!(reads < 1000, "the stream does not end");
    }
    received.extend(parser.finish());
    drop(stream);

    let mut agent_text = String::new();
    let mut saw_done = false;
    let mut finish = None;
    for ev in &received {
        if ev.data == "[DONE]" {
            saw_done = true;
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).expect("JSON chunk");
        let choices = v["choices"].as_array().expect("choices");
        assert!(
            !choices.is_empty(),
            "the usage-only chunk reached an agent that did not ask for it: {v}"
        );
        assert!(
            v.get("usage").is_none_or(Value::is_null),
            "usage reached the agent: {v}"
        );
        if let Some(t) = v
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            agent_text.push_str(t);
        }
        if let Some(f) = v
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
        {
            finish = Some(f.to_owned());
        }
    }
    assert!(saw_done, "the stream ends with [DONE]");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(agent_text, "Reach Jane at [EMAIL_REDACTED] before Friday.");

    let call = h.the_call();
    assert_eq!(call["outcome"], "ok");
    assert_eq!(call["stream"], true);
    assert_eq!(
        (&call["input_tokens"], &call["output_tokens"]),
        (&json!(42), &json!(11)),
        "the call is settled from the provider's usage chunk"
    );
}

#[test]
fn anthropic_call_gets_the_key_as_x_api_key() {
    let server_answer = "Bonjour.";
    let provider = FakeProvider::start(vec![json_answer(
        200,
        &[],
        Api::Anthropic.render_response(
            None,
            &answer(
                "claude-haiku-4-5",
                "msg_01",
                server_answer,
                Usage::new(14, 4),
            ),
        ),
    )]);
    let mut h = harness(&provider, options(Duration::from_secs(2), 2));

    let reply = h
        .handle(HttpRequest {
            upstream: "anthropic".to_owned(),
            method: "POST".to_owned(),
            path: "/v1/messages".to_owned(),
            headers: vec![
                ("x-api-key".to_owned(), PLACEHOLDER_KEY.to_owned()),
                ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            body: json!({
                "model": "claude-haiku-4-5",
                "max_tokens": 100,
                "messages": [{"role": "user", "content": "Say hello in French."}],
            })
            .to_string()
            .into_bytes(),
        })
        .expect("answered");

    let got = provider.received();
    assert_eq!(got.len(), 1);
    let sent = &got[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(
        sent.header("authorization"),
        None,
        "no bearer token to Anthropic: {:?}",
        sent.headers
    );
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.json()["model"], "claude-haiku-4-5");

    let (status, _, body) = full(reply);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("JSON answer");
    assert_eq!(v["content"][0]["text"], server_answer);

    let call = h.the_call();
    assert_eq!(call["provider"], "anthropic");
    assert_eq!(call["outcome"], "ok");
    assert_eq!(call["simulated"], false);
}

#[test]
fn a_provider_that_never_answers_times_out() {
    let provider = FakeProvider::start(vec![Script::Hang]);
    let mut h = harness(&provider, options(Duration::from_millis(300), 0));

    let started = Instant::now();
    let result = h.handle(openai_request(&chat_body("Say hello.")));
    let took = started.elapsed();

    assert!(
        matches!(result, Err(GatewayError::Timeout(_))),
        "{result:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "timed out after {took:?}"
    );
    assert_eq!(provider.received().len(), 1, "no retry with max_retries 0");

    let call = h.the_call();
    assert_eq!(call["outcome"], "error");
    assert_eq!(call["attempts"], 1);
}

#[test]
fn an_agent_that_asks_for_stream_usage_gets_the_usage_chunk() {
    let events = Api::OpenAi.render_stream(
        &answer("gpt-4o-mini", "chatcmpl-4", "All clear.", Usage::new(20, 4)),
        true,
    );
    let provider = FakeProvider::start(vec![Script::Sse(events)]);
    let h = harness(&provider, options(Duration::from_secs(2), 2));

    let mut body = chat_body("Status?");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let reply = h.handle(openai_request(&body)).expect("answered");
    assert_eq!(
        provider.received()[0].json()["stream_options"]["include_usage"],
        true
    );
    let GatewayReply::Stream(mut stream) = reply else {
        panic!("expected a stream, got {reply:?}")
    };
    let mut parser = SseParser::default();
    let mut received = Vec::new();
    let mut reads = 0;
    while let Some(bytes) = stream.next_bytes(&|| false).expect("stream") {
        received.extend(parser.feed(&bytes));
        reads += 1;
        assert!(reads < 1000, "the stream does not end");
    }
    received.extend(parser.finish());
    let usage: Vec<Value> = received
        .iter()
        .filter(|e| Api::OpenAi.event_info(e).usage_only)
        .map(|e| serde_json::from_str(&e.data).expect("JSON chunk"))
        .collect();
    assert_eq!(usage.len(), 1, "{received:?}");
    assert_eq!(usage[0]["usage"]["prompt_tokens"], 20);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 4);
    assert_eq!(received.last().map(|e| e.data.as_str()), Some("[DONE]"));
}

#[test]
fn personal_data_in_a_provider_answer_is_redacted_for_the_agent() {
    let provider = FakeProvider::start(vec![json_answer(
        200,
        &[],
        Api::OpenAi.render_response(
            None,
            &answer(
                "gpt-4o-mini",
                "chatcmpl-5",
                &format!("Write to {EMAIL}."),
                Usage::new(12, 6),
            ),
        ),
    )]);
    let h = harness(&provider, options(Duration::from_secs(2), 2));

    let reply = h
        .handle(openai_request(&chat_body("Whom do I write to?")))
        .expect("answered");
    let (status, headers, body) = full(reply);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("JSON answer");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Write to [EMAIL_REDACTED]."
    );
    assert_eq!(
        v["id"], "chatcmpl-5",
        "the provider's other fields are kept"
    );
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert!(
        header(&headers, "content-length").is_none(),
        "the provider's length no longer fits the rewritten body: {headers:?}"
    );
}

/// The OpenAI SDK always sends `Content-Type: application/json` and the host sets its own: the
/// provider must receive the header once (RFC 9110 allows no repeats of it).
#[test]
fn the_provider_receives_a_single_content_type() {
    let provider = FakeProvider::start(vec![json_answer(
        200,
        &[],
        Api::OpenAi.render_response(
            None,
            &answer("gpt-4o-mini", "chatcmpl-6", "Hi.", Usage::new(5, 1)),
        ),
    )]);
    let h = harness(&provider, options(Duration::from_secs(2), 2));
    h.handle(openai_request(&chat_body("Hi")))
        .expect("answered");
    let got = provider.received();
    let types: Vec<&str> = got[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(types, ["application/json"]);
}

#[test]
fn a_failing_policy_is_published_as_a_policy_failure_event_naming_policy_hook_and_kind() {
    let provider = FakeProvider::start(vec![json_answer(
        200,
        &[],
        Api::OpenAi.render_response(
            None,
            &answer("gpt-4o-mini", "chatcmpl-1", "fine", Usage::new(12, 3)),
        ),
    )]);
    let mut trap = ironhost::policy::PolicyEntry::for_component(ironhost_fixtures::TRAP.into());
    trap.capabilities = [ironhost::policy::Capability::Config].into_iter().collect();
    trap.failure_mode = ironhost::policy::FailureMode::FailOpen;
    let mut h = harness_with(&provider, options(Duration::from_secs(5), 0), vec![trap]);
    let reply = h
        .handle(openai_request(&chat_body("boom, said the agent")))
        .expect("fail-open lets the call through");
    assert_eq!(full(reply).0, 200);
    let mut failures = Vec::new();
    let mut call_id = None;
    while let Ok(e) = h.events.try_recv() {
        let v = serde_json::to_value(&e.kind).expect("events serialize");
        match &e.kind {
            EventKind::PolicyFailure { .. } => failures.push(v),
            EventKind::LlmCall { .. } => call_id = v["call_id"].as_str().map(str::to_owned),
            _ => {}
        }
    }
    assert_eq!(failures.len(), 1, "{failures:?}");
    let f = &failures[0];
    assert_eq!(f["type"], "policy_failure");
    assert_eq!(f["policy"], "trap");
    assert_eq!(f["hook"], "llm-request");
    assert_eq!(f["failure"], "trap");
    assert!(
        f["message"].as_str().is_some_and(|m| m.contains("trapped")),
        "{f}"
    );
    assert_eq!(f["call_id"].as_str(), call_id.as_deref(), "{f}");
}

#[test]
fn the_call_record_names_and_prices_the_model_actually_sent() {
    let usage = Usage::new(5000, 40);
    let provider = FakeProvider::start(vec![json_answer(
        200,
        &[],
        Api::OpenAi.render_response(None, &answer("o1", "chatcmpl-1", "thought hard", usage)),
    )]);
    // A policy after the default bundle switches gpt-4o-mini to o1 (and lengthens the prompt).
    let mut hostile =
        ironhost::policy::PolicyEntry::for_component(ironhost_fixtures::HOSTILE.into());
    hostile.capabilities = [
        ironhost::policy::Capability::Config,
        ironhost::policy::Capability::Log,
        ironhost::policy::Capability::Events,
    ]
    .into_iter()
    .collect();
    let mut h = harness_with(&provider, options(Duration::from_secs(5), 0), vec![hostile]);
    let reply = h
        .handle(openai_request(&chat_body("upgrade me")))
        .expect("answered");
    assert_eq!(full(reply).0, 200);
    let sent = provider.received();
    assert_eq!(sent[0].json()["model"], "o1", "o1 left the host");
    let call = h.the_call();
    assert_eq!(call["model"], "o1");
    let price = ModelTokenMeter::embedded()
        .price("o1")
        .expect("o1 is priced");
    let cost = call["cost_usd"].as_f64().expect("a cost");
    assert!(
        (cost - price.usd(&usage)).abs() < 1e-9,
        "{cost} vs {}",
        price.usd(&usage)
    );
}

#[test]
fn a_stream_closed_after_its_first_chunk_is_charged_for_the_prompt_and_what_was_streamed() {
    let text = "Acme's head of sales is the person to call first. ".repeat(40);
    let events = Api::OpenAi.render_stream(
        &answer("gpt-4o-mini", "chatcmpl-cut", &text, Usage::new(42, 400)),
        true,
    );
    let provider = FakeProvider::start(vec![Script::Sse(events)]);
    let mut h = harness(&provider, options(Duration::from_secs(2), 2));

    let mut body = chat_body("Who should I call?");
    body["stream"] = json!(true);
    let reply = h.handle(openai_request(&body)).expect("answered");
    let GatewayReply::Stream(mut stream) = reply else {
        panic!("expected a stream, got {reply:?}")
    };
    // The agent reads until it has some text, then walks away (the usage chunk never came).
    let mut parser = SseParser::default();
    let mut got = String::new();
    while got.is_empty() {
        let bytes = stream.next_bytes(&|| false).expect("stream").expect("more");
        for ev in parser.feed(&bytes) {
            if let Ok(v) = serde_json::from_str::<Value>(&ev.data)
                && let Some(t) = v
                    .pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            {
                got.push_str(t);
            }
        }
    }
    drop(stream);

    let events: Vec<_> = std::iter::from_fn(|| h.events.try_recv().ok()).collect();
    let calls: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::LlmCall { .. }))
        .collect();
    assert_eq!(calls.len(), 1, "{events:?}");
    let call = serde_json::to_value(&calls[0].kind).expect("serializes");
    assert_eq!(call["outcome"], "cancelled", "{call}");
    let (input, output) = (
        call["input_tokens"].as_u64().expect("input"),
        call["output_tokens"].as_u64().expect("output"),
    );
    // The prompt, counted by the host (the provider's usage chunk never came), and at least
    // the tokens the agent got; not the whole answer.
    assert!(input >= 5, "{call}");
    assert!((1..400).contains(&output), "{call}");
    let cost = call["cost_usd"].as_f64().expect("cost");
    let price = (input as f64 * 0.15 + output as f64 * 0.60) / 1e6;
    assert!((cost - price).abs() < 1e-9, "{cost} vs {price}: {call}");
    // The budget settled it at that cost.
    let settled = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CostUpdate { detail, .. } => detail["spent_usd"].as_f64(),
            _ => None,
        })
        .expect("the budget's cost update");
    assert!((settled - cost).abs() < 2e-6, "{settled} vs {cost}");
}

// ---- every API, every part ------------------------------------------------------------------

const SSN: &str = "123-45-6789";

fn post(path: &str, anthropic: bool, body: &Value) -> HttpRequest {
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    if anthropic {
        headers.push(("x-api-key".to_owned(), PLACEHOLDER_KEY.to_owned()));
        headers.push(("anthropic-version".to_owned(), "2023-06-01".to_owned()));
    } else {
        headers.push((
            "Authorization".to_owned(),
            format!("Bearer {PLACEHOLDER_KEY}"),
        ));
    }
    HttpRequest {
        upstream: if anthropic { "anthropic" } else { "openai" }.to_owned(),
        method: "POST".to_owned(),
        path: path.to_owned(),
        headers,
        body: body.to_string().into_bytes(),
    }
}

/// One request per governed API with personal data in every part a model reads, and the
/// answer the fake provider gives it.
fn every_api_cases() -> Vec<(&'static str, HttpRequest, Script)> {
    let pii = format!("{EMAIL} {SSN}");
    let reply = |api: Api, model: &str| {
        json_answer(
            200,
            &[],
            api.render_response(None, &answer(model, "id-1", "Noted.", Usage::new(40, 3))),
        )
    };
    vec![
        (
            "chat",
            post(
                "/v1/chat/completions",
                false,
                &json!({"model": "gpt-4o-mini", "messages": [
                    {"role": "system", "content": format!("Rules for {pii}")},
                    {"role": "user", "content": [
                        {"type": "text", "text": format!("Lead {pii}")},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                        {"type": "mystery", "note": format!("more {pii}")}]},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1",
                        "type": "function", "function": {"name": "mail",
                        "arguments": json!({"to": EMAIL, "ssn": SSN}).to_string()}}]},
                    {"role": "tool", "tool_call_id": "c1",
                        "content": [{"type": "text", "text": format!("sent to {pii}")}]}]}),
            ),
            reply(Api::OpenAi, "gpt-4o-mini"),
        ),
        (
            "messages",
            post(
                "/v1/messages",
                true,
                &json!({"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                    "system": [{"type": "text", "text": format!("Rules for {pii}"),
                        "cache_control": {"type": "ephemeral"}}],
                    "messages": [
                        {"role": "user", "content": [
                            {"type": "document", "title": format!("File of {EMAIL}"),
                             "source": {"type": "text", "media_type": "text/plain",
                                "data": format!("Contract of {pii}")}},
                            {"type": "text", "text": format!("Lead {pii}"),
                             "cache_control": {"type": "ephemeral"}}]},
                        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1",
                            "name": "mail", "input": {"to": EMAIL}}]},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                            "content": [{"type": "text", "text": format!("sent to {pii}")}]},
                            {"type": "server_tool_use", "id": "s1", "name": "web_search",
                             "input": {"query": pii.clone()}}]}]}),
            ),
            reply(Api::Anthropic, "claude-3-5-haiku-latest"),
        ),
        (
            "responses",
            post(
                "/v1/responses",
                false,
                &json!({"model": "gpt-4o-mini", "instructions": format!("Rules for {pii}"),
                    "input": [
                        {"role": "user", "content": [{"type": "input_text", "text": format!("Lead {pii}")}]},
                        {"type": "function_call", "call_id": "c1", "name": "mail",
                         "arguments": json!({"to": EMAIL}).to_string()},
                        {"type": "function_call_output", "call_id": "c1", "output": format!("sent to {pii}")}],
                    "tools": [{"type": "function", "name": "mail", "parameters": {"type": "object"}}]}),
            ),
            reply(Api::Responses, "gpt-4o-mini"),
        ),
        (
            "completions",
            post(
                "/v1/completions",
                false,
                &json!({"model": "gpt-3.5-turbo-instruct", "prompt": [format!("Lead {pii}")],
                    "suffix": format!("end {EMAIL}"), "max_tokens": 20}),
            ),
            reply(Api::Completions, "gpt-3.5-turbo-instruct"),
        ),
        (
            "embeddings",
            post(
                "/v1/embeddings",
                false,
                &json!({"model": "text-embedding-3-small", "input": [format!("Lead {pii}"), "plain"],
                    "encoding_format": "base64"}),
            ),
            json_answer(
                200,
                &[],
                json!({"object": "list", "model": "text-embedding-3-small",
                    "data": [{"object": "embedding", "index": 0, "embedding": "AAAAAA=="},
                             {"object": "embedding", "index": 1, "embedding": "AAAAAA=="}],
                    "usage": {"prompt_tokens": 12, "total_tokens": 12}})
                .to_string()
                .into_bytes(),
            ),
        ),
        (
            "moderations",
            post(
                "/v1/moderations",
                false,
                &json!({"model": "omni-moderation-latest",
                    "input": [{"type": "text", "text": format!("Lead {pii}")}]}),
            ),
            json_answer(
                200,
                &[],
                json!({"id": "modr-1", "model": "omni-moderation-latest", "results": [{"flagged": false}]})
                    .to_string()
                    .into_bytes(),
            ),
        ),
        (
            "count_tokens",
            post(
                "/v1/messages/count_tokens",
                true,
                &json!({"model": "claude-3-5-haiku-latest", "system": format!("Rules for {pii}"),
                    "messages": [{"role": "user", "content": format!("Lead {pii}")}]}),
            ),
            json_answer(200, &[], json!({"input_tokens": 21}).to_string().into_bytes()),
        ),
        (
            "input_tokens",
            post(
                "/v1/responses/input_tokens",
                false,
                &json!({"model": "gpt-4o-mini", "instructions": format!("Rules for {pii}"),
                    "input": format!("Lead {pii}")}),
            ),
            json_answer(
                200,
                &[],
                json!({"object": "response.input_tokens", "input_tokens": 21})
                    .to_string()
                    .into_bytes(),
            ),
        ),
    ]
}

#[test]
fn no_personal_data_leaves_in_any_part_of_any_api_and_every_call_is_recorded_and_priced() {
    let cases = every_api_cases();
    let provider = FakeProvider::start(
        cases
            .iter()
            .map(|(_, _, s)| match s {
                Script::Full {
                    status,
                    headers,
                    body,
                } => Script::Full {
                    status: *status,
                    headers: headers.clone(),
                    body: body.clone(),
                },
                _ => unreachable!("complete answers only"),
            })
            .collect(),
    );
    let mut h = harness(&provider, options(Duration::from_secs(2), 0));
    for (name, req, _) in cases {
        let (status, _, body) = full(h.handle(req).unwrap_or_else(|e| panic!("{name}: {e}")));
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
    }
    let got = provider.received();
    assert_eq!(got.len(), 8, "every request reached the provider");
    for r in &got {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains(EMAIL) && !body.contains(SSN),
            "personal data left the host on {}: {body}",
            r.path
        );
        assert!(body.contains("REDACTED"), "{}: {body}", r.path);
    }
    // Keys the neutral form does not model still reach the provider.
    let messages = got[1].json();
    assert_eq!(messages["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(
        messages["messages"][0]["content"][1]["cache_control"]["type"],
        "ephemeral"
    );
    assert_eq!(
        got[0].json()["messages"][1]["content"][1]["image_url"]["detail"],
        "low"
    );
    assert_eq!(got[4].json()["encoding_format"], "base64");

    let calls: Vec<Value> = h
        .llm_calls()
        .iter()
        .map(|c| serde_json::to_value(c).expect("serializes"))
        .collect();
    let apis: Vec<&str> = calls
        .iter()
        .map(|c| c["api"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        apis,
        [
            "chat",
            "messages",
            "responses",
            "completions",
            "embeddings",
            "moderations",
            "count_tokens",
            "input_tokens"
        ]
    );
    for c in &calls {
        assert_eq!(c["outcome"], "ok", "{c}");
        let priced = !matches!(
            c["api"].as_str(),
            Some("moderations" | "count_tokens" | "input_tokens")
        );
        let cost = c["cost_usd"].as_f64().unwrap_or(-1.0);
        assert_eq!(cost > 0.0, priced, "{c}");
    }
}

#[test]
fn a_responses_stream_is_redacted_in_every_event_and_kept_for_retrieval() {
    let text = format!("Reach Jane at {EMAIL} before Friday.");
    let mut r = answer("gpt-4o-mini", "resp_live1", &text, Usage::new(42, 11));
    r.message
        .content
        .push(ironhost::model::ContentPart::ToolUse(
            ironhost::model::ToolUse {
                id: "call_1".to_owned(),
                name: "mail".to_owned(),
                arguments: "{}".to_owned(),
            },
        ));
    let events = ironhost::llm::responses::render_stream(None, &r);
    let provider = FakeProvider::start(vec![Script::Sse(events)]);
    let mut h = harness(&provider, options(Duration::from_secs(2), 0));
    let reply = h
        .handle(post(
            "/v1/responses",
            false,
            &json!({"model": "gpt-4o-mini", "input": "Who?", "stream": true}),
        ))
        .expect("answered");
    let GatewayReply::Stream(mut stream) = reply else {
        panic!("expected a stream, got {reply:?}")
    };
    let mut parser = SseParser::default();
    let mut received = Vec::new();
    while let Some(bytes) = stream.next_bytes(&|| false).expect("stream") {
        received.extend(parser.feed(&bytes));
    }
    received.extend(parser.finish());
    drop(stream);
    let mut deltas = String::new();
    let mut done_text = None;
    let mut completed_text = None;
    for (i, ev) in received.iter().enumerate() {
        assert!(!ev.data.contains(EMAIL), "event {i} leaks: {}", ev.data);
        let v: Value = serde_json::from_str(&ev.data).expect("JSON event");
        assert_eq!(v["sequence_number"], json!(i), "events renumbered in order");
        assert_eq!(ev.event.as_deref(), v["type"].as_str(), "named by its type");
        match v["type"].as_str() {
            Some("response.output_text.delta") => {
                deltas.push_str(v["delta"].as_str().unwrap_or(""))
            }
            Some("response.output_text.done") => done_text = v["text"].as_str().map(str::to_owned),
            Some("response.completed") => {
                completed_text = v["response"]["output"][0]["content"][0]["text"]
                    .as_str()
                    .map(str::to_owned);
                assert_eq!(v["response"]["output"][1]["call_id"], "call_1");
            }
            _ => {}
        }
    }
    assert_eq!(deltas, "Reach Jane at [EMAIL_REDACTED] before Friday.");
    assert_eq!(done_text.as_deref(), Some(deltas.as_str()));
    assert_eq!(completed_text.as_deref(), Some(deltas.as_str()));
    let call = h.the_call();
    assert_eq!(
        (call["api"].as_str(), call["outcome"].as_str()),
        (Some("responses"), Some("ok"))
    );
    assert_eq!(
        (&call["input_tokens"], &call["output_tokens"]),
        (&json!(42), &json!(11))
    );

    // The answer as the agent got it is what `GET /v1/responses/{id}` returns.
    let get = |path: &str| HttpRequest {
        upstream: "openai".to_owned(),
        method: "GET".to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let (status, _, body) = full(h.handle(get("/v1/responses/resp_live1")).expect("answered"));
    assert_eq!(status, 200);
    let kept: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(kept["output"][0]["content"][0]["text"], json!(deltas));
    let (status, _, _) = full(
        h.handle(get("/v1/responses/resp_unknown"))
            .expect("answered"),
    );
    assert_eq!(status, 404);
    let (status, _, body) = full(h.handle(get("/v1/models")).expect("answered"));
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"gpt-4o-mini\""));
    assert_eq!(
        provider.received().len(),
        1,
        "the host answered the GETs itself"
    );
}

#[test]
fn refusals_are_answered_in_the_providers_shape_and_recorded_with_their_reason() {
    let provider = FakeProvider::start(Vec::new());
    let mut h = harness(
        &provider,
        GatewayOptions {
            unknown_parts: ironhost::llm::wire::UnknownParts::Refuse,
            ..options(Duration::from_secs(2), 0)
        },
    );
    let unknown = post(
        "/v1/messages",
        true,
        &json!({"model": "claude-3-5-haiku-latest", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "server_tool_use", "id": "s", "name": "x", "input": {}}]}]}),
    );
    let (status, headers, body) = full(h.handle(unknown).expect("answered"));
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "x-should-retry"), Some("false"));
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["type"], "error", "Anthropic's error shape: {v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("messages[0].content[0] (server_tool_use)"),
        "{message}"
    );

    let (status, _, body) = full(
        h.handle(post("/v1/files", false, &json!({"purpose": "x"})))
            .expect("answered"),
    );
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("is not routed"));
    let (status, _, _) = full(
        h.handle(post(
            "/v1/chat/completions",
            false,
            &json!({"model": "gpt-4o-mini"}),
        ))
        .expect("answered"),
    );
    assert_eq!(status, 400, "a body without messages");
    assert!(
        provider.received().is_empty(),
        "nothing reached the provider"
    );

    let calls: Vec<Value> = h
        .llm_calls()
        .iter()
        .map(|c| serde_json::to_value(c).expect("serializes"))
        .collect();
    let codes: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap_or("?"),
                c["outcome"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("unknown_part", "denied"),
            ("not_routed", "error"),
            ("invalid_request", "error")
        ]
    );
    assert!(
        calls
            .iter()
            .all(|c| c["reason"].as_str().is_some_and(|r| !r.is_empty()))
    );
}
