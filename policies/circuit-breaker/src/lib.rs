//! `circuit-breaker`: stops calling a failing service for a while.
//!
//! Each LLM provider/model (`llm:openai/gpt-4o-mini`) and each named tool (`tool:search`) has a
//! circuit, shared by every agent. CLOSED: calls go through; after `failure-threshold`
//! consecutive failures (rate limits, server errors, timeouts, connection errors, tool
//! failures) it OPENs. OPEN: calls are refused with a fallback, for `cooldown-ms`. Then
//! HALF_OPEN: one trial call goes through; success CLOSEs the circuit, failure OPENs it again.
//!
//! Fallbacks while open: a tool call gets the last good result for the same arguments, else
//! the configured placeholder for the tool, else a denial (`circuit_open`); an LLM call gets
//! the configured placeholder answer, else a denial.
//!
//! Config:
//!
//! ```toml
//! failure-threshold = 5
//! cooldown-ms = 60000
//! placeholder = "The assistant is unavailable right now; please try again shortly."
//! [tool-placeholders]
//! search = { results = [], note = "search is unavailable" }
//! ```

use std::collections::BTreeMap;

use ironhost_policy::events::{self, Severity};
use ironhost_policy::state::POLICY;
use ironhost_policy::types::*;
use ironhost_policy::{Policy, config};
use serde::{Deserialize, Serialize};

/// The policy's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_cooldown")]
    pub cooldown_ms: u64,
    #[serde(default)]
    pub placeholder: Option<String>,
    #[serde(default)]
    pub tool_placeholders: BTreeMap<String, serde_json::Value>,
}

fn default_threshold() -> u32 {
    5
}

fn default_cooldown() -> u64 {
    60_000
}

impl Settings {
    /// Decode and check a config text.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let s: Settings = config::validate(text)?;
        if s.failure_threshold == 0 {
            return Err("failure-threshold: must be at least 1".to_owned());
        }
        if s.cooldown_ms == 0 {
            return Err("cooldown-ms: must be at least 1".to_owned());
        }
        Ok(s)
    }
}

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

/// A circuit, as kept in host state (policy scope, so all agents share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Circuit {
    pub phase: Phase,
    /// Consecutive failures.
    pub failures: u32,
    /// When it opened, ms since the epoch.
    pub opened_at: u64,
    /// In HALF_OPEN: the trial call is under way.
    pub trial: bool,
    /// Calls refused since it last opened.
    pub blocked: u64,
}

/// What a circuit says about a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// The single trial call of HALF_OPEN.
    Trial,
    Refuse,
}

impl Circuit {
    /// Decide on a new call at `now`; returns the decision and the next state.
    pub fn admit(self, now: u64, cooldown_ms: u64) -> (Admit, Circuit) {
        match self.phase {
            Phase::Closed => (Admit::Go, self),
            Phase::Open if now.saturating_sub(self.opened_at) >= cooldown_ms => (
                Admit::Trial,
                Circuit {
                    phase: Phase::HalfOpen,
                    trial: true,
                    ..self
                },
            ),
            Phase::HalfOpen if !self.trial => (
                Admit::Trial,
                Circuit {
                    trial: true,
                    ..self
                },
            ),
            Phase::Open | Phase::HalfOpen => (
                Admit::Refuse,
                Circuit {
                    blocked: self.blocked + 1,
                    ..self
                },
            ),
        }
    }

    /// Record the outcome of a call at `now`.
    pub fn record(self, success: bool, now: u64, threshold: u32) -> Circuit {
        match (success, self.phase) {
            (true, _) => Circuit::default(),
            (false, Phase::HalfOpen) => Circuit {
                phase: Phase::Open,
                opened_at: now,
                trial: false,
                failures: self.failures + 1,
                blocked: 0,
            },
            (false, Phase::Open) => self,
            (false, Phase::Closed) if self.failures + 1 >= threshold => Circuit {
                phase: Phase::Open,
                failures: self.failures + 1,
                opened_at: now,
                trial: false,
                blocked: 0,
            },
            (false, Phase::Closed) => Circuit {
                failures: self.failures + 1,
                ..self
            },
        }
    }
}

static SETTINGS: config::Cached<Settings> = config::Cached::new();

fn settings() -> Settings {
    SETTINGS.get().cloned().unwrap_or(Settings {
        failure_threshold: default_threshold(),
        cooldown_ms: default_cooldown(),
        placeholder: None,
        tool_placeholders: BTreeMap::new(),
    })
}

fn now_ms() -> u64 {
    ironhost_policy::host::clock::now_ms()
}

/// Apply `f` to the circuit of `service` atomically (compare-and-swap, retried).
fn update<T>(
    service: &str,
    mut f: impl FnMut(Circuit) -> (T, Circuit),
) -> Option<(T, Circuit, Circuit)> {
    let key = format!("circuit:{service}");
    for _ in 0..32 {
        let raw = POLICY.get(&key).ok()?;
        let old: Circuit = raw
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        let (out, new) = f(old);
        if new == old {
            return Some((out, old, new));
        }
        let text = serde_json::to_string(&new).ok()?;
        if POLICY
            .compare_and_swap(&key, raw.as_deref(), Some(&text))
            .ok()?
        {
            return Some((out, old, new));
        }
    }
    None
}

fn announce(service: &str, old: Circuit, new: Circuit) {
    let kind = match (old.phase, new.phase) {
        (a, b) if a == b => return,
        (_, Phase::Open) => "circuit.opened",
        (_, Phase::HalfOpen) => "circuit.half_open",
        (_, Phase::Closed) => "circuit.closed",
    };
    // An opening is a warning, not an error: the fallback serves the calls meanwhile.
    let severity = if new.phase == Phase::Open {
        Severity::Medium
    } else {
        Severity::Info
    };
    events::emit(
        kind,
        severity,
        &serde_json::json!({"service": service, "failures": new.failures.max(old.failures), "blocked": old.blocked}),
    );
}

/// Decide on a call to `service`. `true`: let it go.
fn admit(service: &str, settings: &Settings) -> bool {
    match update(service, |c| c.admit(now_ms(), settings.cooldown_ms)) {
        Some((decision, old, new)) => {
            announce(service, old, new);
            if decision == Admit::Refuse {
                events::emit(
                    "circuit.blocked",
                    Severity::Low,
                    &serde_json::json!({"service": service, "blocked": new.blocked}),
                );
            }
            decision != Admit::Refuse
        }
        // State unavailable: do not block traffic on the breaker's own trouble.
        None => true,
    }
}

fn record(service: &str, success: bool, settings: &Settings) {
    if let Some(((), old, new)) = update(service, |c| {
        ((), c.record(success, now_ms(), settings.failure_threshold))
    }) {
        announce(service, old, new);
    }
}

/// Release a trial that never finished (the call was abandoned).
fn release_trial(service: &str) {
    let _ = update(service, |c| {
        (
            (),
            if c.phase == Phase::HalfOpen {
                Circuit { trial: false, ..c }
            } else {
                c
            },
        )
    });
}

fn llm_service(request: &LlmRequest) -> String {
    format!("llm:{}/{}", request.provider, request.model)
}

fn tool_service(call: &ToolCall) -> String {
    format!("tool:{}", call.name)
}

/// FNV-1a: a short, stable key for a tool's arguments (no value is stored in the key).
fn args_key(call: &ToolCall) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call.arguments.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("last-good:{}:{h:016x}", call.name)
}

fn open_denial(service: &str) -> Denial {
    ironhost_policy::deny(
        "circuit_open",
        &format!("{service} is failing; calls are paused while its circuit is open"),
    )
}

fn provider_failure(e: &ProviderError) -> bool {
    matches!(
        e.kind,
        ProviderErrorKind::RateLimited
            | ProviderErrorKind::ServerError
            | ProviderErrorKind::Timeout
            | ProviderErrorKind::Connection
    )
}

/// The policy.
#[derive(Debug)]
pub struct CircuitBreaker;

impl Policy for CircuitBreaker {
    fn describe() -> PolicyInfo {
        ironhost_policy::info(
            "circuit-breaker",
            env!("CARGO_PKG_VERSION"),
            "Pauses calls to failing LLM services and tools, serving fallbacks",
        )
        .hooks(&[
            Hook::LlmRequest,
            Hook::LlmResponse,
            Hook::LlmAbandoned,
            Hook::ToolCall,
            Hook::ToolResult,
        ])
        .capabilities(&[
            Capability::Config,
            Capability::Events,
            Capability::State,
            Capability::Clock,
        ])
        .build()
    }

    fn validate_config(config: String) -> Result<(), String> {
        Settings::parse(&config).map(drop)
    }

    fn on_llm_request(_ctx: CallContext, request: LlmRequest) -> RequestVerdict {
        let settings = settings();
        let service = llm_service(&request);
        if admit(&service, &settings) {
            return RequestVerdict::Pass;
        }
        match &settings.placeholder {
            Some(text) => RequestVerdict::Respond(LlmResponse {
                id: "circuit-open".to_owned(),
                model: request.model,
                message: Message {
                    role: Role::Assistant,
                    content: vec![ContentPart::Text(text.clone())],
                },
                finish_reason: "stop".to_owned(),
                usage: Some(Usage {
                    input_tokens: 0,
                    output_tokens: 0,
                    cached_input_tokens: 0,
                    cache_write_input_tokens: 0,
                }),
            }),
            None => RequestVerdict::Deny(open_denial(&service)),
        }
    }

    fn on_llm_response(
        _ctx: CallContext,
        request: LlmRequest,
        outcome: LlmOutcome,
    ) -> ResponseVerdict {
        let success = match &outcome {
            LlmOutcome::Ok(_) => true,
            LlmOutcome::Error(e) if provider_failure(e) => false,
            // The caller's own mistakes (bad request, bad key) say nothing about the service.
            LlmOutcome::Error(_) => return ResponseVerdict::Pass,
        };
        record(&llm_service(&request), success, &settings());
        ResponseVerdict::Pass
    }

    fn on_llm_abandoned(_ctx: CallContext, request: LlmRequest, _abandonment: Abandonment) {
        release_trial(&llm_service(&request));
    }

    fn on_tool_call(_ctx: CallContext, call: ToolCall) -> ToolVerdict {
        let settings = settings();
        let service = tool_service(&call);
        if admit(&service, &settings) {
            return ToolVerdict::Pass;
        }
        if let Ok(Some(cached)) = POLICY.get(&args_key(&call)) {
            return ToolVerdict::Fallback(cached);
        }
        match settings.tool_placeholders.get(&call.name) {
            Some(value) => ToolVerdict::Fallback(value.to_string()),
            None => ToolVerdict::Deny(open_denial(&service)),
        }
    }

    fn on_tool_result(_ctx: CallContext, call: ToolCall, outcome: ToolOutcome) -> ResultVerdict {
        let settings = settings();
        let service = tool_service(&call);
        match &outcome {
            ToolOutcome::Ok(json) => {
                record(&service, true, &settings);
                // Keep it as the fallback for the same arguments (too large ones are skipped).
                let _ = POLICY.set(&args_key(&call), json);
            }
            ToolOutcome::Error(e) if e.kind != ToolErrorKind::InvalidInput => {
                record(&service, false, &settings)
            }
            ToolOutcome::Error(_) => {}
        }
        ResultVerdict::Pass
    }
}

ironhost_policy::export_policy!(CircuitBreaker);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let mut c = Circuit::default();
        for _ in 0..4 {
            c = c.record(false, 1_000, 5);
            assert_eq!(c.phase, Phase::Closed);
        }
        c = c.record(false, 1_000, 5);
        assert_eq!(c.phase, Phase::Open);
        let (d, c2) = c.admit(30_000, 60_000);
        assert_eq!((d, c2.blocked), (Admit::Refuse, 1));
        let (d, c3) = c2.admit(61_000, 60_000);
        assert_eq!((d, c3.phase), (Admit::Trial, Phase::HalfOpen));
        // Only one trial at a time.
        assert_eq!(c3.admit(61_001, 60_000).0, Admit::Refuse);
        assert_eq!(c3.record(true, 61_500, 5), Circuit::default());
        let reopened = c3.record(false, 61_500, 5);
        assert_eq!((reopened.phase, reopened.opened_at), (Phase::Open, 61_500));
    }

    #[test]
    fn a_success_resets_the_count() {
        let c = Circuit::default()
            .record(false, 0, 3)
            .record(false, 0, 3)
            .record(true, 0, 3)
            .record(false, 0, 3);
        assert_eq!((c.phase, c.failures), (Phase::Closed, 1));
    }

    #[test]
    fn config_is_checked() {
        assert!(
            Settings::parse(r#"{"failure-threshold": 0}"#)
                .unwrap_err()
                .contains("failure-threshold")
        );
        assert!(
            Settings::parse(r#"{"cooldown": 5}"#)
                .unwrap_err()
                .contains("cooldown")
        );
        assert_eq!(
            Settings::parse("{}").expect("defaults").failure_threshold,
            5
        );
    }
}
