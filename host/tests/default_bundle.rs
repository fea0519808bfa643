//! The default bundle, as built into the binary, on one LLM call end to end.

use ironhost::policy::admit_bundle;
use ironhost::policy::chain::{Outcome, VerdictKind};
use ironhost::policy::defaults::default_bundle;
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;
use ironhost::policy::model::*;

#[test]
fn a_request_goes_through_all_four_default_policies() {
    let engine = PolicyEngine::new(
        EngineOptions {
            cache_dir: None,
            max_instances: 32,
        },
        HostServices::default(),
    )
    .expect("engine");
    let chain = admit_bundle(&engine, &default_bundle().expect("parses")).expect("admitted");
    let ctx = CallContext {
        agent_id: "lg-7a3f9c2d".into(),
        call_id: "c1".into(),
        environment: "dev".into(),
        attempt: 0,
    };
    let request = LlmRequest {
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::text(Role::System, "You qualify sales leads."),
            Message::text(
                Role::User,
                "Score this lead: Dana Ruiz, dana.ruiz@northwind.example, +1 415 555 0134.",
            ),
        ],
        tools: vec![],
        max_output_tokens: Some(300),
        temperature: None,
        stream: false,
        extra: "{}".into(),
        credential: None,
    };
    let run = chain.on_llm_request(&ctx, request);
    let verdicts: Vec<_> = run
        .policies
        .iter()
        .map(|r| (r.policy.as_str(), r.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("secrets-inject", VerdictKind::Rewrite),
            ("circuit-breaker", VerdictKind::Pass),
            ("budget", VerdictKind::Pass),
            ("pii-redact", VerdictKind::Rewrite),
        ]
    );
    let Outcome::Continue { value } = &run.outcome else {
        panic!("{:?}", run.outcome)
    };
    assert_eq!(
        value.credential.as_deref(),
        Some("OPENAI_API_KEY"),
        "the key is named for egress"
    );
    assert_eq!(
        value.messages[1].joined_text(),
        "Score this lead: Dana Ruiz, [EMAIL_REDACTED], [PHONE_REDACTED]."
    );
    let kinds: Vec<_> = run.events().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["pii.finding", "pii.finding"]);

    // The answer settles the budget.
    let answer = LlmOutcome::Ok(LlmResponse {
        id: "r1".into(),
        model: "gpt-4o-mini".into(),
        message: Message::text(Role::Assistant, "Score: 82/100."),
        finish_reason: "stop".into(),
        usage: Some(Usage {
            input_tokens: 40,
            output_tokens: 8,
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
        }),
    });
    let Outcome::Continue { value: sent } = run.outcome else {
        unreachable!()
    };
    let done = chain.on_llm_response(&ctx, sent, answer);
    let cost = done
        .events()
        .find(|e| e.kind == "budget.cost")
        .expect("cost update");
    assert_eq!(cost.detail["calls"], 1);
    assert_eq!(cost.detail["limit_usd"], 100.0);
}
