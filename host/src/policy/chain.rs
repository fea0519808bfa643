//! The chain: runs a hook across the bundle's policies in order and applies their verdicts.
//!
//! Rules, in order of precedence for one policy's answer:
//! - a **failure** (trap, deadline, memory limit, bad verdict) denies the call under
//!   `fail-closed`, and is recorded and skipped under `fail-open` and `monitor`;
//! - under `monitor`, denials, rewrites and short-circuit answers are recorded with
//!   `enforced: false` and not applied;
//! - otherwise the first `deny` stops the call, `rewrite` replaces the value later policies see,
//!   and `respond` / `fallback` stop the chain with an answer in place of the real call.
//!
//! The chain in use is an atomically swapped snapshot: a call (or a whole stream) runs on the
//! snapshot it started with, so a hot swap never changes policies under a call in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;

use wasmtime::Store;

use super::bindings::Policy;
use super::bindings::wit::types as w;
use super::bundle::FailureMode;
use super::host::{PolicyCtx, PolicyEvent, SeenSecrets};
use super::instance::{CallOutput, CallTarget, FailureKind, LoadedPolicy, PolicyFailure};
use crate::model::{
    AgentInfo, CallContext, Capability, Denial, Hook, LlmChunk, LlmOutcome, LlmRequest,
    LlmResponse, StartEffects, ToolCall, ToolOutcome, Usage,
};

/// Most text one policy may hold back in a stream, in bytes.
pub const MAX_HELD_BYTES: usize = 4096;

/// Denial code used when a fail-closed policy fails.
pub const POLICY_FAILED: &str = "policy_failed";

/// What a policy answered, as recorded in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Pass,
    Rewrite,
    Deny,
    Respond,
    Fallback,
    Release,
    StartWith,
    /// The policy was told that a call it passed ended (`on-llm-abandoned`).
    Notified,
    /// The policy failed; see `failure`.
    Failed,
}

impl VerdictKind {
    /// The name reports and log lines use (the same as its JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Pass => "pass",
            VerdictKind::Rewrite => "rewrite",
            VerdictKind::Deny => "deny",
            VerdictKind::Respond => "respond",
            VerdictKind::Fallback => "fallback",
            VerdictKind::Release => "release",
            VerdictKind::StartWith => "start-with",
            VerdictKind::Notified => "notified",
            VerdictKind::Failed => "failed",
        }
    }
}

/// One policy's part in one chain run.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub version: String,
    pub verdict: VerdictKind,
    /// False when the verdict was recorded but not applied (monitor mode, or a failure that
    /// the failure mode let through).
    pub enforced: bool,
    pub latency_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<PolicyFailure>,
    pub events: Vec<PolicyEvent>,
}

/// How a chain run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Outcome<T> {
    /// Go on with this value (possibly rewritten).
    Continue { value: T },
    /// A policy refused the call.
    Deny { policy: String, denial: Denial },
    /// A policy answered the LLM request itself; the provider must not be called.
    Respond {
        policy: String,
        response: LlmResponse,
    },
    /// A policy answered the tool call itself (JSON text); the tool must not run.
    Fallback { policy: String, result: String },
}

/// The result of running one hook across the chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainRun<T> {
    pub outcome: T,
    pub policies: Vec<PolicyReport>,
    pub latency_ns: u64,
    /// Generation of the chain snapshot the run used.
    pub generation: u64,
}

impl<T> ChainRun<T> {
    /// Every event every policy emitted during the run, in order.
    pub fn events(&self) -> impl Iterator<Item = &PolicyEvent> {
        self.policies.iter().flat_map(|p| p.events.iter())
    }
}

/// One policy of a chain.
#[derive(Debug, Clone)]
pub struct Member {
    pub policy: Arc<LoadedPolicy>,
    pub enabled: bool,
}

/// An immutable snapshot of the chain.
#[derive(Debug)]
pub struct ChainState {
    pub bundle: String,
    pub members: Vec<Member>,
    pub generation: u64,
}

/// Why a chain change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("no policy named `{0}` in the chain")]
    UnknownPolicy(String),
    #[error("the new order must name every policy exactly once (chain: {0})")]
    BadOrder(String),
}

/// The policy chain of a host.
pub struct Chain {
    current: ArcSwap<ChainState>,
    writer: Mutex<()>,
    generations: AtomicU64,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("generation", &self.current.load().generation)
            .finish_non_exhaustive()
    }
}

/// What one policy answered, in the bindings' types.
enum Step<W> {
    Pass,
    Rewrite(W),
    Deny(w::Denial),
    Respond(w::LlmResponse),
    Fallback(String),
}

fn call_context(ctx: &CallContext) -> w::CallContext {
    ctx.clone().into()
}

fn target(ctx: &CallContext) -> CallTarget<'_> {
    CallTarget {
        agent_id: Some(&ctx.agent_id),
        environment: &ctx.environment,
        state_override: None,
        admission: false,
    }
}

impl Chain {
    /// A chain of `policies` in order, all enabled unless their bundle entry says otherwise.
    pub fn new(bundle: impl Into<String>, policies: Vec<Arc<LoadedPolicy>>) -> Chain {
        let members = policies
            .into_iter()
            .map(|p| Member {
                enabled: p.entry.enabled,
                policy: p,
            })
            .collect();
        Chain {
            current: ArcSwap::from_pointee(ChainState {
                bundle: bundle.into(),
                members,
                generation: 1,
            }),
            writer: Mutex::new(()),
            generations: AtomicU64::new(1),
        }
    }

    /// [`LoadedPolicy::report_suppressed`] for every policy in the chain.
    pub fn report_suppressed(&self) {
        for m in &self.snapshot().members {
            m.policy.report_suppressed();
        }
    }

    /// The snapshot new calls run on.
    pub fn snapshot(&self) -> Arc<ChainState> {
        self.current.load_full()
    }

    fn update(
        &self,
        f: impl FnOnce(&ChainState) -> Result<(String, Vec<Member>), ChainError>,
    ) -> Result<u64, ChainError> {
        let _guard = self.writer.lock();
        let old = self.current.load_full();
        let (bundle, members) = f(&old)?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        self.current.store(Arc::new(ChainState {
            bundle,
            members,
            generation,
        }));
        Ok(generation)
    }

    /// Replace the whole chain. Calls in flight finish on the old one. Returns the generation.
    pub fn swap_bundle(&self, bundle: impl Into<String>, policies: Vec<Arc<LoadedPolicy>>) -> u64 {
        let bundle = bundle.into();
        let members = policies
            .into_iter()
            .map(|p| Member {
                enabled: p.entry.enabled,
                policy: p,
            })
            .collect();
        match self.update(|_| Ok((bundle, members))) {
            Ok(g) => g,
            Err(_) => self.current.load().generation,
        }
    }

    /// Replace the whole chain with `policies`, each on or off as given (a bundle revision:
    /// policies it did not change are passed in as the same `Arc`, so they keep their warm
    /// instances and figures). Calls in flight finish on the old chain. Returns the generation.
    pub fn swap_members(
        &self,
        bundle: impl Into<String>,
        policies: Vec<(Arc<LoadedPolicy>, bool)>,
    ) -> u64 {
        let bundle = bundle.into();
        let members = policies
            .into_iter()
            .map(|(policy, enabled)| Member { enabled, policy })
            .collect();
        match self.update(|_| Ok((bundle, members))) {
            Ok(g) => g,
            Err(_) => self.current.load().generation,
        }
    }

    /// Replace the policy with the same name in place, or append it if there is none.
    pub fn upsert_policy(&self, policy: Arc<LoadedPolicy>) -> u64 {
        let result = self.update(|old| {
            let mut members = old.members.clone();
            match members.iter_mut().find(|m| m.policy.name == policy.name) {
                Some(m) => m.policy = policy,
                None => members.push(Member {
                    enabled: policy.entry.enabled,
                    policy,
                }),
            }
            Ok((old.bundle.clone(), members))
        });
        result.unwrap_or_else(|_| self.current.load().generation)
    }

    /// Enable or disable a policy by name.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<u64, ChainError> {
        self.update(|old| {
            let mut members = old.members.clone();
            let m = members
                .iter_mut()
                .find(|m| m.policy.name == name)
                .ok_or_else(|| ChainError::UnknownPolicy(name.to_owned()))?;
            m.enabled = enabled;
            Ok((old.bundle.clone(), members))
        })
    }

    /// Put the policies in the given order; `names` must list each exactly once.
    pub fn reorder(&self, names: &[&str]) -> Result<u64, ChainError> {
        self.update(|old| {
            let current: Vec<&str> = old.members.iter().map(|m| m.policy.name.as_str()).collect();
            let mut sorted_new = names.to_vec();
            sorted_new.sort_unstable();
            let mut sorted_old = current.clone();
            sorted_old.sort_unstable();
            if sorted_new != sorted_old {
                return Err(ChainError::BadOrder(current.join(", ")));
            }
            let members = names
                .iter()
                .filter_map(|n| old.members.iter().find(|m| m.policy.name == *n).cloned())
                .collect();
            Ok((old.bundle.clone(), members))
        })
    }

    /// Run `on-agent-start`. Environment changes of every policy are merged in order.
    pub fn on_agent_start(&self, agent: &AgentInfo) -> ChainRun<Outcome<StartEffects>> {
        let state = self.snapshot();
        let started = Instant::now();
        let wagent: w::AgentInfo = agent.clone().into();
        let tgt = CallTarget {
            agent_id: Some(&agent.agent_id),
            environment: &agent.environment,
            state_override: None,
            admission: false,
        };
        let mut effects = StartEffects::default();
        let mut reports = Vec::new();
        for m in active(&state, Hook::AgentStart) {
            let p = &m.policy;
            let out = p.call(tgt, Hook::AgentStart.function_name(), |h, s| {
                h.call_on_agent_start(s, &wagent)
            });
            let out = map_output(out, |v| match v {
                w::StartVerdict::Pass => Ok(Step::Pass),
                w::StartVerdict::StartWith(e) => validate_env(&e.env).map(|()| Step::Rewrite(e)),
                w::StartVerdict::Deny(d) => Ok(Step::Deny(d)),
            });
            match apply(p, out, &mut reports, VerdictKind::StartWith, false) {
                Applied::Continue(Some(e)) => effects.env.extend(StartEffects::from(e).env),
                Applied::Continue(None) => {}
                Applied::Stop(outcome) => {
                    return finish(outcome.map_value(|_| effects), reports, started, &state);
                }
            }
        }
        finish(
            Outcome::Continue { value: effects },
            reports,
            started,
            &state,
        )
    }

    /// Run `on-llm-request`. When a policy denies or answers the request, the policies that
    /// passed it before are told with `on-llm-abandoned` (their reports say `notified`).
    pub fn on_llm_request(
        &self,
        ctx: &CallContext,
        request: LlmRequest,
    ) -> ChainRun<Outcome<LlmRequest>> {
        let state = self.snapshot();
        let original = (request.provider.clone(), request.stream);
        let (mut run, value, changes) = run_hook(
            &state,
            Hook::LlmRequest,
            ctx,
            w::LlmRequest::from(request),
            |h, s, c, v| h.call_on_llm_request(s, c, v),
            |p, before, v| match v {
                w::RequestVerdict::Pass => Ok(Step::Pass),
                w::RequestVerdict::Rewrite(r) => {
                    within_verdict_limit(p, request_bytes(&r), request_bytes(before))
                        .and_then(|()| validate_request(&r, &original.0, original.1))
                        .and_then(|()| validate_credential(p, before, &r))
                        .map(|()| Step::Rewrite(r))
                }
                w::RequestVerdict::Deny(d) => Ok(Step::Deny(d)),
                w::RequestVerdict::Respond(r) => {
                    within_verdict_limit(p, message_bytes(&r.message), 0).map(|()| Step::Respond(r))
                }
            },
            false,
        );
        let mut value = value;
        if matches!(run.outcome, Outcome::Continue { .. }) && !changes.is_empty() {
            let started = Instant::now();
            recheck_stale(&state, ctx, &mut value, &changes, &mut run);
            run.latency_ns += started.elapsed().as_nanos() as u64;
        }
        let ended = match &run.outcome {
            Outcome::Deny { policy, denial } => Some((denial.clone(), policy.clone())),
            Outcome::Respond { policy, .. } => Some((
                Denial {
                    code: RESPONDED.to_owned(),
                    message: format!("policy `{policy}` answered the request itself"),
                    retry_after_ms: None,
                },
                policy.clone(),
            )),
            _ => None,
        };
        if let Some((reason, by)) = ended {
            // Everyone before the policy that ended the call passed it, except those already
            // told (a policy checked again after a later rewrite, then ended the call).
            let mut last: Vec<(&str, VerdictKind)> = Vec::new();
            for r in run
                .policies
                .iter()
                .take(run.policies.len().saturating_sub(1))
            {
                match last.iter_mut().find(|(name, _)| *name == r.policy) {
                    Some(entry) => entry.1 = r.verdict,
                    None => last.push((r.policy.as_str(), r.verdict)),
                }
            }
            let passed: Vec<String> = last
                .into_iter()
                .filter(|(_, v)| *v != VerdictKind::Notified)
                .map(|(name, _)| name.to_owned())
                .collect();
            let abandonment = w::Abandonment {
                reason: reason.into(),
                by_policy: Some(by),
                usage: None,
            };
            let started = Instant::now();
            notify_abandoned(
                &state,
                ctx,
                &value,
                &abandonment,
                Some(&passed),
                &mut run.policies,
            );
            run.latency_ns += started.elapsed().as_nanos() as u64;
        }
        run.map(|()| LlmRequest::from(value))
    }

    /// Tell every active policy that implements `on-llm-abandoned` that a call ended without a
    /// response: the agent gave up, the host shut down, or a stream was denied part-way.
    pub fn on_llm_abandoned(
        &self,
        ctx: &CallContext,
        request: LlmRequest,
        reason: Denial,
        by_policy: Option<String>,
        usage: Option<Usage>,
    ) -> ChainRun<()> {
        let state = self.snapshot();
        let started = Instant::now();
        let abandonment = w::Abandonment {
            reason: reason.into(),
            by_policy,
            usage: usage.map(Into::into),
        };
        let mut reports = Vec::new();
        let wreq = w::LlmRequest::from(request);
        notify_abandoned(&state, ctx, &wreq, &abandonment, None, &mut reports);
        ChainRun {
            outcome: (),
            policies: reports,
            latency_ns: started.elapsed().as_nanos() as u64,
            generation: state.generation,
        }
    }

    /// Run `on-llm-response` on a provider outcome. A rewrite of an error outcome turns it into
    /// a response. For a streamed answer (assembled after the last chunk, already delivered)
    /// verdicts are recorded, not applied; for a streamed call that failed they are applied.
    pub fn on_llm_response(
        &self,
        ctx: &CallContext,
        request: LlmRequest,
        outcome: LlmOutcome,
    ) -> ChainRun<Outcome<LlmOutcome>> {
        let state = self.snapshot();
        let record_only = request.stream && matches!(outcome, LlmOutcome::Ok(_));
        let wreq = w::LlmRequest::from(request);
        let (run, value, _) = run_hook(
            &state,
            Hook::LlmResponse,
            ctx,
            w::LlmOutcome::from(outcome),
            |h, s, c, v| h.call_on_llm_response(s, c, &wreq, v),
            |p, before, v| match v {
                w::ResponseVerdict::Pass => Ok(Step::Pass),
                w::ResponseVerdict::Rewrite(r) => {
                    let had = match before {
                        w::LlmOutcome::Ok(b) => message_bytes(&b.message),
                        _ => 0,
                    };
                    within_verdict_limit(p, message_bytes(&r.message), had)
                        .map(|()| Step::Rewrite(w::LlmOutcome::Ok(r)))
                }
                w::ResponseVerdict::Deny(d) => Ok(Step::Deny(d)),
            },
            record_only,
        );
        run.map(|()| LlmOutcome::from(value))
    }

    /// Start a stream: every chunk of one streamed answer goes through the returned session,
    /// which pins the current chain snapshot and keeps each policy's held-back text.
    pub fn stream(&self, ctx: &CallContext) -> ChainStream {
        let state = self.snapshot();
        let held = vec![Held::default(); state.members.len()];
        ChainStream {
            state,
            ctx: ctx.clone(),
            wctx: call_context(ctx),
            held,
            done: false,
        }
    }

    /// Run `on-tool-call`.
    pub fn on_tool_call(&self, ctx: &CallContext, call: ToolCall) -> ChainRun<Outcome<ToolCall>> {
        let state = self.snapshot();
        let original = (call.id.clone(), call.name.clone());
        let (run, value, _) = run_hook(
            &state,
            Hook::ToolCall,
            ctx,
            w::ToolCall::from(call),
            |h, s, c, v| h.call_on_tool_call(s, c, v),
            |p, before, v| match v {
                w::ToolVerdict::Pass => Ok(Step::Pass),
                w::ToolVerdict::Rewrite(c) => {
                    within_verdict_limit(p, c.arguments.len(), before.arguments.len())?;
                    if (&c.id, &c.name) != (&original.0, &original.1) {
                        Err(
                            "rewrote a tool call's `id` or `name`; only `arguments` may change"
                                .to_owned(),
                        )
                    } else {
                        json_text(&c.arguments, "rewrote tool arguments").map(|()| Step::Rewrite(c))
                    }
                }
                w::ToolVerdict::Deny(d) => Ok(Step::Deny(d)),
                w::ToolVerdict::Fallback(json) => within_verdict_limit(p, json.len(), 0)
                    .and_then(|()| json_text(&json, "answered `fallback`"))
                    .map(|()| Step::Fallback(json)),
            },
            false,
        );
        run.map(|()| ToolCall::from(value))
    }

    /// Run `on-tool-result`.
    pub fn on_tool_result(
        &self,
        ctx: &CallContext,
        call: ToolCall,
        outcome: ToolOutcome,
    ) -> ChainRun<Outcome<ToolOutcome>> {
        let state = self.snapshot();
        let wcall = w::ToolCall::from(call);
        let (run, value, _) = run_hook(
            &state,
            Hook::ToolResult,
            ctx,
            w::ToolOutcome::from(outcome),
            |h, s, c, v| h.call_on_tool_result(s, c, &wcall, v),
            |p, before, v| match v {
                w::ResultVerdict::Pass => Ok(Step::Pass),
                w::ResultVerdict::Rewrite(w::ToolOutcome::Ok(json)) => {
                    let had = match before {
                        w::ToolOutcome::Ok(b) => b.len(),
                        _ => 0,
                    };
                    within_verdict_limit(p, json.len(), had)
                        .and_then(|()| json_text(&json, "rewrote the tool result"))
                        .map(|()| Step::Rewrite(w::ToolOutcome::Ok(json)))
                }
                w::ResultVerdict::Rewrite(o) => Ok(Step::Rewrite(o)),
                w::ResultVerdict::Deny(d) => Ok(Step::Deny(d)),
            },
            false,
        );
        run.map(|()| ToolOutcome::from(value))
    }
}

/// Denial code in an abandonment when a policy answered the request itself.
pub const RESPONDED: &str = "responded";

/// Run one hook across the active policies of `state`, threading the value (in the bindings'
/// types) through rewrites. Returns the run and the final value.
fn run_hook<W: Scrub, V>(
    state: &ChainState,
    hook: Hook,
    ctx: &CallContext,
    mut value: W,
    call: impl Fn(&Policy, &mut Store<PolicyCtx>, &w::CallContext, &W) -> wasmtime::Result<V>,
    step: impl Fn(&LoadedPolicy, &W, V) -> Result<Step<W>, String>,
    record_only: bool,
) -> (ChainRun<Outcome<()>>, W, Changes<W>) {
    let started = Instant::now();
    let wctx = call_context(ctx);
    let mut reports = Vec::new();
    let mut changes = Vec::new();
    for m in active(state, hook) {
        let p = &m.policy;
        let out = p.call(target(ctx), hook.function_name(), |h, s| {
            call(h, s, &wctx, &value)
        });
        match apply(
            p,
            map_output(out, |v| step(p, &value, v)),
            &mut reports,
            VerdictKind::Rewrite,
            record_only,
        ) {
            Applied::Continue(Some(v)) => {
                changes.push((reports.len() - 1, std::mem::replace(&mut value, v)));
            }
            Applied::Continue(None) => {}
            Applied::Stop(outcome) => {
                return (finish(outcome, reports, started, state), value, changes);
            }
        }
    }
    let run = finish(Outcome::Continue { value: () }, reports, started, state);
    (run, value, changes)
}

/// The applied rewrites of one hook run, in order: the index of the rewriting policy's report,
/// and the value before it (what the policies of the reports before that index saw, back to
/// the previous rewrite).
type Changes<W> = Vec<(usize, W)>;

/// Whether a rewrite changed what the provider will be sent (the credential is the host's
/// business: it never goes on the wire).
fn changes_what_is_sent(before: &w::LlmRequest, after: &w::LlmRequest) -> bool {
    (
        &before.provider,
        &before.model,
        &before.messages,
        &before.tools,
    ) != (&after.provider, &after.model, &after.messages, &after.tools)
        || (before.max_output_tokens, before.temperature, before.stream)
            != (after.max_output_tokens, after.temperature, after.stream)
        || before.extra != after.extra
}

/// Denial code of the abandonment a policy is told of when a later policy rewrote the request
/// it had passed (it then sees the request again, as it will be sent).
pub const REWRITTEN: &str = "rewritten";

/// The final check of `on-llm-request`: a policy that passed a request which a later policy then
/// changed (its model, messages, tools or parameters) has decided on something that will not be
/// sent. If it implements `on-llm-abandoned` (it keeps something per call, such as the budget's
/// reservation) it is told its version was abandoned (code [`REWRITTEN`]) and sees the final
/// request again, in bundle order: it may pass, deny or answer it, or rewrite only the
/// credential; changing what is sent now is a failure. So whatever the bundle order, what a
/// reserving policy reserved for is what leaves the host.
fn recheck_stale(
    state: &ChainState,
    ctx: &CallContext,
    value: &mut w::LlmRequest,
    changes: &Changes<w::LlmRequest>,
    run: &mut ChainRun<Outcome<()>>,
) {
    // The last rewrite that changed what is sent (the value after rewrite k is the value before
    // rewrite k + 1, or the final one).
    let after = |k: usize| changes.get(k + 1).map_or(&*value, |(_, v)| v);
    let Some((last_change, _)) = changes
        .iter()
        .enumerate()
        .rev()
        .find(|(k, (_, before))| changes_what_is_sent(before, after(*k)))
        .map(|(_, c)| c)
    else {
        return;
    };
    let rewriter = run.policies[*last_change].policy.clone();
    let stale: Vec<(Arc<LoadedPolicy>, usize)> = run.policies[..*last_change]
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.verdict, VerdictKind::Pass | VerdictKind::Rewrite))
        .filter_map(|(i, r)| {
            active(state, Hook::LlmAbandoned)
                .find(|m| m.policy.name == r.policy)
                .map(|m| (m.policy.clone(), i))
        })
        .collect();
    let wctx = call_context(ctx);
    for (p, i) in stale {
        let Some((_, seen)) = changes.iter().find(|(at, _)| *at > i) else {
            continue;
        };
        let abandonment = w::Abandonment {
            reason: Denial {
                code: REWRITTEN.to_owned(),
                message: format!(
                    "policy `{rewriter}` rewrote the request after `{}` passed it; it is checked \
                     again as it will be sent",
                    p.name
                ),
                retry_after_ms: None,
            }
            .into(),
            by_policy: Some(rewriter.clone()),
            usage: None,
        };
        run.policies
            .push(tell_abandoned(&p, ctx, &wctx, seen, &abandonment));
        let out = p.call(target(ctx), Hook::LlmRequest.function_name(), |h, s| {
            h.call_on_llm_request(s, &wctx, value)
        });
        let step = map_output(out, |v| match v {
            w::RequestVerdict::Pass => Ok(Step::Pass),
            w::RequestVerdict::Rewrite(r) if changes_what_is_sent(value, &r) => {
                Err("rewrote the request when it was checked again as it will be sent".to_owned())
            }
            w::RequestVerdict::Rewrite(r) => {
                validate_credential(&p, value, &r).map(|()| Step::Rewrite(r))
            }
            w::RequestVerdict::Deny(d) => Ok(Step::Deny(d)),
            w::RequestVerdict::Respond(r) => Ok(Step::Respond(r)),
        });
        match apply(&p, step, &mut run.policies, VerdictKind::Rewrite, false) {
            Applied::Continue(Some(v)) => *value = v,
            Applied::Continue(None) => {}
            Applied::Stop(outcome) => {
                run.outcome = outcome;
                return;
            }
        }
    }
}

/// Call `on-llm-abandoned` on the active policies implementing it, latest first; `only`
/// limits it to the named policies. Failures are recorded; nothing can be enforced.
fn notify_abandoned(
    state: &ChainState,
    ctx: &CallContext,
    request: &w::LlmRequest,
    abandonment: &w::Abandonment,
    only: Option<&[String]>,
    reports: &mut Vec<PolicyReport>,
) {
    let wctx = call_context(ctx);
    let members: Vec<&Member> = active(state, Hook::LlmAbandoned)
        .filter(|m| only.is_none_or(|names| names.contains(&m.policy.name)))
        .collect();
    for m in members.into_iter().rev() {
        reports.push(tell_abandoned(&m.policy, ctx, &wctx, request, abandonment));
    }
}

/// Call one policy's `on-llm-abandoned`; nothing it answers can be enforced.
fn tell_abandoned(
    p: &LoadedPolicy,
    ctx: &CallContext,
    wctx: &w::CallContext,
    request: &w::LlmRequest,
    abandonment: &w::Abandonment,
) -> PolicyReport {
    let out = p.call(target(ctx), Hook::LlmAbandoned.function_name(), |h, s| {
        h.call_on_llm_abandoned(s, wctx, request, abandonment)
    });
    PolicyReport {
        policy: p.name.clone(),
        version: p.info.version.clone(),
        verdict: if out.result.is_ok() {
            VerdictKind::Notified
        } else {
            VerdictKind::Failed
        },
        enforced: false,
        latency_ns: out.latency.as_nanos() as u64,
        denial: None,
        failure: out.result.err(),
        events: out.events,
    }
}

/// A rewritten request may change the model, messages, tools and parameters, but not the
/// provider or whether it streams (the agent's client expects what it asked for), and
/// `extra` must stay a JSON object.
fn validate_request(r: &w::LlmRequest, provider: &str, stream: bool) -> Result<(), String> {
    if r.provider != provider {
        return Err(format!(
            "rewrote the request's provider from `{provider}` to `{}`",
            r.provider
        ));
    }
    if r.stream != stream {
        return Err("rewrote whether the request streams".to_owned());
    }
    match serde_json::from_str::<serde_json::Value>(&r.extra) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => {
            Err("rewrote the request's `extra` into something that is not a JSON object".to_owned())
        }
    }
}

/// A policy may name a credential for egress only among the secrets it may read: any other name
/// would have the host send a secret the policy was never granted (a database password, say) to
/// the provider. Keeping the credential an earlier policy named is always allowed.
fn validate_credential(
    p: &LoadedPolicy,
    before: &w::LlmRequest,
    after: &w::LlmRequest,
) -> Result<(), String> {
    let Some(name) = after.credential.as_deref() else {
        return Ok(());
    };
    if before.credential.as_deref() == Some(name) {
        return Ok(());
    }
    let granted = p.entry.capabilities.contains(&Capability::Secrets)
        && p.entry
            .secrets
            .as_ref()
            .is_none_or(|names| names.contains(name));
    if granted {
        Ok(())
    } else {
        Err(format!(
            "named the credential `{name}`, a secret it is not granted (`secrets` capability \
             and the entry's `secrets` list)"
        ))
    }
}

/// Bytes of text in a message (what a verdict can make the host keep and pass on).
fn message_bytes(m: &w::Message) -> usize {
    m.content
        .iter()
        .map(|p| match p {
            w::ContentPart::Text(t) | w::ContentPart::Image(t) | w::ContentPart::Other(t) => {
                t.len()
            }
            w::ContentPart::ToolUse(u) => u.id.len() + u.name.len() + u.arguments.len(),
            w::ContentPart::ToolOutput(o) => o.tool_use_id.len() + o.content.len(),
        })
        .sum()
}

/// Bytes of text in a request.
fn request_bytes(r: &w::LlmRequest) -> usize {
    r.model.len()
        + r.extra.len()
        + r.messages.iter().map(message_bytes).sum::<usize>()
        + r.tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.parameters.len())
            .sum::<usize>()
}

/// A verdict may add at most the policy's `verdict-kib` to what it answers with or rewrites
/// (`now` bytes where there were `before`), so a policy cannot make the host keep, parse and
/// pass on tens of megabytes. Checked before anything is parsed.
fn within_verdict_limit(p: &LoadedPolicy, now: usize, before: usize) -> Result<(), String> {
    let limit = usize::try_from(p.entry.verdict_kib.saturating_mul(1024)).unwrap_or(usize::MAX);
    let added = now.saturating_sub(before);
    if added > limit {
        return Err(format!(
            "its verdict adds {} KiB, more than its limit of {} KiB (`verdict-kib`)",
            added.div_ceil(1024),
            p.entry.verdict_kib
        ));
    }
    Ok(())
}

/// Check that `text` is JSON without building it in memory (a value tree takes many times the
/// text's size).
fn json_text(text: &str, what: &str) -> Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(drop)
        .map_err(|_| format!("{what} with a value that is not JSON"))
}

/// Environment variables a policy asks to set must be settable.
fn validate_env(env: &[(String, String)]) -> Result<(), String> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(format!(
                "asked to set an invalid environment variable name {k:?}"
            ));
        }
        if v.contains('\0') {
            return Err(format!(
                "asked to set environment variable `{k}` to a value with a NUL byte"
            ));
        }
    }
    Ok(())
}

impl<T> ChainRun<Outcome<T>> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> ChainRun<Outcome<U>> {
        ChainRun {
            outcome: self.outcome.map_value(f),
            policies: self.policies,
            latency_ns: self.latency_ns,
            generation: self.generation,
        }
    }
}

impl<T> Outcome<T> {
    fn map_value<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Continue { value } => Outcome::Continue { value: f(value) },
            Outcome::Deny { policy, denial } => Outcome::Deny { policy, denial },
            Outcome::Respond { policy, response } => Outcome::Respond { policy, response },
            Outcome::Fallback { policy, result } => Outcome::Fallback { policy, result },
        }
    }
}

fn active(state: &ChainState, hook: Hook) -> impl Iterator<Item = &Member> {
    state
        .members
        .iter()
        .filter(move |m| m.enabled && m.policy.implements(hook))
}

fn finish<T>(
    outcome: Outcome<T>,
    policies: Vec<PolicyReport>,
    started: Instant,
    state: &ChainState,
) -> ChainRun<Outcome<T>> {
    ChainRun {
        outcome,
        policies,
        latency_ns: started.elapsed().as_nanos() as u64,
        generation: state.generation,
    }
}

/// Convert a raw verdict into a step; a verdict the host cannot accept becomes a failure.
fn map_output<V, W>(
    out: CallOutput<V>,
    f: impl FnOnce(V) -> Result<Step<W>, String>,
) -> CallOutput<Step<W>> {
    CallOutput {
        result: out.result.and_then(|v| {
            f(v).map_err(|message| PolicyFailure {
                kind: FailureKind::BadVerdict,
                message,
            })
        }),
        events: out.events,
        latency: out.latency,
    }
}

enum Applied<W> {
    /// Go on; `Some` carries an applied rewrite.
    Continue(Option<W>),
    /// Stop the chain with this outcome (its value is filled by the caller).
    Stop(Outcome<()>),
}

/// Text a verdict passes on, which must not carry a secret the policy read (see
/// [`SeenSecrets`]). Start effects are exempt: setting a secret in the agent's environment is
/// what `on-agent-start` is for.
trait Scrub {
    fn scrub(&mut self, seen: &SeenSecrets);
}

fn scrub_message(m: &mut w::Message, seen: &SeenSecrets) {
    for part in &mut m.content {
        match part {
            w::ContentPart::Text(t) | w::ContentPart::Other(t) => seen.scrub(t),
            w::ContentPart::ToolUse(u) => seen.scrub(&mut u.arguments),
            w::ContentPart::ToolOutput(o) => seen.scrub(&mut o.content),
            w::ContentPart::Image(_) => {}
        }
    }
}

impl Scrub for w::LlmRequest {
    fn scrub(&mut self, seen: &SeenSecrets) {
        self.messages
            .iter_mut()
            .for_each(|m| scrub_message(m, seen));
        seen.scrub(&mut self.extra);
    }
}

impl Scrub for w::LlmResponse {
    fn scrub(&mut self, seen: &SeenSecrets) {
        scrub_message(&mut self.message, seen);
    }
}

impl Scrub for w::LlmOutcome {
    fn scrub(&mut self, seen: &SeenSecrets) {
        if let w::LlmOutcome::Ok(r) = self {
            r.scrub(seen);
        }
    }
}

impl Scrub for w::ToolCall {
    fn scrub(&mut self, seen: &SeenSecrets) {
        seen.scrub(&mut self.arguments);
    }
}

impl Scrub for w::ToolOutcome {
    fn scrub(&mut self, seen: &SeenSecrets) {
        match self {
            w::ToolOutcome::Ok(json) => seen.scrub(json),
            w::ToolOutcome::Error(e) => seen.scrub(&mut e.message),
        }
    }
}

impl Scrub for w::ChunkRelease {
    fn scrub(&mut self, seen: &SeenSecrets) {
        seen.scrub(&mut self.emit);
        seen.scrub(&mut self.hold);
    }
}

impl Scrub for w::StartEffects {
    fn scrub(&mut self, _seen: &SeenSecrets) {}
}

/// Apply one policy's answer under its failure mode and record the report.
fn apply<W: Scrub>(
    p: &LoadedPolicy,
    out: CallOutput<Step<W>>,
    reports: &mut Vec<PolicyReport>,
    rewrite_kind: VerdictKind,
    record_only: bool,
) -> Applied<W> {
    // Recording only is what monitor mode does, whatever the policy's own mode.
    let mode = if record_only {
        FailureMode::Monitor
    } else {
        p.entry.failure_mode
    };
    let enforce = mode != FailureMode::Monitor;
    let mut report = PolicyReport {
        policy: p.name.clone(),
        version: p.info.version.clone(),
        verdict: VerdictKind::Pass,
        enforced: enforce,
        latency_ns: out.latency.as_nanos() as u64,
        denial: None,
        failure: None,
        events: out.events,
    };
    let mut result = out.result;
    let seen = p.seen_secrets();
    if seen.any() {
        match &mut result {
            Ok(Step::Rewrite(v)) => v.scrub(seen),
            Ok(Step::Deny(d)) => {
                seen.scrub(&mut d.code);
                seen.scrub(&mut d.message);
            }
            Ok(Step::Respond(r)) => r.scrub(seen),
            Ok(Step::Fallback(json)) => seen.scrub(json),
            Ok(Step::Pass) | Err(_) => {}
        }
    }
    let applied = match result {
        Err(failure) => {
            report.verdict = VerdictKind::Failed;
            let applied = if mode == FailureMode::FailClosed {
                p.count_denial();
                Applied::Stop(Outcome::Deny {
                    policy: p.name.clone(),
                    // The details (which may quote the policy's own output) stay in the report
                    // and the log; the agent gets the kind of failure only.
                    denial: Denial {
                        code: POLICY_FAILED.to_owned(),
                        message: format!(
                            "policy `{}` failed: {}",
                            p.name,
                            failure.kind.describe(p)
                        ),
                        retry_after_ms: None,
                    },
                })
            } else {
                report.enforced = false;
                Applied::Continue(None)
            };
            report.failure = Some(failure);
            applied
        }
        Ok(Step::Pass) => Applied::Continue(None),
        Ok(Step::Rewrite(v)) => {
            report.verdict = rewrite_kind;
            if enforce {
                Applied::Continue(Some(v))
            } else {
                Applied::Continue(None)
            }
        }
        Ok(Step::Deny(d)) => {
            report.verdict = VerdictKind::Deny;
            let denial: Denial = d.into();
            report.denial = Some(denial.clone());
            if enforce {
                p.count_denial();
                Applied::Stop(Outcome::Deny {
                    policy: p.name.clone(),
                    denial,
                })
            } else {
                Applied::Continue(None)
            }
        }
        Ok(Step::Respond(r)) => {
            report.verdict = VerdictKind::Respond;
            if enforce {
                Applied::Stop(Outcome::Respond {
                    policy: p.name.clone(),
                    response: r.into(),
                })
            } else {
                Applied::Continue(None)
            }
        }
        Ok(Step::Fallback(result)) => {
            report.verdict = VerdictKind::Fallback;
            if enforce {
                Applied::Stop(Outcome::Fallback {
                    policy: p.name.clone(),
                    result,
                })
            } else {
                Applied::Continue(None)
            }
        }
    };
    reports.push(report);
    applied
}

#[derive(Debug, Clone, Default)]
struct Held {
    text: String,
    emitted_chars: u64,
}

/// One streamed answer going through the chain; see [`Chain::stream`].
pub struct ChainStream {
    state: Arc<ChainState>,
    ctx: CallContext,
    wctx: w::CallContext,
    held: Vec<Held>,
    done: bool,
}

impl std::fmt::Debug for ChainStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainStream")
            .field("generation", &self.state.generation)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ChainStream {
    /// Pass one chunk through every policy; the outcome's value is the text to send on now.
    /// After the last chunk (or a denial) the stream is finished and further chunks are denied.
    pub fn push(&mut self, chunk: LlmChunk) -> ChainRun<Outcome<String>> {
        let started = Instant::now();
        let mut reports = Vec::new();
        if self.done {
            return finish(
                Outcome::Deny {
                    policy: String::new(),
                    denial: Denial {
                        code: "stream_finished".to_owned(),
                        message: "the stream already ended or was denied".to_owned(),
                        retry_after_ms: None,
                    },
                },
                reports,
                started,
                &self.state,
            );
        }
        let last = chunk.last;
        let mut text = chunk.text.clone();
        let template: w::LlmChunk = LlmChunk {
            text: String::new(),
            ..chunk
        }
        .into();
        let tgt = target(&self.ctx);
        for (i, m) in self.state.members.iter().enumerate() {
            if !(m.enabled && m.policy.implements(Hook::LlmChunk)) {
                continue;
            }
            let p = &m.policy;
            let held = &mut self.held[i];
            let wstate = w::StreamState {
                held: held.text.clone(),
                emitted_chars: held.emitted_chars,
            };
            let wchunk = w::LlmChunk {
                text: text.clone(),
                ..template.clone()
            };
            let out = p.call(tgt, "on-llm-chunk", |h, s| {
                h.call_on_llm_chunk(s, &self.wctx, &wstate, &wchunk)
            });
            let out = map_output(out, |v| match v {
                w::ChunkVerdict::Pass => Ok(Step::Pass),
                w::ChunkVerdict::Release(r) if r.hold.len() > MAX_HELD_BYTES => Err(format!(
                    "held back {} bytes of the stream; the limit is {MAX_HELD_BYTES}",
                    r.hold.len()
                )),
                w::ChunkVerdict::Release(r) => within_verdict_limit(
                    p,
                    r.emit.len() + r.hold.len(),
                    held.text.len() + text.len(),
                )
                .map(|()| Step::Rewrite(r)),
                w::ChunkVerdict::Deny(d) => Ok(Step::Deny(d)),
            });
            let mut out = out;
            if let Ok(Step::Rewrite(r)) = &mut out.result {
                r.scrub(p.seen_secrets());
            }
            let enforce = p.entry.failure_mode != FailureMode::Monitor;
            // What the policy itself sees as released and held, enforced or not.
            let (mut released, mut still_held) = match &out.result {
                Ok(Step::Rewrite(r)) => (r.emit.clone(), r.hold.clone()),
                _ => (std::mem::take(&mut held.text) + &text, String::new()),
            };
            if last {
                released.push_str(&std::mem::take(&mut still_held));
            }
            match apply(p, out, &mut reports, VerdictKind::Release, false) {
                Applied::Stop(outcome) => {
                    self.done = true;
                    return finish(
                        outcome.map_value(|_| String::new()),
                        reports,
                        started,
                        &self.state,
                    );
                }
                Applied::Continue(_) => {
                    held.emitted_chars += released.chars().count() as u64;
                    held.text = still_held;
                    // Monitor mode records but never changes the text.
                    if enforce {
                        text = released;
                    }
                }
            }
        }
        if last {
            self.done = true;
        }
        finish(
            Outcome::Continue { value: text },
            reports,
            started,
            &self.state,
        )
    }
}
