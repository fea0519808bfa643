//! Tool calls: the chain's `on-tool-call` before a tool runs ([`Gateway::tool_begin`]) and its
//! `on-tool-result` after ([`Gateway::tool_end`]); each call is counted, logged and published.

use std::time::Instant;

use super::report::{AsJson, Trail};
use super::{Gateway, GatewayError};
use crate::events::{CallOutcome, EventKind};
use crate::model::{Denial, Hook, Severity, ToolCall, ToolOutcome};
use crate::policy::chain::Outcome;

impl Gateway {
    /// Before a tool runs: the chain's `on-tool-call`.
    pub fn tool_begin(&self, name: &str, arguments: String) -> Result<ToolStart, GatewayError> {
        let started = Instant::now();
        self.bus.wait_for_room(|| false);
        let call_id = self.next_call_id("tool");
        let ctx = self.context(&call_id, 0);
        let call = ToolCall {
            id: call_id.clone(),
            name: name.to_owned(),
            arguments,
        };
        let run = self.chain.on_tool_call(&ctx, call);
        let mut trail = Trail::default();
        trail.absorb(Hook::ToolCall, &run);
        match run.outcome {
            Outcome::Continue { value } => Ok(ToolStart::Run(ToolTicket {
                call: value,
                started,
                trail,
            })),
            Outcome::Fallback { result, policy } => {
                self.finish_tool(name, &call_id, started, trail, CallOutcome::Fallback, None);
                tracing::info!("tool {name}: answered by {policy} (fallback)");
                Ok(ToolStart::Answered(result))
            }
            Outcome::Deny { policy, denial } => {
                self.finish_tool(
                    name,
                    &call_id,
                    started,
                    trail,
                    CallOutcome::Denied,
                    Some(&denial.code),
                );
                Err(GatewayError::Denied { policy, denial })
            }
            Outcome::Respond { policy, .. } => Err(GatewayError::Denied {
                policy,
                denial: Denial {
                    code: "invalid_verdict".to_owned(),
                    message: "an LLM answer cannot answer a tool call".to_owned(),
                    retry_after_ms: None,
                },
            }),
        }
    }

    /// After a tool ran: the chain's `on-tool-result`. `Ok(None)` keeps the tool's own result.
    pub fn tool_end(
        &self,
        ticket: ToolTicket,
        outcome: ToolOutcome,
    ) -> Result<Option<ToolOutcome>, GatewayError> {
        let ToolTicket {
            call,
            started,
            mut trail,
        } = ticket;
        let ctx = self.context(&call.id, 0);
        let failed = matches!(outcome, ToolOutcome::Error(_));
        let run = self
            .chain
            .on_tool_result(&ctx, call.clone(), outcome.clone());
        trail.absorb(Hook::ToolResult, &run);
        match run.outcome {
            Outcome::Continue { value } => {
                let kind = match (&value, failed) {
                    (ToolOutcome::Ok(_), true) => CallOutcome::Fallback,
                    (ToolOutcome::Error(_), _) => CallOutcome::Error,
                    _ => CallOutcome::Ok,
                };
                self.finish_tool(&call.name, &call.id, started, trail, kind, None);
                Ok((value != outcome).then_some(value))
            }
            Outcome::Deny { policy, denial } => {
                self.finish_tool(
                    &call.name,
                    &call.id,
                    started,
                    trail,
                    CallOutcome::Denied,
                    Some(&denial.code),
                );
                Err(GatewayError::Denied { policy, denial })
            }
            _ => Ok(None),
        }
    }

    /// Count, log and publish a finished tool call.
    fn finish_tool(
        &self,
        name: &str,
        call_id: &str,
        started: Instant,
        trail: Trail,
        outcome: CallOutcome,
        code: Option<&str>,
    ) {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.metrics.tool(
            outcome == CallOutcome::Error,
            outcome == CallOutcome::Fallback,
            outcome == CallOutcome::Denied,
        );
        let mut line = format!("tool {name} {latency_ms:.0} ms");
        match outcome {
            CallOutcome::Ok => {}
            CallOutcome::Fallback => line.push_str(" | fallback"),
            CallOutcome::Denied => line.push_str(&format!(" | denied: {}", code.unwrap_or("?"))),
            CallOutcome::Error => line.push_str(" | failed"),
            CallOutcome::Cancelled => line.push_str(" | cancelled"),
        }
        let actions = trail.actions();
        if !actions.is_empty() {
            line.push_str(&format!(" | {}", actions.join(", ")));
        }
        let verdicts_json = AsJson(&trail.verdicts);
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    target: "ironhost::call",
                    agent = %self.agent.agent_id,
                    call_id = call_id,
                    kind = "tool",
                    tool = name,
                    outcome = outcome.as_str(),
                    code = code.unwrap_or(""),
                    latency_ms = latency_ms,
                    verdicts_json = %verdicts_json,
                    "{line}"
                )
            };
        }
        if outcome == CallOutcome::Ok {
            record!(info);
        } else {
            record!(warn);
        }
        self.publish_policy_events(&trail, self.metrics.cost_usd(), call_id);
        self.bus.publish(
            &self.agent.agent_id,
            if outcome == CallOutcome::Ok {
                Severity::Info
            } else {
                Severity::Medium
            },
            EventKind::ToolCall {
                call_id: call_id.to_owned(),
                tool: name.to_owned(),
                outcome,
                code: code.map(str::to_owned),
                latency_ms,
                verdicts: trail.verdicts,
            },
        );
    }
}

/// A tool call the chain let run.
#[derive(Debug)]
pub struct ToolTicket {
    /// The call, arguments possibly rewritten by a policy.
    pub call: ToolCall,
    started: Instant,
    trail: Trail,
}

/// What to do with a tool call.
#[derive(Debug)]
pub enum ToolStart {
    /// Run the tool with `ticket.call.arguments`, then call [`Gateway::tool_end`].
    Run(ToolTicket),
    /// Do not run it: this JSON is the result.
    Answered(String),
}
