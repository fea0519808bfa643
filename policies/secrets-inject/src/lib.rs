//! `secrets-inject`: gives an agent the secrets it is granted, and keeps provider keys out of
//! the agent entirely by having the host add them at egress.
//!
//! - **At agent start** it returns the environment variables the agent is granted: names from
//!   the config, values resolved through the host's `secrets` capability, only for the
//!   environments (dev, staging, production) each one is granted in.
//! - **At egress** it names the secret that holds the provider key (`llm-request.credential`);
//!   the host resolves the value after the chain, so no policy, log, event or report sees it,
//!   and the agent never holds it.
//!
//! Values never appear in logs, events or errors: only names do.
//!
//! Config:
//!
//! ```toml
//! [[inject]]
//! env = "SERP_API_KEY"                 # the variable the agent sees
//! secret = "SERP_API_KEY"              # the secret's name (default: same as env)
//! environments = ["dev", "staging"]    # default: all three
//! required = false                     # true: refuse to start the agent without it
//!
//! [egress]                             # provider -> secret holding its API key
//! openai = "OPENAI_API_KEY"
//! anthropic = "ANTHROPIC_API_KEY"
//! ```

use std::collections::BTreeMap;

use ironhost_policy::events::{self, Severity};
use ironhost_policy::types::*;
use ironhost_policy::{Policy, config, secrets};
use serde::Deserialize;

const ENVIRONMENTS: [&str; 3] = ["dev", "staging", "production"];

/// One variable to inject.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    pub env: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub environments: Option<Vec<String>>,
    #[serde(default)]
    pub required: bool,
}

impl Inject {
    fn secret(&self) -> &str {
        self.secret.as_deref().unwrap_or(&self.env)
    }

    fn applies_in(&self, environment: &str) -> bool {
        self.environments
            .as_ref()
            .is_none_or(|envs| envs.iter().any(|e| e == environment))
    }
}

/// The policy's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub inject: Vec<Inject>,
    #[serde(default)]
    pub egress: BTreeMap<String, String>,
}

impl Settings {
    /// Decode and check a config text.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let s: Settings = config::validate(text)?;
        for (i, item) in s.inject.iter().enumerate() {
            let valid_name = !item.env.is_empty()
                && item
                    .env
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_')
                && !item.env.as_bytes()[0].is_ascii_digit();
            if !valid_name {
                return Err(format!(
                    "inject[{i}].env: `{}` is not an environment variable name",
                    item.env
                ));
            }
            if item.secret().trim().is_empty() {
                return Err(format!("inject[{i}].secret: must not be empty"));
            }
            if let Some(bad) = item
                .environments
                .iter()
                .flatten()
                .find(|e| !ENVIRONMENTS.contains(&e.as_str()))
            {
                return Err(format!(
                    "inject[{i}].environments: unknown environment `{bad}` (known: {})",
                    ENVIRONMENTS.join(", ")
                ));
            }
        }
        if let Some((provider, _)) = s.egress.iter().find(|(_, secret)| secret.trim().is_empty()) {
            return Err(format!(
                "egress.{provider}: the secret name must not be empty"
            ));
        }
        Ok(s)
    }
}

static SETTINGS: config::Cached<Settings> = config::Cached::new();

/// The policy.
#[derive(Debug)]
pub struct SecretsInject;

impl Policy for SecretsInject {
    fn describe() -> PolicyInfo {
        ironhost_policy::info(
            "secrets-inject",
            env!("CARGO_PKG_VERSION"),
            "Injects granted secrets into agents and provider keys at egress",
        )
        .hooks(&[Hook::AgentStart, Hook::LlmRequest])
        .capabilities(&[Capability::Config, Capability::Secrets, Capability::Events])
        .build()
    }

    fn validate_config(config: String) -> Result<(), String> {
        Settings::parse(&config).map(drop)
    }

    fn on_agent_start(agent: AgentInfo) -> StartVerdict {
        let settings = match SETTINGS.get() {
            Ok(s) => s,
            Err(e) => return StartVerdict::Deny(ironhost_policy::deny("secrets_unavailable", e)),
        };
        let mut env = Vec::new();
        let mut injected = Vec::new();
        let mut missing = Vec::new();
        for item in settings
            .inject
            .iter()
            .filter(|i| i.applies_in(&agent.environment))
        {
            match secrets::get(item.secret()) {
                Some(value) => {
                    env.push((item.env.clone(), value));
                    injected.push(item.env.as_str());
                }
                None if item.required => {
                    return StartVerdict::Deny(ironhost_policy::deny(
                        "secret_missing",
                        &format!(
                            "the agent needs secret `{}` (for {}) in environment `{}`, and there is none",
                            item.secret(),
                            item.env,
                            agent.environment
                        ),
                    ));
                }
                None => missing.push(item.secret()),
            }
        }
        events::emit(
            "secrets.injected",
            if missing.is_empty() {
                Severity::Info
            } else {
                Severity::Low
            },
            &serde_json::json!({"environment": agent.environment, "names": injected, "missing": missing}),
        );
        if env.is_empty() {
            StartVerdict::Pass
        } else {
            StartVerdict::StartWith(StartEffects { env })
        }
    }

    fn on_llm_request(_ctx: CallContext, mut request: LlmRequest) -> RequestVerdict {
        let Ok(settings) = SETTINGS.get() else {
            return RequestVerdict::Pass;
        };
        // A credential chosen earlier (by the agent's own config, or another policy) stands.
        if request.credential.is_some() {
            return RequestVerdict::Pass;
        }
        match settings.egress.get(&request.provider) {
            Some(secret) => {
                request.credential = Some(secret.clone());
                RequestVerdict::Rewrite(request)
            }
            None => RequestVerdict::Pass,
        }
    }
}

ironhost_policy::export_policy!(SecretsInject);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        let ok = Settings::parse(r#"{"inject": [{"env": "SERP_API_KEY", "environments": ["dev"]}], "egress": {"openai": "OPENAI_API_KEY"}}"#)
            .expect("valid");
        assert!(ok.inject[0].applies_in("dev") && !ok.inject[0].applies_in("production"));
        assert_eq!(ok.inject[0].secret(), "SERP_API_KEY");
        assert!(
            Settings::parse(r#"{"inject": [{"env": "1BAD"}]}"#)
                .unwrap_err()
                .contains("inject[0].env")
        );
        assert!(
            Settings::parse(r#"{"inject": [{"env": "A", "environments": ["qa"]}]}"#)
                .unwrap_err()
                .contains("unknown environment `qa`")
        );
        assert!(
            Settings::parse(r#"{"egress": {"openai": ""}}"#)
                .unwrap_err()
                .contains("egress.openai")
        );
    }
}
