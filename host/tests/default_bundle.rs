//! The default bundle, as built into the binary, on one LLM call end to end.

use ironhost::model::*;
use ironhost::policy::admit_bundle;
use ironhost::policy::chain::{Outcome, VerdictKind};
use ironhost::policy::defaults::default_bundle;
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;

#[test]
fn a_request_goes_through_all_five_default_policies() {
    let engine =
        PolicyEngine::new(EngineOptions::in_memory(32), HostServices::default()).expect("engine");
    let chain = admit_bundle(&engine, &default_bundle().expect("parses")).expect("admitted");
    let ctx = CallContext::new("lg-7a3f9c2d", "c1");
    let messages = vec![
        Message::text(Role::System, "You qualify sales leads."),
        Message::text(
            Role::User,
            "Score this lead: Dana Ruiz, dana.ruiz@northwind.example, +1 415 555 0134.",
        ),
    ];
    let mut request = LlmRequest::new("openai", "gpt-4o-mini", messages);
    request.max_output_tokens = Some(300);
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
            ("prompt-guard", VerdictKind::Pass),
            ("pii-redact", VerdictKind::Rewrite),
            // pii-redact changed the prompt after the two policies that keep something per
            // call passed it: they see it again as it will be sent (the budget reserves for
            // the redacted prompt).
            ("circuit-breaker", VerdictKind::Notified),
            ("circuit-breaker", VerdictKind::Pass),
            ("budget", VerdictKind::Notified),
            ("budget", VerdictKind::Pass),
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
    let answer = LlmOutcome::Ok(LlmResponse::text(
        "gpt-4o-mini",
        "Score: 82/100.",
        Some(Usage::new(40, 8)),
    ));
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

#[test]
fn a_prompt_of_a_million_spaces_is_governed_without_taking_the_host_down() {
    let engine =
        PolicyEngine::new(EngineOptions::in_memory(32), HostServices::default()).expect("engine");
    let chain = admit_bundle(&engine, &default_bundle().expect("parses")).expect("admitted");
    for (i, text) in [" ".repeat(1_000_000), "\n".repeat(1_000_000)]
        .into_iter()
        .enumerate()
    {
        let ctx = CallContext::new("spaces", &format!("c{i}"));
        let run = chain.on_llm_request(
            &ctx,
            LlmRequest::new(
                "openai",
                "gpt-4o-mini",
                vec![Message::text(Role::User, &text)],
            ),
        );
        // Counting a megabyte may be more CPU than the budget's 10 ms: then the budget fails
        // closed. Either way the call is answered and nothing else failed.
        for p in &run.policies {
            if let Some(f) = &p.failure {
                assert_eq!(p.policy, "budget", "{f:?}");
                assert!(f.message.contains("deadline of 10 ms exceeded"), "{f:?}");
            }
        }
    }
    let ctx = CallContext::new("spaces", "after");
    let run = chain.on_llm_request(
        &ctx,
        LlmRequest::new(
            "openai",
            "gpt-4o-mini",
            vec![Message::text(Role::User, "still here?")],
        ),
    );
    assert!(
        matches!(run.outcome, Outcome::Continue { .. }),
        "{:?}",
        run.outcome
    );
}
