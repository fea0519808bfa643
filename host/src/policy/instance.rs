//! One admitted policy and the calls into it.
//!
//! Instances are created from an `InstancePre` (imports resolved once) in slots of the pooling
//! allocator, kept warm in a small free list and reused across calls: state lives in the host,
//! so an instance carries nothing between calls that matters. An instance that failed (trap,
//! deadline, memory limit) is dropped and never reused; the next call gets a fresh one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::Component;

use super::bindings::{Policy, PolicyPre};
use super::bundle::PolicyEntry;
use super::engine::PolicyEngine;
use super::host::{Allowance, PolicyCtx, PolicyEvent, PolicyIdentity, RateBudget};
use super::inspect::ComponentSummary;
use super::meter::{self, Overrun};
use super::state::StateBackend;
use crate::model::{Hook, PolicyInfo};

/// Warm instances kept per policy; more concurrent calls create more, which are dropped after.
const MAX_IDLE_INSTANCES: usize = 16;

/// How a policy call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The policy trapped (a panic, an `unreachable`, an out-of-bounds access...).
    Trap,
    /// The hook ran past its deadline and was interrupted.
    Deadline,
    /// The policy tried to grow its memory past the cap.
    MemoryLimit,
    /// The policy answered something the host cannot accept.
    BadVerdict,
    /// The host could not create an instance (for example every pool slot is busy).
    Instantiate,
}

impl FailureKind {
    /// A description that never quotes the policy's own output, for denials the agent sees.
    pub fn describe(self, p: &LoadedPolicy) -> String {
        match self {
            FailureKind::Trap => "it trapped".to_owned(),
            FailureKind::Deadline => format!("deadline of {} ms exceeded", p.entry.deadline_ms),
            FailureKind::MemoryLimit => {
                format!("memory limit of {} MiB reached", p.entry.memory_mib)
            }
            FailureKind::BadVerdict => "it gave an answer the host cannot accept".to_owned(),
            FailureKind::Instantiate => "it could not be started".to_owned(),
        }
    }
}

/// A failed policy call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Running totals of one policy, for `policy list`, the API and the dashboard.
#[derive(Debug, Default)]
pub struct PolicyStats {
    pub calls: AtomicU64,
    pub denials: AtomicU64,
    pub failures: AtomicU64,
    pub total_ns: AtomicU64,
}

/// A snapshot of [`PolicyStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub denials: u64,
    pub failures: u64,
    pub mean_latency_ns: u64,
}

impl PolicyStats {
    /// Current totals.
    pub fn snapshot(&self) -> StatsSnapshot {
        let calls = self.calls.load(Ordering::Relaxed);
        StatsSnapshot {
            calls,
            denials: self.denials.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            mean_latency_ns: self
                .total_ns
                .load(Ordering::Relaxed)
                .checked_div(calls)
                .unwrap_or(0),
        }
    }
}

struct Warm {
    store: Store<PolicyCtx>,
    bindings: Policy,
}

/// Who a call is for.
#[derive(Clone, Copy, Default)]
pub struct CallTarget<'a> {
    pub agent_id: Option<&'a str>,
    pub environment: &'a str,
    /// Scratch state for the admission probe.
    pub state_override: Option<&'a Arc<dyn StateBackend>>,
    /// An admission call: it runs under the engine's admission deadline (or the policy's own
    /// deadline, if longer) instead of the per-call one.
    pub admission: bool,
}

impl std::fmt::Debug for CallTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallTarget")
            .field("agent_id", &self.agent_id)
            .field("environment", &self.environment)
            .field("scratch_state", &self.state_override.is_some())
            .field("admission", &self.admission)
            .finish()
    }
}

/// What one call into a policy produced.
#[derive(Debug)]
pub struct CallOutput<T> {
    pub result: Result<T, PolicyFailure>,
    pub events: Vec<PolicyEvent>,
    pub latency: Duration,
}

/// A policy that passed admission and can be called.
pub struct LoadedPolicy {
    /// Name in the chain.
    pub name: String,
    /// What the component says about itself.
    pub info: PolicyInfo,
    /// The bundle entry it was admitted with.
    pub entry: PolicyEntry,
    /// What the component imports and exports.
    pub summary: ComponentSummary,
    /// SHA-256 of the component file, hex.
    pub sha256: String,
    pub stats: PolicyStats,
    engine: PolicyEngine,
    pre: PolicyPre,
    identity: Arc<PolicyIdentity>,
    idle: Mutex<Vec<Warm>>,
    admission_ms: u64,
    memory_cap: usize,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.name)
            .field("version", &self.info.version)
            .finish_non_exhaustive()
    }
}

impl LoadedPolicy {
    /// Report what its allowances suppressed since their last report (log lines, events): the
    /// host calls it when a run ends, so the last second's counts are not lost.
    pub fn report_suppressed(&self) {
        self.identity.log_lines.report();
        self.identity.events.report();
    }

    /// Link a compiled component. `info` is filled by [`LoadedPolicy::describe`] afterwards.
    pub(crate) fn link(
        engine: &PolicyEngine,
        component: &Component,
        entry: PolicyEntry,
        summary: ComponentSummary,
        sha256: String,
        provisional_name: String,
    ) -> Result<LoadedPolicy, String> {
        let instance_pre = engine
            .linker()
            .instantiate_pre(component)
            .map_err(|e| format!("{e:#}"))?;
        let pre = PolicyPre::new(instance_pre).map_err(|e| format!("{e:#}"))?;
        let config_json = entry.config.to_string();
        let allowed_secrets = entry.secrets.clone();
        let admission_ms = (engine.admission_deadline().as_millis() as u64).max(entry.deadline_ms);
        let memory_cap = usize::try_from(entry.memory_mib << 20).unwrap_or(usize::MAX);
        Ok(LoadedPolicy {
            name: provisional_name.clone(),
            info: PolicyInfo {
                name: provisional_name.clone(),
                version: String::new(),
                description: String::new(),
                hooks: Vec::new(),
                capabilities: Vec::new(),
            },
            entry,
            summary,
            sha256,
            stats: PolicyStats::default(),
            engine: engine.clone(),
            pre,
            identity: Arc::new(PolicyIdentity {
                log_lines: RateBudget::new(Allowance::LogLines, &provisional_name),
                events: RateBudget::new(Allowance::Events, &provisional_name),
                name: provisional_name,
                config_json,
                allowed_secrets,
                seen_secrets: Default::default(),
            }),
            idle: Mutex::new(Vec::new()),
            admission_ms,
            memory_cap,
        })
    }

    /// Set the chain name once `describe` is known (before the policy serves any call).
    pub(crate) fn set_identity(&mut self, name: String, info: PolicyInfo) {
        self.identity = Arc::new(PolicyIdentity {
            name: name.clone(),
            config_json: self.identity.config_json.clone(),
            allowed_secrets: self.entry.secrets.clone(),
            log_lines: RateBudget::new(Allowance::LogLines, &name),
            events: RateBudget::new(Allowance::Events, &name),
            seen_secrets: Default::default(),
        });
        self.name = name;
        self.info = info;
        // Instances made so far carry the provisional identity.
        self.idle.get_mut().clear();
    }

    /// The secrets this policy has read, to keep out of what it writes.
    pub fn seen_secrets(&self) -> &super::host::SeenSecrets {
        &self.identity.seen_secrets
    }

    /// Whether the policy listed `hook` in `describe`.
    pub fn implements(&self, hook: Hook) -> bool {
        self.info.hooks.contains(&hook)
    }

    /// Instances kept warm for the next call.
    pub fn warm_instances(&self) -> usize {
        self.idle.lock().len()
    }

    /// The hook deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.entry.deadline_ms)
    }

    /// The limit of a call for `target`: the per-call deadline, or the admission one.
    fn limit_for(&self, target: &CallTarget<'_>) -> DeadlineKind {
        if target.admission {
            DeadlineKind::Admission(self.admission_ms)
        } else {
            DeadlineKind::Call(self.entry.deadline_ms)
        }
    }

    fn instantiate(&self, limit: DeadlineKind) -> Result<Warm, PolicyFailure> {
        let ctx = PolicyCtx::new(
            self.identity.clone(),
            self.engine.services().clone(),
            self.memory_cap,
        );
        let mut store = Store::new(self.engine.engine(), ctx);
        store.limiter(|ctx| &mut ctx.limiter);
        // Checked at each epoch tick while the guest runs: see `meter`.
        store.epoch_deadline_callback(|_| {
            Ok(if meter::check() {
                wasmtime::UpdateDeadline::Continue(1)
            } else {
                wasmtime::UpdateDeadline::Interrupt
            })
        });
        store.set_epoch_deadline(1);
        let (result, overrun) = meter::metered(limit.duration(), || {
            guarded(|| self.pre.instantiate(&mut store))
        });
        match result {
            Ok(bindings) => Ok(Warm { store, bindings }),
            Err(e) => Err(
                classify(&e, &store, "instantiate", limit, overrun).unwrap_or_else(|| {
                    PolicyFailure {
                        kind: FailureKind::Instantiate,
                        message: format!("cannot instantiate: {e:#}"),
                    }
                }),
            ),
        }
    }

    /// Call into the policy under its deadline and memory cap. `f` receives the exported
    /// hooks and the store; its error means the call failed.
    pub fn call<T>(
        &self,
        target: CallTarget<'_>,
        what: &str,
        f: impl FnOnce(&Policy, &mut Store<PolicyCtx>) -> wasmtime::Result<T>,
    ) -> CallOutput<T> {
        let started = Instant::now();
        let limit = self.limit_for(&target);
        let warm = self.idle.lock().pop();
        let mut warm = match warm.map_or_else(|| self.instantiate(limit), Ok) {
            Ok(w) => w,
            Err(failure) => {
                return self.finish(started, Err(failure), Vec::new());
            }
        };
        {
            warm.store.data().stderr.clear();
            let call = &mut warm.store.data_mut().call;
            call.agent_id = target.agent_id.map(str::to_owned);
            target.environment.clone_into(&mut call.environment);
            call.state_override = target.state_override.cloned();
        }
        // Checked at the next epoch tick, and each tick after while the guest runs.
        warm.store.set_epoch_deadline(1);
        let (result, overrun) = meter::metered(limit.duration(), || {
            guarded(|| f(&warm.bindings, &mut warm.store))
        });
        let call = std::mem::take(&mut warm.store.data_mut().call);
        if call.dropped_events > 0 && self.identity.log_lines.admit() {
            tracing::warn!(
                policy = self.name.as_str(),
                dropped = call.dropped_events,
                "policy emitted too many events in one call"
            );
        }
        match result {
            Ok(value) => {
                let mut idle = self.idle.lock();
                if idle.len() < MAX_IDLE_INSTANCES {
                    idle.push(warm);
                }
                drop(idle);
                self.finish(started, Ok(value), call.events)
            }
            Err(e) => {
                let failure =
                    classify(&e, &warm.store, what, limit, overrun).unwrap_or_else(|| {
                        PolicyFailure {
                            kind: FailureKind::Trap,
                            message: format!("{what} failed: {e:#}"),
                        }
                    });
                if self.identity.log_lines.admit() {
                    tracing::warn!(policy = self.name.as_str(), kind = ?failure.kind, "{}", failure.message);
                }
                // `warm` is dropped here: a failed instance is never reused.
                self.finish(started, Err(failure), call.events)
            }
        }
    }

    fn finish<T>(
        &self,
        started: Instant,
        result: Result<T, PolicyFailure>,
        events: Vec<PolicyEvent>,
    ) -> CallOutput<T> {
        let latency = started.elapsed();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats
            .total_ns
            .fetch_add(latency.as_nanos() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        CallOutput {
            result,
            events,
            latency,
        }
    }

    /// Record that this policy's verdict denied a call.
    pub(crate) fn count_denial(&self) {
        self.stats.denials.fetch_add(1, Ordering::Relaxed);
    }
}

/// A panic in host code that a policy call reached (a host import given input no one
/// foresaw): the call fails, the instance is dropped, the host goes on.
#[derive(Debug)]
struct HostPanic(String);

impl std::fmt::Display for HostPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the host failed while serving the policy: {}", self.0)
    }
}

impl std::error::Error for HostPanic {}

/// Run a call into the guest, turning a panic in a host import it reached into an error, so no
/// input from a policy or an agent can take the host down. The store it used is never reused.
fn guarded<T>(call: impl FnOnce() -> wasmtime::Result<T>) -> wasmtime::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(wasmtime::Error::new(HostPanic(message)))
    })
}

/// Which deadline a call ran under, in milliseconds.
#[derive(Debug, Clone, Copy)]
enum DeadlineKind {
    Call(u64),
    Admission(u64),
}

impl DeadlineKind {
    /// The CPU time a call may take.
    fn duration(self) -> Duration {
        match self {
            DeadlineKind::Call(ms) | DeadlineKind::Admission(ms) => Duration::from_millis(ms),
        }
    }
}

impl std::fmt::Display for DeadlineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadlineKind::Call(ms) => write!(f, "deadline of {ms} ms exceeded"),
            DeadlineKind::Admission(ms) => write!(f, "admission deadline of {ms} ms exceeded"),
        }
    }
}

/// Map a wasmtime error to a policy failure. Only traps, deadlines and memory limits are
/// recognized; anything else is left to the caller.
fn classify(
    e: &wasmtime::Error,
    store: &Store<PolicyCtx>,
    what: &str,
    limit: DeadlineKind,
    overrun: Option<Overrun>,
) -> Option<PolicyFailure> {
    let ctx = store.data();
    if ctx.limiter.memory_hit {
        return Some(PolicyFailure {
            kind: FailureKind::MemoryLimit,
            message: format!(
                "{what}: memory limit of {} MiB reached",
                ctx.limiter.memory_cap >> 20
            ),
        });
    }
    if let Some(panic) = e.downcast_ref::<HostPanic>() {
        return Some(PolicyFailure {
            kind: FailureKind::Trap,
            message: format!("{what}: {panic}"),
        });
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Some(PolicyFailure {
            kind: FailureKind::Deadline,
            message: match overrun {
                Some(Overrun::Wall) => format!(
                    "{what}: {limit} (wall-clock backstop of {} ms)",
                    meter::backstop(limit.duration()).as_millis()
                ),
                Some(Overrun::Cpu) | None => format!("{what}: {limit}"),
            },
        }),
        Some(trap) => {
            let detail = ctx
                .stderr_tail()
                .map(|line| format!(" ({line})"))
                .unwrap_or_default();
            Some(PolicyFailure {
                kind: FailureKind::Trap,
                message: format!("{what}: trapped: {trap}{detail}"),
            })
        }
        None => None,
    }
}
