//! The secrets-inject policy as a compiled component in the real host.

use std::path::PathBuf;
use std::sync::Arc;

use ironhost::model::*;
use ironhost::policy::Capability;
use ironhost::policy::admission::admit_policy;
use ironhost::policy::bundle::PolicyEntry;
use ironhost::policy::chain::{Chain, Outcome};
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::{HostServices, SecretResolver};

/// A secret store with different values per environment.
struct Store;

impl SecretResolver for Store {
    fn get(&self, environment: &str, name: &str) -> Option<String> {
        match (environment, name) {
            ("dev", "SERP_API_KEY") => Some("serp-dev-1111".into()),
            ("production", "SERP_API_KEY") => Some("serp-prod-2222".into()),
            (_, "CRM_TOKEN") => Some("crm-3333".into()),
            _ => None,
        }
    }
}

fn chain(config: serde_json::Value) -> Chain {
    let services = HostServices {
        secrets: Arc::new(Store),
        ..HostServices::default()
    };
    let engine = PolicyEngine::new(EngineOptions::in_memory(16), services).expect("engine");
    let mut e = PolicyEntry::for_component(PathBuf::from("builtin:secrets-inject"));
    e.capabilities = [Capability::Config, Capability::Secrets, Capability::Events]
        .into_iter()
        .collect();
    e.config = config;
    Chain::new("s", vec![admit_policy(&engine, &e).expect("admitted")])
}

fn agent(environment: &str) -> AgentInfo {
    AgentInfo {
        agent_id: "lg-1".into(),
        name: "lead_gen".into(),
        environment: environment.into(),
    }
}

const CONFIG: &str = r#"{
    "inject": [
        {"env": "SERP_API_KEY"},
        {"env": "CRM_TOKEN", "environments": ["staging", "production"]}
    ],
    "egress": {"openai": "OPENAI_API_KEY"}
}"#;

fn config() -> serde_json::Value {
    serde_json::from_str(CONFIG).expect("JSON")
}

#[test]
fn an_agent_gets_the_secrets_granted_in_its_environment_and_nothing_else() {
    let c = chain(config());
    let dev = c.on_agent_start(&agent("dev"));
    let Outcome::Continue { value } = &dev.outcome else {
        panic!("{:?}", dev.outcome)
    };
    assert_eq!(
        value.env,
        [("SERP_API_KEY".to_owned(), "serp-dev-1111".to_owned())]
    );
    let prod = c.on_agent_start(&agent("production"));
    let Outcome::Continue { value } = &prod.outcome else {
        panic!("starts")
    };
    assert_eq!(
        value.env,
        [
            ("SERP_API_KEY".to_owned(), "serp-prod-2222".to_owned()),
            ("CRM_TOKEN".to_owned(), "crm-3333".to_owned())
        ]
    );
    // Events name the variables, never the values.
    let event = prod
        .events()
        .find(|e| e.kind == "secrets.injected")
        .expect("reported");
    assert_eq!(
        event.detail["names"],
        serde_json::json!(["SERP_API_KEY", "CRM_TOKEN"])
    );
    let reports = serde_json::to_string(&prod.policies).expect("serializes");
    assert!(!reports.contains("serp-prod-2222") && !reports.contains("crm-3333"));
}

#[test]
fn a_required_secret_that_is_missing_stops_the_agent_with_its_name() {
    let c = chain(serde_json::json!({"inject": [{"env": "GITHUB_TOKEN", "required": true}]}));
    let run = c.on_agent_start(&agent("staging"));
    let Outcome::Deny { denial, .. } = run.outcome else {
        panic!("denied")
    };
    assert_eq!(denial.code, "secret_missing");
    assert_eq!(
        denial.message,
        "the agent needs secret `GITHUB_TOKEN` (for GITHUB_TOKEN) in environment `staging`, and there is none"
    );
}

#[test]
fn provider_keys_are_named_for_egress_and_never_read() {
    let c = chain(config());
    let ctx = CallContext::new("lg-1", "c");
    let mut request = LlmRequest::new(
        "openai",
        "gpt-4o-mini",
        vec![Message::text(Role::User, "hi")],
    );
    let run = c.on_llm_request(&ctx, request.clone());
    let Outcome::Continue { value } = run.outcome else {
        panic!("continues")
    };
    assert_eq!(value.credential.as_deref(), Some("OPENAI_API_KEY"));
    // A credential already chosen stands; other providers are left alone.
    request.credential = Some("TEAM_KEY".into());
    let Outcome::Continue { value } = c.on_llm_request(&ctx, request.clone()).outcome else {
        panic!()
    };
    assert_eq!(value.credential.as_deref(), Some("TEAM_KEY"));
    request.credential = None;
    request.provider = "anthropic".into();
    let Outcome::Continue { value } = c.on_llm_request(&ctx, request).outcome else {
        panic!()
    };
    assert_eq!(value.credential, None);
}
