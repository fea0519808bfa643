//! `model-allowlist`: only approved models may be called. A request for any other model is
//! rewritten to the approved fallback model, or denied when there is none.
//!
//! ```toml
//! [policy.config]
//! allowed = ["gpt-4o-mini", "claude-haiku-4-5"]
//! fallback = "gpt-4o-mini"   # optional: rewrite instead of deny
//! ```

use ironhost_policy::events::{self, Severity};
use ironhost_policy::types::*;
use ironhost_policy::{Policy, config};

/// The config.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Models that may be called (exact names).
    pub allowed: Vec<String>,
    /// Model to use instead of a disallowed one; none means deny.
    #[serde(default)]
    pub fallback: Option<String>,
}

impl Settings {
    /// Decode and check the config.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let s: Settings = config::validate(text)?;
        if s.allowed.is_empty() {
            return Err("allowed: list at least one model".to_owned());
        }
        if let Some(f) = &s.fallback
            && !s.allowed.contains(f)
        {
            return Err(format!("fallback: `{f}` is not in `allowed`"));
        }
        Ok(s)
    }

    /// What to do with a request for `model`: `None` to let it through, `Some(Ok(m))` to use
    /// model `m` instead, `Some(Err(()))` to deny.
    pub fn decide(&self, model: &str) -> Option<Result<&str, ()>> {
        if self.allowed.iter().any(|m| m == model) {
            return None;
        }
        Some(self.fallback.as_deref().ok_or(()))
    }
}

static SETTINGS: config::Cached<Settings> = config::Cached::new();

/// The policy.
#[derive(Debug)]
pub struct ModelAllowlist;

impl Policy for ModelAllowlist {
    fn describe() -> PolicyInfo {
        ironhost_policy::info(
            "model-allowlist",
            env!("CARGO_PKG_VERSION"),
            "Only approved models may be called",
        )
        .hooks(&[Hook::LlmRequest])
        .capabilities(&[Capability::Config, Capability::Events])
        .build()
    }

    fn validate_config(config: String) -> Result<(), String> {
        Settings::parse(&config).map(drop)
    }

    fn on_llm_request(_ctx: CallContext, mut request: LlmRequest) -> RequestVerdict {
        let Ok(settings) = SETTINGS.get() else {
            return RequestVerdict::Deny(ironhost_policy::deny(
                "model_not_allowed",
                "the model allowlist is misconfigured",
            ));
        };
        match settings.decide(&request.model) {
            None => RequestVerdict::Pass,
            Some(Ok(fallback)) => {
                let detail = serde_json::json!({"requested": request.model, "used": fallback});
                events::emit("model.rewritten", Severity::Low, &detail);
                request.model = fallback.to_owned();
                RequestVerdict::Rewrite(request)
            }
            Some(Err(())) => RequestVerdict::Deny(ironhost_policy::deny(
                "model_not_allowed",
                &format!("model `{}` is not on the approved list", request.model),
            )),
        }
    }
}

ironhost_policy::export_policy!(ModelAllowlist);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_models_pass_others_are_rewritten_or_denied() {
        let s = Settings::parse(r#"{"allowed": ["gpt-4o-mini"], "fallback": "gpt-4o-mini"}"#)
            .expect("valid");
        assert_eq!(s.decide("gpt-4o-mini"), None);
        assert_eq!(s.decide("gpt-4o"), Some(Ok("gpt-4o-mini")));
        let strict = Settings::parse(r#"{"allowed": ["gpt-4o-mini"]}"#).expect("valid");
        assert_eq!(strict.decide("o3"), Some(Err(())));
        assert!(
            Settings::parse(r#"{"allowed": ["a"], "fallback": "b"}"#)
                .unwrap_err()
                .contains("fallback")
        );
    }
}
