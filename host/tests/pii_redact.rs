//! The pii-redact policy as a compiled component in the real host.

use std::path::PathBuf;
use std::sync::OnceLock;

use ironhost::model::*;
use ironhost::policy::Capability;
use ironhost::policy::admission::admit_policy;
use ironhost::policy::bundle::PolicyEntry;
use ironhost::policy::chain::{Chain, Outcome, VerdictKind};
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;

fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let options = EngineOptions::in_memory(64);
        PolicyEngine::new(options, HostServices::default()).expect("engine")
    })
}

fn chain(config: serde_json::Value) -> Chain {
    let mut entry = PolicyEntry::for_component(PathBuf::from("builtin:pii-redact"));
    entry.capabilities = [Capability::Config, Capability::Events]
        .into_iter()
        .collect();
    entry.config = config;
    Chain::new(
        "pii",
        vec![admit_policy(engine(), &entry).expect("admitted")],
    )
}

fn ctx() -> CallContext {
    CallContext::new("pii-agent", "c1")
}

fn request(text: &str) -> LlmRequest {
    LlmRequest::new(
        "openai",
        "gpt-4o-mini",
        vec![Message::text(Role::User, text)],
    )
}

const TEXT: &str = "Reach Jane at jane.doe@acme.io or (415) 555-2671; SSN 078-05-1120.";

#[test]
fn pii_never_reaches_the_provider_in_redact_mode() {
    let run = chain(serde_json::json!({})).on_llm_request(&ctx(), request(TEXT));
    let Outcome::Continue { value } = &run.outcome else {
        panic!("continues")
    };
    assert_eq!(
        value.messages[0].joined_text(),
        "Reach Jane at [EMAIL_REDACTED] or [PHONE_REDACTED]; SSN [SSN_REDACTED]."
    );
    let findings: Vec<_> = run.events().filter(|e| e.kind == "pii.finding").collect();
    let types: Vec<_> = findings
        .iter()
        .map(|e| e.detail["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["email", "phone", "ssn"]);
    let email = &findings[0];
    assert_eq!(email.severity, Severity::High);
    assert_eq!(email.detail["severity"], "high");
    assert_eq!(
        (email.detail["start"].as_u64(), email.detail["end"].as_u64()),
        (Some(14), Some(30))
    );
    assert_eq!(findings[2].severity, Severity::Critical);
    assert_eq!(findings[1].severity, Severity::Medium);
    // Events carry a keyed fingerprint, never the value.
    let all = serde_json::to_string(&findings).expect("serializes");
    for value in ["jane.doe@acme.io", "555-2671", "078-05-1120"] {
        assert!(!all.contains(value), "{value} leaked into an event");
    }
    assert_eq!(
        email.detail["fingerprint"],
        engine()
            .services()
            .fingerprints
            .fingerprint("jane.doe@acme.io")
            .as_str()
    );
}

#[test]
fn block_mode_denies_and_warn_mode_only_reports() {
    let run = chain(serde_json::json!({"mode": "block"})).on_llm_request(&ctx(), request(TEXT));
    match run.outcome {
        Outcome::Deny { denial, .. } => {
            assert_eq!(denial.code, "pii_detected");
            assert_eq!(
                denial.message,
                "the request contains personal data (email, phone, ssn)"
            );
        }
        other => panic!("{other:?}"),
    }
    let run = chain(serde_json::json!({"mode": "warn"})).on_llm_request(&ctx(), request(TEXT));
    assert_eq!(run.policies[0].verdict, VerdictKind::Pass);
    assert_eq!(run.events().count(), 3);
    assert!(run.events().all(|e| e.detail["action"] == "reported"));
}

#[test]
fn allowlists_and_types_come_from_the_config() {
    let c = chain(serde_json::json!({"allow-domains": ["acme.io"], "types": ["email", "ssn"]}));
    let Outcome::Continue { value } = c.on_llm_request(&ctx(), request(TEXT)).outcome else {
        panic!()
    };
    assert_eq!(
        value.messages[0].joined_text(),
        "Reach Jane at jane.doe@acme.io or (415) 555-2671; SSN [SSN_REDACTED]."
    );
}

#[test]
fn a_value_split_across_stream_chunks_is_still_caught() {
    let c = chain(serde_json::json!({}));
    let emitted = released(
        &c,
        &[
            "Write to jane.d",
            "oe@ac",
            "me.io or call +1 415 5",
            "55 2671 today",
            ".",
        ],
    );
    assert_eq!(
        emitted.concat(),
        "Write to [EMAIL_REDACTED] or call [PHONE_REDACTED] today."
    );
    for piece in &emitted {
        for fragment in ["jane", "acme", "415", "2671"] {
            assert!(!piece.contains(fragment), "{fragment} leaked in {piece:?}");
        }
    }
}

#[test]
fn answers_and_tool_results_are_redacted_and_streamed_answers_not_reported_twice() {
    let c = chain(serde_json::json!({}));
    let answer = LlmResponse {
        id: "r".into(),
        model: "m".into(),
        message: Message::text(Role::Assistant, "Her number is (415) 555-2671."),
        finish_reason: "stop".into(),
        usage: None,
    };
    let run = c.on_llm_response(&ctx(), request("who?"), LlmOutcome::Ok(answer.clone()));
    match run.outcome {
        Outcome::Continue {
            value: LlmOutcome::Ok(r),
        } => assert_eq!(r.message.joined_text(), "Her number is [PHONE_REDACTED]."),
        other => panic!("{other:?}"),
    }
    let mut streamed = request("who?");
    streamed.stream = true;
    let run = c.on_llm_response(&ctx(), streamed, LlmOutcome::Ok(answer));
    assert_eq!(
        run.events().count(),
        0,
        "chunks already reported these findings"
    );

    let result = ToolOutcome::Ok(r#"{"email":"jane.doe@acme.io","ok":true}"#.into());
    let run = c.on_tool_result(
        &ctx(),
        ToolCall {
            id: "t".into(),
            name: "crm".into(),
            arguments: "{}".into(),
        },
        result,
    );
    match run.outcome {
        Outcome::Continue {
            value: ToolOutcome::Ok(json),
        } => {
            let v: serde_json::Value = serde_json::from_str(&json).expect("still JSON");
            assert_eq!(v["email"], "[EMAIL_REDACTED]");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_config_is_refused_at_admission() {
    let mut entry = PolicyEntry::for_component(PathBuf::from("builtin:pii-redact"));
    entry.capabilities = [Capability::Config, Capability::Events]
        .into_iter()
        .collect();
    entry.config = serde_json::json!({"mode": "shout"});
    let err = admit_policy(engine(), &entry).expect_err("refused");
    assert!(
        err.to_string().contains("rejected its config") && err.to_string().contains("shout"),
        "{err}"
    );
}

/// Stream `pieces` through a fresh stream of `c` and return what the agent receives.
fn streamed(c: &Chain, pieces: &[&str]) -> String {
    released(c, pieces).concat()
}

/// What each of `pieces`, streamed through a fresh stream of `c`, released to the agent.
fn released(c: &Chain, pieces: &[&str]) -> Vec<String> {
    let mut stream = c.stream(&ctx());
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let run = stream.push(LlmChunk {
            index: i as u32,
            text: (*p).into(),
            finish_reason: None,
            usage: None,
            last: i + 1 == pieces.len(),
        });
        let Outcome::Continue { value } = run.outcome else {
            panic!("continues")
        };
        out.push(value);
    }
    out
}

#[test]
fn no_part_of_a_value_is_released_at_any_split_or_in_one_character_chunks() {
    // Issue 22: `GB82 WEST 1234 5698 7654 32` in small chunks came out as
    // `GB82 WEST [PHONE_REDACTED] 32`.
    let c = chain(serde_json::json!({}));
    let cases = [
        (
            "Pay GB82 WEST 1234 5698 7654 32 today.",
            "Pay [IBAN_REDACTED] today.",
        ),
        (
            "IT60 X054 2811 1010 0000 0123 456 or NL91 ABNA 0417 1643 00 then",
            "[IBAN_REDACTED] or [IBAN_REDACTED] then",
        ),
        (
            "ring 020 7946 0958 if you can, or 127.0.0.1:8080",
            "ring [PHONE_REDACTED] if you can, or [IP_ADDRESS_REDACTED]:8080",
        ),
        (
            "bad card 4111 1111 1111 1112, order number 415-555-2671",
            "bad card 4111 1111 1111 1112, order number 415-555-2671",
        ),
    ];
    for (text, expected) in cases {
        let chars: Vec<&str> = text
            .char_indices()
            .map(|(i, ch)| &text[i..i + ch.len_utf8()])
            .collect();
        assert_eq!(streamed(&c, &chars), expected, "1-char chunks of {text:?}");
        for (k, _) in text.char_indices().skip(1) {
            assert_eq!(
                streamed(&c, &[&text[..k], &text[k..]]),
                expected,
                "split at {k} of {text:?}"
            );
        }
    }
}
