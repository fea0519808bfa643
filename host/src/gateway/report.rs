//! What a call leaves behind: the verdicts and events it collected from the chain ([`Trail`]),
//! and, when it ends, its price, the agent's figures, the log line (human and JSON fields) and
//! the events on the bus.

use std::time::Instant;

use super::Gateway;
use super::metrics::LlmTally;
use crate::events::{CallOutcome, EventKind, VerdictSummary};
use crate::llm::api::Api;
use crate::model::{
    ContentPart, Hook, LlmRequest, ProviderError, ProviderErrorKind, Severity, Usage,
};
use crate::policy::chain::{ChainRun, VerdictKind};
use crate::policy::host::PolicyEvent;

/// Prompts at least this long (bytes of text) are counted before the chain runs.
const LONG_PROMPT_BYTES: usize = 8 * 1024;

/// What one call collected from the chain across its hooks.
#[derive(Debug, Default)]
pub(super) struct Trail {
    pub(super) verdicts: Vec<VerdictSummary>,
    events: Vec<PolicyEvent>,
    /// `policy_failure` events, one per failed policy call.
    failures: Vec<EventKind>,
    policy_ns: u64,
}

impl Trail {
    pub(super) fn absorb<T>(&mut self, hook: Hook, run: &ChainRun<T>) {
        self.policy_ns += run.latency_ns;
        for r in &run.policies {
            self.verdicts.push(VerdictSummary {
                policy: r.policy.clone(),
                hook: hook.as_str(),
                verdict: r.verdict,
                enforced: r.enforced,
                latency_us: r.latency_ns / 1000,
                code: r.denial.as_ref().map(|d| d.code.clone()),
            });
            self.events.extend(r.events.iter().cloned());
            if let Some(f) = &r.failure {
                self.failures.push(EventKind::PolicyFailure {
                    policy: r.policy.clone(),
                    hook: hook.as_str(),
                    failure: f.kind,
                    message: f.message.clone(),
                    call_id: None,
                });
            }
        }
    }

    /// What the policies did, for the log line: `pii-redact rewrite`, `budget deny`.
    pub(super) fn actions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in &self.verdicts {
            // A rewrite is worth a mention when the policy said why (an event): naming a
            // credential for egress, for one, changes nothing the agent or provider sees.
            let explained = self.events.iter().any(|e| e.policy == v.policy);
            let shown = match v.verdict {
                VerdictKind::Rewrite => explained,
                VerdictKind::Deny
                | VerdictKind::Respond
                | VerdictKind::Fallback
                | VerdictKind::Failed => true,
                _ => false,
            };
            let text = format!("{} {}", v.policy, v.verdict.as_str());
            if shown && !out.contains(&text) {
                out.push(text);
            }
        }
        out
    }
}

impl Gateway {
    /// Count, price, log and publish a finished LLM call.
    pub(super) fn finish(
        &self,
        call: &CallRecord,
        trail: Trail,
        outcome: CallOutcome,
        status: Option<u16>,
        code: Option<&str>,
        usage: Option<Usage>,
    ) {
        let latency_ms = call.started.elapsed().as_secs_f64() * 1000.0;
        let usage = usage.unwrap_or_default();
        let cost = self.cost(&call.model, &usage);
        let tally = match outcome {
            CallOutcome::Ok => LlmTally::Answered {
                input: usage.input_tokens,
                output: usage.output_tokens,
                cost,
            },
            CallOutcome::Denied => LlmTally::Denied,
            CallOutcome::Fallback => LlmTally::Fallback,
            CallOutcome::Error | CallOutcome::Cancelled => LlmTally::Error,
        };
        // Token counts and requests the host refused unrouted (a trace upload, a files call)
        // are recorded, but are not calls of a model: the agent's figures leave them out.
        let total = if call.api.counted() && code != Some("not_routed") {
            self.metrics.llm(&call.model, tally, latency_ms)
        } else {
            self.metrics.cost_usd()
        };
        let spent = match self.budget_usd() {
            Some(limit) => format!("${total:.2} / ${limit:.2}"),
            None => format!("${total:.2} spent"),
        };
        let mut line = format!(
            "llm {} {}→{} tok {} | {spent} | {latency_ms:.0} ms",
            call.model,
            usage.input_tokens,
            usage.output_tokens,
            money(cost)
        );
        match outcome {
            CallOutcome::Ok => {}
            CallOutcome::Denied => line.push_str(&format!(" | denied: {}", code.unwrap_or("?"))),
            CallOutcome::Fallback => line.push_str(" | answered by a policy"),
            CallOutcome::Error => line.push_str(&format!(
                " | failed{}",
                status.map(|s| format!(" ({s})")).unwrap_or_default()
            )),
            CallOutcome::Cancelled => line.push_str(" | cancelled"),
        }
        let actions = trail.actions();
        if !actions.is_empty() {
            line.push_str(&format!(" | {}", actions.join(", ")));
        }
        if call.attempts > 1 {
            line.push_str(&format!(" | {} attempts", call.attempts));
        }
        if let Some(reason) = &call.reason
            && matches!(outcome, CallOutcome::Error | CallOutcome::Denied)
        {
            line.push_str(&format!(" | {reason}"));
        }
        // The human line for people; the same figures as fields for `--log-format json`.
        let verdicts_json = AsJson(&trail.verdicts);
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    target: "ironhost::call",
                    agent = %self.agent.agent_id,
                    call_id = %call.call_id,
                    kind = "llm",
                    provider = %call.provider,
                    api = call.api.name(),
                    model = %call.model,
                    stream = call.stream,
                    outcome = outcome.as_str(),
                    status = status.map_or(0, u64::from),
                    code = code.unwrap_or(""),
                    reason = call.reason.as_deref().unwrap_or(""),
                    input_tokens = u64::from(usage.input_tokens),
                    output_tokens = u64::from(usage.output_tokens),
                    cost_usd = cost,
                    spent_usd = total,
                    latency_ms = latency_ms,
                    attempts = u64::from(call.attempts),
                    simulated = call.simulated,
                    verdicts_json = %verdicts_json,
                    "{line}"
                )
            };
        }
        match outcome {
            CallOutcome::Ok | CallOutcome::Fallback => record!(info),
            _ => record!(warn),
        }
        let severity = match outcome {
            CallOutcome::Ok | CallOutcome::Fallback => Severity::Info,
            CallOutcome::Denied | CallOutcome::Cancelled => Severity::Medium,
            CallOutcome::Error => Severity::High,
        };
        self.publish_policy_events(&trail, total, &call.call_id);
        let policy_us = trail.policy_ns / 1000;
        self.bus.publish(
            &self.agent.agent_id,
            severity,
            EventKind::LlmCall {
                call_id: call.call_id.clone(),
                provider: call.provider.clone(),
                api: call.api.name().to_owned(),
                model: call.model.clone(),
                stream: call.stream,
                outcome,
                status,
                code: code.map(str::to_owned),
                reason: call.reason.clone(),
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cost_usd: cost,
                latency_ms,
                policy_us,
                attempts: call.attempts,
                simulated: call.simulated,
                verdicts: trail.verdicts,
            },
        );
    }

    pub(super) fn publish_policy_events(&self, trail: &Trail, spent: f64, call: &str) {
        for failure in &trail.failures {
            let mut kind = failure.clone();
            if let EventKind::PolicyFailure { call_id, .. } = &mut kind {
                *call_id = Some(call.to_owned());
            }
            self.bus.publish(&self.agent.agent_id, Severity::High, kind);
        }
        for e in &trail.events {
            let mut kind = EventKind::from_policy(e, spent);
            if let EventKind::PiiFinding { call_id, .. } = &mut kind {
                *call_id = Some(call.to_owned());
            }
            match &kind {
                EventKind::PiiFinding { detail, .. } => {
                    self.metrics.pii(
                        detail
                            .get("type")
                            .and_then(|v| v.as_str())
                            .unwrap_or("unknown"),
                    );
                    tracing::warn!(
                        target: "ironhost::finding",
                        call_id = call,
                        "pii {} {} ({})",
                        detail
                            .get("action")
                            .and_then(|v| v.as_str())
                            .unwrap_or("found"),
                        detail
                            .get("type")
                            .and_then(|v| v.as_str())
                            .unwrap_or("value"),
                        e.policy
                    );
                }
                EventKind::BudgetWarning { detail, .. } => log_at(
                    e.severity,
                    format_args!(
                        "budget warning: {}% of ${:.2} used",
                        detail
                            .get("percent_used")
                            .and_then(|v| v.as_f64())
                            .unwrap_or(0.0),
                        detail
                            .get("limit_usd")
                            .and_then(|v| v.as_f64())
                            .unwrap_or(0.0)
                    ),
                ),
                EventKind::BudgetExceeded { .. } => log_at(
                    e.severity,
                    format_args!("budget exceeded: the call was refused"),
                ),
                EventKind::PromptInjection { policy, .. } => log_at(
                    e.severity,
                    format_args!("prompt injection attempt ({policy})"),
                ),
                EventKind::CircuitOpened { detail, .. } => log_at(
                    e.severity,
                    format_args!(
                        "circuit opened for {}",
                        detail
                            .get("service")
                            .and_then(|v| v.as_str())
                            .unwrap_or("a service")
                    ),
                ),
                EventKind::CircuitClosed { detail, .. } => log_at(
                    e.severity,
                    format_args!(
                        "circuit closed for {}",
                        detail
                            .get("service")
                            .and_then(|v| v.as_str())
                            .unwrap_or("a service")
                    ),
                ),
                _ => {}
            }
            self.bus.publish(&self.agent.agent_id, e.severity, kind);
        }
    }

    /// Count a long OpenAI prompt's tokens now, outside any policy's deadline: BPE over tens of
    /// thousands of tokens takes milliseconds, and a policy that asks for the count (the
    /// budget's estimate) would otherwise pay for it under its own deadline. The meter keeps
    /// the counts of recent texts of 256 bytes or more, so the policy's question is then a
    /// lookup. Short prompts are left to the policies (counting them costs microseconds), and
    /// Anthropic prompts too (their count is a character division).
    pub(super) fn count_long_prompt(&self, request: &LlmRequest) {
        let chars: usize = request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .map(|p| match p {
                ContentPart::Text { text } => text.len(),
                ContentPart::ToolOutput { content, .. } => content.len(),
                ContentPart::ToolUse(u) => u.arguments.len(),
                _ => 0,
            })
            .sum();
        if chars >= LONG_PROMPT_BYTES {
            self.meter.count_messages(&request.model, &request.messages);
        }
    }

    /// The price of `usage` on `model`, from the pricing table; 0 for an unknown model.
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.meter.price(model).map_or(0.0, |p| p.usd(usage))
    }
}

/// One LLM call as it is logged and published: who was asked, for what, how many times.
#[derive(Debug)]
pub(super) struct CallRecord {
    pub(super) call_id: String,
    pub(super) api: Api,
    /// Why the call was refused or failed, in words.
    pub(super) reason: Option<String>,
    pub(super) provider: String,
    /// The model actually sent (a policy may change it); the call is priced by it.
    pub(super) model: String,
    pub(super) stream: bool,
    pub(super) simulated: bool,
    pub(super) attempts: u32,
    pub(super) started: Instant,
}

/// A call's cost: cents for ordinary calls, more digits for the many tiny ones.
fn money(usd: f64) -> String {
    if usd == 0.0 || usd >= 0.01 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.6}")
    }
}

/// A provider error in a few words, for a log line: `429 rate limited`, `timeout`.
pub(super) fn describe(e: &ProviderError) -> String {
    let kind = match e.kind {
        ProviderErrorKind::RateLimited => "rate limited",
        ProviderErrorKind::ServerError => "server error",
        ProviderErrorKind::Timeout => "timeout",
        ProviderErrorKind::Connection => "connection failed",
        ProviderErrorKind::InvalidRequest => "invalid request",
        ProviderErrorKind::Authentication => "authentication",
        ProviderErrorKind::Other => "error",
    };
    match e.status {
        Some(s) => format!("{s} {kind}"),
        None => kind.to_owned(),
    }
}

/// A value written as JSON only when a log line is formatted (the human format never asks).
pub(super) struct AsJson<'a, T>(pub(super) &'a T);

impl<T: serde::Serialize> std::fmt::Display for AsJson<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self.0).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

/// The log level of an event's severity, the one mapping the CLI uses (and the dashboard's
/// log shows the same): info and low → INFO, medium → WARN, high and critical → ERROR.
pub fn log_level(severity: Severity) -> tracing::Level {
    match severity {
        Severity::Info | Severity::Low => tracing::Level::INFO,
        Severity::Medium => tracing::Level::WARN,
        Severity::High | Severity::Critical => tracing::Level::ERROR,
    }
}

/// Log `message` at the level of `severity` ([`log_level`]).
fn log_at(severity: Severity, message: std::fmt::Arguments<'_>) {
    match log_level(severity) {
        tracing::Level::ERROR => tracing::error!("{message}"),
        tracing::Level::WARN => tracing::warn!("{message}"),
        _ => tracing::info!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_from_severity_to_log_level() {
        assert_eq!(log_level(Severity::Info), tracing::Level::INFO);
        assert_eq!(log_level(Severity::Low), tracing::Level::INFO);
        // A circuit opening (medium) and a budget warning are warnings; a refused call is an
        // error.
        assert_eq!(log_level(Severity::Medium), tracing::Level::WARN);
        assert_eq!(log_level(Severity::High), tracing::Level::ERROR);
        assert_eq!(log_level(Severity::Critical), tracing::Level::ERROR);
    }
}
