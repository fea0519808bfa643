//! The in-process event bus: typed events about agents, calls, costs and protections.
//!
//! Two ways out:
//! - **Subscribers** (the live feed, alert sinks) get every event through a bounded broadcast;
//!   publishing never waits for them, and one that falls behind loses the oldest events and is
//!   told how many.
//! - **The journal** is the store's own path. It never loses a record ([`EventKind::is_record`]:
//!   calls, PII audit rows, agent state, policy failures and chain changes): they queue however
//!   far behind the store is, and calls wait at their start ([`EventBus::wait_for_room`]) once
//!   [`PAUSE_AT`] records are pending. Other events are kept too until [`SHED_AT`] are pending;
//!   beyond that they are counted and reported, not stored.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::model::Severity;
use crate::policy::chain::VerdictKind;
use crate::policy::host::{PolicyEvent, SensitiveValue};
use crate::policy::instance::FailureKind;

/// Events kept for a subscriber that falls behind.
const CAPACITY: usize = 4096;
/// Journal entries pending beyond which events that are not records are no longer stored.
pub const SHED_AT: usize = 8192;
/// Journal entries pending beyond which new calls wait for the store before they start.
pub const PAUSE_AT: usize = 32_768;

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

impl CallOutcome {
    /// The outcome's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Denied => "denied",
            CallOutcome::Fallback => "fallback",
            CallOutcome::Error => "error",
            CallOutcome::Cancelled => "cancelled",
        }
    }
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
        /// The provider API: `chat`, `messages`, `responses`, `embeddings`, `moderations`,
        /// `completions`, `count_tokens`.
        #[serde(default)]
        api: String,
        model: String,
        stream: bool,
        outcome: CallOutcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// Why the call was refused or failed, in words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
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
    /// One unit of the agent's work finished (`ironhost.unit_done`, `with ironhost.unit()`):
    /// a lead found or not. `fallback` names what served it instead of the usual path
    /// (`cache`, `placeholder`); `seconds` is how long it took, if the agent said.
    UnitDone {
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fallback: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
    /// A policy saw a prompt-injection attempt (it emitted `prompt.injection`).
    PromptInjection {
        policy: String,
        detail: serde_json::Value,
    },
    /// The host refused a network request of the agent's (`[egress]`, governed-only): the
    /// host it asked for and why.
    EgressRefused {
        host: String,
        port: u16,
        reason: String,
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
        /// The bundle revision the chain runs now (changes of the bundle; not a limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<i64>,
    },
    /// Any other event a policy emitted.
    Policy {
        policy: String,
        kind: String,
        detail: serde_json::Value,
    },
}

impl EventKind {
    /// Whether the event is a record the store must keep whatever the load: a call, a PII
    /// audit row, a change of an agent's state, a policy failure, a budget or circuit alert, a
    /// change of the chain or of secrets. Only cost updates and other events policies emit are
    /// not.
    pub fn is_record(&self) -> bool {
        !matches!(
            self,
            EventKind::CostUpdate { .. } | EventKind::Policy { .. }
        )
    }

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
            EventKind::UnitDone { .. } => "unit_done",
            EventKind::PromptInjection { .. } => "prompt_injection",
            EventKind::EgressRefused { .. } => "egress_refused",
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
            "prompt.injection" => EventKind::PromptInjection { policy, detail },
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
    journal: Arc<Journal>,
}

/// The store's lossless path: an unbounded queue with counts, so records are never dropped and
/// the call path can wait when the store falls far behind.
#[derive(Debug, Default)]
struct Journal {
    tx: OnceLock<mpsc::UnboundedSender<Arc<Event>>>,
    counts: Arc<JournalCounts>,
}

/// What is in the journal's queue, shared with the reader.
#[derive(Debug, Default)]
pub struct JournalCounts {
    pending: AtomicUsize,
    shed: AtomicU64,
    /// Calls are waiting for room (so only the first of them says so).
    paused: std::sync::atomic::AtomicBool,
}

impl JournalCounts {
    /// Entries sent and not yet taken off by [`JournalCounts::done`].
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// The reader has dealt with `n` entries.
    pub fn done(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }

    /// Events not journaled because too many were pending, since the last call.
    pub fn take_shed(&self) -> u64 {
        self.shed.swap(0, Ordering::Relaxed)
    }
}

/// The reading end of the journal: the recorder owns it.
#[derive(Debug)]
pub struct JournalReader {
    pub rx: mpsc::UnboundedReceiver<Arc<Event>>,
    pub counts: Arc<JournalCounts>,
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
            journal: Arc::default(),
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
        if let Some(journal) = self.journal.tx.get() {
            let counts = &self.journal.counts;
            if event.kind.is_record() || counts.pending() < SHED_AT {
                counts.pending.fetch_add(1, Ordering::AcqRel);
                if journal.send(event.clone()).is_err() {
                    // The reader is gone (the runtime is shutting down): nothing waits on it.
                    counts.done(1);
                }
            } else {
                counts.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
        // No subscriber is not an error: the bus is fire-and-forget.
        let _ = self.tx.send(event.clone());
        event
    }

    /// Take the journal's reading end: every event published from now on reaches it (records
    /// always). One reader per bus: `None` if it was taken already.
    pub fn journal(&self) -> Option<JournalReader> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.journal.tx.set(tx).ok()?;
        Some(JournalReader {
            rx,
            counts: self.journal.counts.clone(),
        })
    }

    /// Journal entries the store has not written yet.
    pub fn journal_pending(&self) -> usize {
        self.journal.counts.pending()
    }

    /// Block until the journal has room ([`PAUSE_AT`] or fewer pending): the backpressure a
    /// call feels when the store cannot keep up. Returns at once in the common case; `stop`
    /// ends the wait early (the agent was interrupted).
    pub fn wait_for_room(&self, stop: impl Fn() -> bool) {
        if self.journal_pending() <= PAUSE_AT {
            return;
        }
        let counts = &self.journal.counts;
        if !counts.paused.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "the store is {} records behind: calls wait for it to catch up",
                counts.pending()
            );
        }
        while counts.pending() > PAUSE_AT && !stop() {
            std::thread::sleep(Duration::from_millis(2));
        }
        counts.paused.store(false, Ordering::Release);
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

    fn a_call(n: u32) -> EventKind {
        EventKind::ToolCall {
            call_id: format!("tool-{n}"),
            tool: "t".into(),
            outcome: CallOutcome::Ok,
            code: None,
            latency_ms: 0.0,
            verdicts: Vec::new(),
        }
    }

    fn a_cost() -> EventKind {
        EventKind::CostUpdate {
            spent_usd: 0.0,
            limit_usd: None,
            detail: serde_json::json!({}),
        }
    }

    #[test]
    fn the_journal_keeps_every_record_and_calls_wait_for_room() {
        let bus = EventBus::new();
        let journal = bus.journal().expect("the first reader");
        assert!(bus.journal().is_none(), "one reader per bus");
        for n in 0..=PAUSE_AT as u32 {
            bus.publish("a-1", Severity::Info, a_call(n));
        }
        // Far beyond SHED_AT: a cost update is not kept, a record still is.
        bus.publish("a-1", Severity::Info, a_cost());
        assert_eq!(journal.counts.pending(), PAUSE_AT + 1);
        assert_eq!(journal.counts.take_shed(), 1);
        bus.publish("a-1", Severity::Info, a_call(0));
        assert_eq!(journal.counts.pending(), PAUSE_AT + 2);

        // A new call waits while the store is that far behind, and goes on once it catches up.
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (bus, started) = (bus.clone(), started.clone());
            std::thread::spawn(move || {
                bus.wait_for_room(|| false);
                started.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!started.load(Ordering::SeqCst), "the call did not wait");
        journal.counts.done(2);
        waiter.join().expect("the call went on");
        assert!(started.load(Ordering::SeqCst));
        // An interrupted agent does not wait at all.
        bus.publish("a-1", Severity::Info, a_call(1));
        bus.publish("a-1", Severity::Info, a_call(2));
        bus.wait_for_room(|| true);

        // Every record is in the queue, in order.
        let mut rx = journal.rx;
        let mut calls = 0;
        while let Ok(e) = rx.try_recv() {
            assert!(e.kind.is_record(), "{}", e.kind.type_name());
            calls += 1;
        }
        assert_eq!(calls, PAUSE_AT + 4);
    }
}
