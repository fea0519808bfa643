//! The in-process event bus: typed events about agents, calls, costs and protections. The
//! store, the API and alert sinks subscribe; publishing never blocks the call path (a slow
//! subscriber loses the oldest events and is told how many).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::policy::chain::VerdictKind;
use crate::policy::host::{PolicyEvent, SensitiveValue};
use crate::policy::instance::FailureKind;
use crate::policy::model::Severity;

/// Events kept for a subscriber that falls behind.
const CAPACITY: usize = 4096;

/// Where an agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Starting,
    Running,
    Completed,
    Failed,
    Stopped,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Running => "running",
            AgentState::Completed => "completed",
            AgentState::Failed => "failed",
            AgentState::Stopped => "stopped",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Answered (possibly rewritten by a policy).
    Ok,
    /// A policy refused it.
    Denied,
    /// A policy answered it without the provider (cache, placeholder, fallback).
    Fallback,
    /// The provider or the tool failed.
    Error,
    /// The agent stopped waiting.
    Cancelled,
}

/// One policy's verdict on a call, as events and traces show it.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictSummary {
    pub policy: String,
    pub hook: &'static str,
    pub verdict: VerdictKind,
    pub enforced: bool,
    pub latency_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    AgentStarted {
        name: String,
        script: String,
        run: u32,
    },
    AgentStopped {
        state: AgentState,
        exit_code: i32,
        run: u32,
    },
    LlmCall {
        call_id: String,
        provider: String,
        model: String,
        stream: bool,
        outcome: CallOutcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        input_tokens: u32,
        output_tokens: u32,
        cost_usd: f64,
        latency_ms: f64,
        /// Time spent in policies, summed over hooks.
        policy_us: u64,
        attempts: u32,
        simulated: bool,
        verdicts: Vec<VerdictSummary>,
    },
    ToolCall {
        call_id: String,
        tool: String,
        outcome: CallOutcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        latency_ms: f64,
        verdicts: Vec<VerdictSummary>,
    },
    CostUpdate {
        spent_usd: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit_usd: Option<f64>,
        detail: serde_json::Value,
    },
    PiiFinding {
        policy: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        detail: serde_json::Value,
        /// The found value, for the encrypted audit only: never serialized.
        #[serde(skip)]
        original: Option<SensitiveValue>,
    },
    BudgetWarning {
        policy: String,
        detail: serde_json::Value,
    },
    BudgetExceeded {
        policy: String,
        detail: serde_json::Value,
    },
    CircuitOpened {
        policy: String,
        detail: serde_json::Value,
    },
    CircuitClosed {
        policy: String,
        detail: serde_json::Value,
    },
    /// A policy call failed (trap, deadline, memory limit, bad verdict); its failure mode said
    /// what that meant for the call.
    PolicyFailure {
        policy: String,
        hook: &'static str,
        failure: FailureKind,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    /// The agent's own account of its progress (`ironhost.progress(done, total, unit)`).
    AgentProgress {
        done: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
    /// Secrets changed and the agent's environment was updated: names only, never values.
    SecretsRotated {
        secrets: Vec<String>,
        env_vars: Vec<String>,
    },
    /// The chain was changed through the control plane.
    PolicyChanged {
        action: String,
        policy: String,
        actor: String,
        generation: u64,
    },
    /// Any other event a policy emitted.
    Policy {
        policy: String,
        kind: String,
        detail: serde_json::Value,
    },
}

impl EventKind {
    /// The event's `type`, as it is serialized (`budget_warning`).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::AgentStarted { .. } => "agent_started",
            EventKind::AgentStopped { .. } => "agent_stopped",
            EventKind::LlmCall { .. } => "llm_call",
            EventKind::ToolCall { .. } => "tool_call",
            EventKind::CostUpdate { .. } => "cost_update",
            EventKind::PiiFinding { .. } => "pii_finding",
            EventKind::BudgetWarning { .. } => "budget_warning",
            EventKind::BudgetExceeded { .. } => "budget_exceeded",
            EventKind::CircuitOpened { .. } => "circuit_opened",
            EventKind::CircuitClosed { .. } => "circuit_closed",
            EventKind::PolicyFailure { .. } => "policy_failure",
            EventKind::AgentProgress { .. } => "agent_progress",
            EventKind::SecretsRotated { .. } => "secrets_rotated",
            EventKind::PolicyChanged { .. } => "policy_changed",
            EventKind::Policy { .. } => "policy",
        }
    }

    /// The typed event for what a policy emitted. `spent_usd` is the host's running total.
    pub fn from_policy(e: &PolicyEvent, spent_usd: f64) -> EventKind {
        let policy = e.policy.clone();
        let detail = e.detail.clone();
        match e.kind.as_str() {
            "budget.cost" => EventKind::CostUpdate {
                spent_usd,
                limit_usd: detail.get("limit_usd").and_then(serde_json::Value::as_f64),
                detail,
            },
            "budget.warning" => EventKind::BudgetWarning { policy, detail },
            "budget.exceeded" => EventKind::BudgetExceeded { policy, detail },
            "pii.finding" => EventKind::PiiFinding {
                policy,
                call_id: None,
                detail,
                original: e.original.clone(),
            },
            "circuit.opened" => EventKind::CircuitOpened { policy, detail },
            "circuit.closed" => EventKind::CircuitClosed { policy, detail },
            _ => EventKind::Policy {
                policy,
                kind: e.kind.clone(),
                detail,
            },
        }
    }
}

/// One event on the bus.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increasing per process, so subscribers can tell what they missed.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    pub agent_id: String,
    pub severity: Severity,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The bus. Cloning shares it.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    seq: Arc<AtomicU64>,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus {
            tx,
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Publish an event; returns it as subscribers see it.
    pub fn publish(&self, agent_id: &str, severity: Severity, kind: EventKind) -> Arc<Event> {
        let event = Arc::new(Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            ts_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            agent_id: agent_id.to_owned(),
            severity,
            kind,
        });
        // No subscriber is not an error: the bus is fire-and-forget.
        let _ = self.tx.send(event.clone());
        event
    }

    /// The sequence number of the last event published (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// A new subscription; it sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_get_every_event_in_order() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.publish(
            "a-1",
            Severity::Info,
            EventKind::AgentStarted {
                name: "a".into(),
                script: "a.py".into(),
                run: 1,
            },
        );
        bus.publish(
            "a-1",
            Severity::Info,
            EventKind::AgentStopped {
                state: AgentState::Completed,
                exit_code: 0,
                run: 1,
            },
        );
        let first = rx.try_recv().unwrap();
        let second = rx.try_recv().unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        let json = serde_json::to_value(&*second).unwrap();
        assert_eq!(json["type"], "agent_stopped");
        assert_eq!(json["state"], "completed");
    }

    #[test]
    fn policy_events_become_typed_events() {
        let e = PolicyEvent {
            policy: "pii-redact".into(),
            kind: "pii.finding".into(),
            severity: Severity::High,
            detail: serde_json::json!({"type": "email"}),
            original: Some(SensitiveValue::new("ada@example.com".into())),
        };
        let kind = EventKind::from_policy(&e, 0.0);
        assert!(matches!(
            kind,
            EventKind::PiiFinding {
                original: Some(_),
                ..
            }
        ));
        // The value goes nowhere a reader could see it.
        let json = serde_json::to_string(&kind).unwrap();
        assert!(!json.contains("ada@"), "{json}");
        assert!(!format!("{kind:?}").contains("ada@"));
    }
}
