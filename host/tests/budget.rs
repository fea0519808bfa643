//! The budget policy as a compiled component in the real host.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use ironhost::model::*;
use ironhost::policy::Capability;
use ironhost::policy::admission::admit_policy;
use ironhost::policy::bundle::PolicyEntry;
use ironhost::policy::chain::{Chain, Outcome, VerdictKind};
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;
use ironhost::policy::state::{MemoryState, StateBackend, StateKey};

struct Host {
    engine: PolicyEngine,
    state: Arc<MemoryState>,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let state = Arc::new(MemoryState::default());
        let services = HostServices {
            state: state.clone(),
            ..HostServices::default()
        };
        let engine = PolicyEngine::new(EngineOptions::in_memory(128), services).expect("engine");
        Host { engine, state }
    })
}

fn budget_entry(config: serde_json::Value) -> PolicyEntry {
    let mut e = PolicyEntry::for_component(PathBuf::from("builtin:budget"));
    e.capabilities = [
        Capability::Config,
        Capability::Events,
        Capability::State,
        Capability::Tokens,
    ]
    .into_iter()
    .collect();
    e.config = config;
    e
}

fn chain(limit: f64) -> Chain {
    let policy = admit_policy(
        &host().engine,
        &budget_entry(serde_json::json!({"limit-usd": limit})),
    )
    .expect("admitted");
    Chain::new("budget", vec![policy])
}

fn ctx(agent: &str, call: &str) -> CallContext {
    CallContext::new(agent, call)
}

fn request(model: &str, max_out: u32) -> LlmRequest {
    let text = "Find the head of sales at Acme and draft a short intro email.";
    let mut r = LlmRequest::new("openai", model, vec![Message::text(Role::User, text)]);
    r.max_output_tokens = Some(max_out);
    r
}

fn answer(model: &str, input: u32, output: u32) -> LlmOutcome {
    LlmOutcome::Ok(LlmResponse::text(
        model,
        "Done.",
        Some(Usage::new(input, output)),
    ))
}

fn micros(agent: &str, key: &str) -> i64 {
    let key = StateKey {
        policy: "budget".into(),
        agent: Some(agent.into()),
        key: key.into(),
    };
    host()
        .state
        .get(&key)
        .map_or(0, |v| v.parse().expect("a counter"))
}

/// gpt-4o-mini: $0.15 input, $0.60 output per million tokens.
fn mini_cost(input: u32, output: u32) -> i64 {
    ((f64::from(input) * 0.15 + f64::from(output) * 0.60) / 1_000_000.0 * 1_000_000.0).ceil() as i64
}

#[test]
fn a_call_reserves_its_worst_case_then_settles_the_actual_cost() {
    let c = chain(1.0);
    let agent = "settle";
    let run = c.on_llm_request(&ctx(agent, "c1"), request("gpt-4o-mini", 1000));
    assert!(matches!(run.outcome, Outcome::Continue { .. }));
    let reserved = micros(agent, "committed");
    assert!(
        reserved >= mini_cost(0, 1000),
        "reserved {reserved} µ$ covers 1000 output tokens"
    );
    assert_eq!(micros(agent, "reservation:c1:0"), reserved);

    let run = c.on_llm_response(
        &ctx(agent, "c1"),
        request("gpt-4o-mini", 1000),
        answer("gpt-4o-mini", 20, 100),
    );
    let cost = mini_cost(20, 100);
    assert_eq!(micros(agent, "spent"), cost);
    assert_eq!(
        micros(agent, "committed"),
        cost,
        "the reservation was released"
    );
    assert_eq!(micros(agent, "reservation:c1:0"), 0);
    let event = run
        .events()
        .find(|e| e.kind == "budget.cost")
        .expect("a cost update");
    assert_eq!(event.detail["calls"], 1);
    assert_eq!(event.detail["status"], "under budget");
    assert_eq!(event.detail["spent_usd"].as_f64(), Some(cost as f64 / 1e6));
}

#[test]
fn a_call_that_could_pass_the_limit_is_denied() {
    let c = chain(0.0005);
    let run = c.on_llm_request(&ctx("deny", "c1"), request("gpt-4o-mini", 1000));
    let Outcome::Deny { denial, .. } = &run.outcome else {
        panic!("{:?}", run.outcome)
    };
    assert_eq!(denial.code, "budget_exceeded");
    assert!(
        denial.message.starts_with("budget of $0.00 reached"),
        "{}",
        denial.message
    );
    assert!(run.events().any(|e| e.kind == "budget.exceeded"));
    assert_eq!(micros("deny", "committed"), 0, "nothing stays reserved");
    // A smaller call still fits.
    assert!(matches!(
        c.on_llm_request(&ctx("deny", "c2"), request("gpt-4o-mini", 100))
            .outcome,
        Outcome::Continue { .. }
    ));
}

#[test]
fn the_warning_is_sent_once_when_crossing_the_threshold() {
    let c = chain(0.001);
    let agent = "warn";
    let mut warnings = 0;
    for i in 0..8 {
        let id = format!("c{i}");
        let run = c.on_llm_request(&ctx(agent, &id), request("gpt-4o-mini", 200));
        if !matches!(run.outcome, Outcome::Continue { .. }) {
            break;
        }
        let run = c.on_llm_response(
            &ctx(agent, &id),
            request("gpt-4o-mini", 200),
            answer("gpt-4o-mini", 20, 200),
        );
        warnings += run.events().filter(|e| e.kind == "budget.warning").count();
    }
    assert_eq!(warnings, 1);
    assert!(micros(agent, "spent") as f64 >= 0.9 * 1000.0);
}

#[test]
fn streamed_and_non_streamed_calls_cost_the_same() {
    let c = chain(1.0);
    for (agent, stream) in [("plain", false), ("streamed", true)] {
        let mut req = request("claude-sonnet-4-5", 500);
        req.provider = "anthropic".into();
        req.stream = stream;
        assert!(matches!(
            c.on_llm_request(&ctx(agent, "c1"), req.clone()).outcome,
            Outcome::Continue { .. }
        ));
        // For a stream the host calls on-llm-response after the last chunk, with the usage.
        c.on_llm_response(
            &ctx(agent, "c1"),
            req,
            answer("claude-sonnet-4-5", 300, 400),
        );
    }
    assert_eq!(micros("plain", "spent"), micros("streamed", "spent"));
    // $3 / $15 per million: 300 in + 400 out.
    assert_eq!(
        micros("plain", "spent"),
        ((300.0 * 3.0 + 400.0 * 15.0) / 1e6 * 1e6_f64).ceil() as i64
    );
}

#[test]
fn an_abandoned_call_releases_its_reservation() {
    let budget = admit_policy(
        &host().engine,
        &budget_entry(serde_json::json!({"limit-usd": 1.0})),
    )
    .expect("admitted");
    let deny = admit_policy(
        &host().engine,
        &PolicyEntry::for_component(PathBuf::from(ironhost_fixtures::DENY_ALL)),
    )
    .expect("admitted");
    let c = Chain::new("t", vec![budget, deny]);
    let run = c.on_llm_request(&ctx("abandon", "c1"), request("gpt-4o-mini", 1000));
    assert!(matches!(run.outcome, Outcome::Deny { .. }));
    assert_eq!(
        run.policies.last().map(|r| r.verdict),
        Some(VerdictKind::Notified)
    );
    assert_eq!(micros("abandon", "committed"), 0);
    assert_eq!(micros("abandon", "spent"), 0);
}

#[test]
fn unknown_models_are_refused_unless_priced_in_the_config() {
    let c = chain(1.0);
    let run = c.on_llm_request(&ctx("unknown", "c1"), request("my-local-model", 100));
    let Outcome::Deny { denial, .. } = run.outcome else {
        panic!("denied")
    };
    assert_eq!(denial.code, "unpriced_model");
    let priced = budget_entry(
        serde_json::json!({"limit-usd": 1.0, "prices": {"my-local-model": {"input": 1.0, "output": 1.0}}}),
    );
    let c = Chain::new(
        "t",
        vec![admit_policy(&host().engine, &priced).expect("admitted")],
    );
    assert!(matches!(
        c.on_llm_request(&ctx("unknown", "c2"), request("my-local-model", 100))
            .outcome,
        Outcome::Continue { .. }
    ));
}

#[test]
fn concurrent_calls_never_overspend_by_more_than_one_reservation() {
    let c = Arc::new(chain(0.01));
    let agent = "concurrent";
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut allowed = 0;
                for i in 0..40 {
                    let id = format!("t{t}-{i}");
                    let req = request("gpt-4o-mini", 2000);
                    if matches!(
                        c.on_llm_request(&ctx(agent, &id), req.clone()).outcome,
                        Outcome::Continue { .. }
                    ) {
                        allowed += 1;
                        // The provider used every output token it was allowed.
                        c.on_llm_response(&ctx(agent, &id), req, answer("gpt-4o-mini", 40, 2000));
                    }
                }
                allowed
            })
        })
        .collect();
    let allowed: i32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let spent = micros(agent, "spent");
    let one_reservation = mini_cost(100, 2000);
    assert!(
        allowed > 0 && allowed < 320,
        "some calls ran and some were refused ({allowed})"
    );
    assert!(
        spent <= 10_000 + one_reservation,
        "spent {spent} µ$ against a 10 000 µ$ limit"
    );
    assert_eq!(
        micros(agent, "committed"),
        spent,
        "no reservation is left behind"
    );
}

#[test]
fn each_answer_a_request_asks_for_is_reserved() {
    let c = chain(1.0);
    let agent = "choices";
    let mut four = request("gpt-4o-mini", 1000);
    four.extra = r#"{"n":4}"#.to_owned();
    let run = c.on_llm_request(&ctx(agent, "c1"), four);
    assert!(matches!(run.outcome, Outcome::Continue { .. }));
    let reserved = micros(agent, "committed");
    // Four answers of up to 1000 tokens each: billed as 4000 output tokens.
    assert!(reserved >= mini_cost(0, 4000), "reserved {reserved} µ$");
    assert!(reserved < mini_cost(1000, 4001), "reserved {reserved} µ$");

    // A limit one answer fits and four do not.
    let tight = chain(mini_cost(100, 2000) as f64 / 1e6);
    let mut four = request("gpt-4o-mini", 1000);
    four.extra = r#"{"n":4}"#.to_owned();
    let Outcome::Deny { denial, .. } = tight.on_llm_request(&ctx("choices-2", "c1"), four).outcome
    else {
        panic!("four answers fit a limit for two")
    };
    assert_eq!(denial.code, "budget_exceeded");
    assert!(matches!(
        tight
            .on_llm_request(&ctx("choices-2", "c2"), request("gpt-4o-mini", 1000))
            .outcome,
        Outcome::Continue { .. }
    ));
}
