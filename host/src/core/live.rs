//! The chain a process runs ([`LiveChain`]), and applying a budget limit to it: the `budget`
//! policy is admitted again with the new `limit-usd` and swapped into the chain (spend lives in
//! policy state, so it carries over). Used by the `limits` routes and by the agent's SIGUSR1
//! reload.

use std::sync::Arc;

use super::running::BundleRun;
use crate::events::EventBus;
use crate::events::EventKind;
use crate::gateway::Gateway;
use crate::model::Severity;
use crate::policy::admission::admit_policy;
use crate::policy::chain::Chain;
use crate::policy::engine::PolicyEngine;
use crate::policy::instance::LoadedPolicy;
use crate::store::{Store, StoreError};

/// The policy chain this process runs, and what is needed to admit new policies into it.
#[derive(Debug, Clone)]
pub struct LiveChain {
    pub chain: Arc<Chain>,
    pub engine: PolicyEngine,
    /// The agent running in this process, if any.
    pub agent_id: Option<String>,
    /// Its gateway (to show a changed budget in its figures).
    pub gateway: Option<Arc<Gateway>>,
    /// The agent was started with `--budget` (or `budget` in the config): the global limit
    /// does not override it, its own limit does.
    pub explicit_budget: bool,
    /// The bus of this process: API changes are announced on it.
    pub bus: EventBus,
    /// The bundle revision the chain runs, and this process's overrides on it.
    pub bundle: Arc<BundleRun>,
}

impl LiveChain {
    /// The live chain of a process that runs no agent (yet): set `agent_id`, `gateway` and
    /// `explicit_budget` for one that does.
    pub fn new(
        chain: Arc<Chain>,
        engine: PolicyEngine,
        bus: EventBus,
        bundle: Arc<BundleRun>,
    ) -> LiveChain {
        LiveChain {
            chain,
            engine,
            agent_id: None,
            gateway: None,
            explicit_budget: false,
            bus,
            bundle,
        }
    }
}

/// The name of the policy a limit configures.
pub const BUDGET_POLICY: &str = "budget";

/// A `budget` policy admitted with a new limit, not yet in the chain.
#[derive(Debug)]
pub struct Prepared {
    policy: Arc<LoadedPolicy>,
    limit_usd: f64,
}

/// Admit the chain's `budget` policy again with `limit_usd` and `warn_at`. `Ok(None)` if the
/// chain has no budget policy.
pub async fn prepare_limit(
    live: &LiveChain,
    limit_usd: f64,
    warn_at: f64,
) -> Result<Option<Prepared>, String> {
    let snap = live.chain.snapshot();
    let Some(member) = snap.members.iter().find(|m| m.policy.name == BUDGET_POLICY) else {
        return Ok(None);
    };
    let mut entry = member.policy.entry.clone();
    entry.name = Some(BUDGET_POLICY.to_owned());
    if let Some(o) = entry.config.as_object_mut() {
        o.insert("limit-usd".into(), limit_usd.into());
        o.insert("warning-threshold".into(), warn_at.into());
    }
    let engine = live.engine.clone();
    let policy = tokio::task::spawn_blocking(move || admit_policy(&engine, &entry))
        .await
        .map_err(|e| format!("admission: {e}"))?
        .map_err(|e| e.to_string())?;
    Ok(Some(Prepared { policy, limit_usd }))
}

/// Swap the prepared policy in; the agent's figures, its store row and the event stream follow.
pub async fn commit_limit(live: &LiveChain, store: &Store, prepared: Prepared, actor: &str) {
    let generation = live.chain.upsert_policy(prepared.policy);
    let usd = prepared.limit_usd;
    // Later revisions of the bundle run with it too.
    live.bundle.overrides.lock().budget = Some(usd);
    if let Some(gateway) = &live.gateway {
        gateway.set_budget_usd(Some(usd));
    }
    let agent = live.agent_id.clone().unwrap_or_default();
    if let Err(e) = store.set_agent_budget(&agent, usd).await {
        tracing::warn!("cannot record the new budget of {agent}: {e}");
    }
    live.bus.publish(
        &agent,
        Severity::Info,
        EventKind::PolicyChanged {
            action: format!("limit set to ${usd:.2}"),
            policy: BUDGET_POLICY.to_owned(),
            actor: actor.to_owned(),
            generation,
            revision: None,
        },
    );
    tracing::info!("budget limit set to ${usd:.2} by {actor}");
}

/// Whether a limit for `scope` (an agent id, or `None` for the global limit) governs the agent
/// of `live`: its own always; the global one only if the agent has no own limit and did not
/// start with an explicit `--budget`.
pub async fn governs(
    live: &LiveChain,
    store: &Store,
    scope: Option<&str>,
) -> Result<bool, StoreError> {
    let Some(agent) = &live.agent_id else {
        return Ok(false);
    };
    Ok(match scope {
        Some(a) => a == agent,
        None => {
            !live.explicit_budget
                && store
                    .limit_for(agent)
                    .await?
                    .is_none_or(|l| l.agent_id.is_none())
        }
    })
}

/// Apply the limit the store holds for the agent of `live` now, if it [`governs`] it and
/// differs from the running one. For the SIGUSR1 reload.
pub async fn reload_limit(live: &LiveChain, store: &Store) -> Result<(), String> {
    let Some(agent) = &live.agent_id else {
        return Ok(());
    };
    let Some(limit) = store.limit_for(agent).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    if !governs(live, store, limit.agent_id.as_deref())
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let running = live.gateway.as_ref().and_then(|g| g.budget_usd());
    if running == Some(limit.limit_usd) {
        return Ok(());
    }
    if let Some(p) = prepare_limit(live, limit.limit_usd, limit.warn_at).await? {
        commit_limit(live, store, p, "SIGUSR1").await;
    }
    Ok(())
}
