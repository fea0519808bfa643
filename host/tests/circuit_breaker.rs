//! The circuit-breaker policy as a compiled component in the real host.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ironhost::model::*;
use ironhost::policy::Capability;
use ironhost::policy::admission::admit_policy;
use ironhost::policy::bundle::PolicyEntry;
use ironhost::policy::chain::{Chain, Outcome};
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;

fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        PolicyEngine::new(EngineOptions::in_memory(64), HostServices::default()).expect("engine")
    })
}

/// A breaker with its own name, so tests sharing the engine's state do not share circuits.
fn breaker(name: &str, config: serde_json::Value) -> Chain {
    let mut e = PolicyEntry::for_component(PathBuf::from("builtin:circuit-breaker"));
    e.name = Some(name.into());
    e.capabilities = [
        Capability::Config,
        Capability::Events,
        Capability::State,
        Capability::Clock,
    ]
    .into_iter()
    .collect();
    e.config = config;
    Chain::new("cb", vec![admit_policy(engine(), &e).expect("admitted")])
}

fn ctx(agent: &str) -> CallContext {
    CallContext::new(agent, "c")
}

fn request() -> LlmRequest {
    LlmRequest::new(
        "openai",
        "gpt-4o-mini",
        vec![Message::text(Role::User, "hi")],
    )
}

fn failure(kind: ProviderErrorKind) -> LlmOutcome {
    LlmOutcome::Error(ProviderError {
        kind,
        status: Some(503),
        message: "unavailable".into(),
        retry_after_ms: None,
    })
}

fn ok() -> LlmOutcome {
    LlmOutcome::Ok(LlmResponse::text("gpt-4o-mini", "hello", None))
}

fn kinds<T>(run: &ironhost::policy::chain::ChainRun<T>) -> Vec<String> {
    run.events().map(|e| e.kind.clone()).collect()
}

#[test]
fn an_llm_circuit_opens_refuses_half_opens_and_closes() {
    let c = breaker(
        "cb-llm",
        serde_json::json!({"failure-threshold": 3, "cooldown-ms": 600}),
    );
    for i in 0..3 {
        assert!(
            matches!(
                c.on_llm_request(&ctx("a"), request()).outcome,
                Outcome::Continue { .. }
            ),
            "call {i}"
        );
        let run = c.on_llm_response(
            &ctx("a"),
            request(),
            failure(ProviderErrorKind::ServerError),
        );
        assert_eq!(
            kinds(&run),
            if i == 2 {
                vec!["circuit.opened".to_owned()]
            } else {
                vec![]
            }
        );
    }
    // Open: refused, for every agent (circuits are shared).
    let run = c.on_llm_request(&ctx("b"), request());
    let Outcome::Deny { denial, .. } = &run.outcome else {
        panic!("{:?}", run.outcome)
    };
    assert_eq!(denial.code, "circuit_open");
    assert!(denial.message.contains("llm:openai/gpt-4o-mini"));
    assert_eq!(kinds(&run), ["circuit.blocked"]);

    std::thread::sleep(Duration::from_millis(700));
    // After the cooldown one trial goes through; a second caller is still refused.
    let trial = c.on_llm_request(&ctx("a"), request());
    assert!(matches!(trial.outcome, Outcome::Continue { .. }));
    assert_eq!(kinds(&trial), ["circuit.half_open"]);
    assert!(matches!(
        c.on_llm_request(&ctx("b"), request()).outcome,
        Outcome::Deny { .. }
    ));
    let closed = c.on_llm_response(&ctx("a"), request(), ok());
    assert_eq!(kinds(&closed), ["circuit.closed"]);
    assert!(matches!(
        c.on_llm_request(&ctx("b"), request()).outcome,
        Outcome::Continue { .. }
    ));
}

#[test]
fn a_failed_trial_reopens_and_an_abandoned_trial_is_released() {
    let c = breaker(
        "cb-trial",
        serde_json::json!({"failure-threshold": 1, "cooldown-ms": 400}),
    );
    c.on_llm_response(&ctx("a"), request(), failure(ProviderErrorKind::Timeout));
    std::thread::sleep(Duration::from_millis(500));
    assert!(matches!(
        c.on_llm_request(&ctx("a"), request()).outcome,
        Outcome::Continue { .. }
    ));
    let run = c.on_llm_response(
        &ctx("a"),
        request(),
        failure(ProviderErrorKind::RateLimited),
    );
    assert_eq!(kinds(&run), ["circuit.opened"]);
    assert!(matches!(
        c.on_llm_request(&ctx("a"), request()).outcome,
        Outcome::Deny { .. }
    ));

    std::thread::sleep(Duration::from_millis(500));
    assert!(matches!(
        c.on_llm_request(&ctx("a"), request()).outcome,
        Outcome::Continue { .. }
    ));
    // The trial never finished: the host reports it abandoned, and the next caller may try.
    let reason = Denial {
        code: "cancelled".into(),
        message: "agent stopped".into(),
        retry_after_ms: None,
    };
    c.on_llm_abandoned(&ctx("a"), request(), reason, None, None);
    assert!(matches!(
        c.on_llm_request(&ctx("b"), request()).outcome,
        Outcome::Continue { .. }
    ));
}

#[test]
fn client_errors_do_not_count_as_service_failures() {
    let c = breaker("cb-client", serde_json::json!({"failure-threshold": 2}));
    for _ in 0..5 {
        c.on_llm_response(
            &ctx("a"),
            request(),
            failure(ProviderErrorKind::InvalidRequest),
        );
        c.on_llm_response(
            &ctx("a"),
            request(),
            failure(ProviderErrorKind::Authentication),
        );
    }
    assert!(matches!(
        c.on_llm_request(&ctx("a"), request()).outcome,
        Outcome::Continue { .. }
    ));
}

#[test]
fn an_open_llm_circuit_can_answer_with_a_placeholder() {
    let c = breaker(
        "cb-placeholder",
        serde_json::json!({"failure-threshold": 1, "placeholder": "Back soon."}),
    );
    c.on_llm_response(&ctx("a"), request(), failure(ProviderErrorKind::Connection));
    match c.on_llm_request(&ctx("a"), request()).outcome {
        Outcome::Respond { response, .. } => {
            assert_eq!(response.message.joined_text(), "Back soon.")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_open_tool_circuit_serves_the_last_good_result_then_the_placeholder_then_an_error() {
    let c = breaker(
        "cb-tool",
        serde_json::json!({"failure-threshold": 2, "tool-placeholders": {"search": {"results": [], "note": "search unavailable"}}}),
    );
    let call = |name: &str, q: &str| ToolCall {
        id: "t".into(),
        name: name.into(),
        arguments: format!(r#"{{"q":"{q}"}}"#),
    };
    // A good result for "acme" is remembered.
    assert!(matches!(
        c.on_tool_call(&ctx("a"), call("search", "acme")).outcome,
        Outcome::Continue { .. }
    ));
    c.on_tool_result(
        &ctx("a"),
        call("search", "acme"),
        ToolOutcome::Ok(r#"{"results":["Acme Corp"]}"#.into()),
    );
    for _ in 0..2 {
        let error = ToolOutcome::Error(ToolError {
            kind: ToolErrorKind::Timeout,
            message: "timed out".into(),
        });
        c.on_tool_result(&ctx("a"), call("search", "other"), error);
    }
    match c.on_tool_call(&ctx("a"), call("search", "acme")).outcome {
        Outcome::Fallback { result, .. } => assert_eq!(result, r#"{"results":["Acme Corp"]}"#),
        other => panic!("{other:?}"),
    }
    match c.on_tool_call(&ctx("a"), call("search", "globex")).outcome {
        Outcome::Fallback { result, .. } => {
            let v: serde_json::Value = serde_json::from_str(&result).expect("JSON");
            assert_eq!(v["note"], "search unavailable");
        }
        other => panic!("{other:?}"),
    }
    // Another tool without a placeholder: an error once its circuit opens.
    for _ in 0..2 {
        let error = ToolOutcome::Error(ToolError {
            kind: ToolErrorKind::Unavailable,
            message: "down".into(),
        });
        c.on_tool_result(&ctx("a"), call("crm", "x"), error);
    }
    let Outcome::Deny { denial, .. } = c.on_tool_call(&ctx("a"), call("crm", "x")).outcome else {
        panic!("denied")
    };
    assert_eq!(denial.code, "circuit_open");
}
