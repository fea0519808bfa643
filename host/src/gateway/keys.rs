//! Which environment variables are the upstreams' keys: the agent gets a placeholder in
//! their place ([`agent_env`]), the host keeps the values ([`host_keys`]) and adds them at
//! egress; a policy may not hand one to the agent ([`without_keys`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::llm::upstreams::Upstreams;

/// The key the host gives an agent that has none, so the SDKs construct; never sent anywhere.
pub const PLACEHOLDER_KEY: &str = "ironhost-placeholder-key";

/// The host's own variables (`IRONHOST_MASTER_KEY`, `IRONHOST_ADMIN_PASSWORD`,
/// `IRONHOST_HOME`, ...): none reaches the agent.
pub const HOST_VAR_PREFIX: &str = "IRONHOST_";

/// The agent's environment: the host's, without the host's own variables, and with a
/// placeholder in place of every upstream's key (the SDKs want one to start; the host adds the
/// real key at egress, so a request that bypassed the host carries nothing billable).
pub fn agent_env(vars: &BTreeMap<String, String>, upstreams: &Upstreams) -> Vec<(String, String)> {
    let keys: BTreeSet<&str> = upstreams.key_names().collect();
    let mut env: Vec<(String, String)> = vars
        .iter()
        .filter(|(k, _)| !k.starts_with(HOST_VAR_PREFIX) && !keys.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(
        keys.iter()
            .map(|k| ((*k).to_owned(), PLACEHOLDER_KEY.to_owned())),
    );
    env
}

/// The keys the host holds for egress from its own environment: every upstream's key
/// variable, and any other `*_API_KEY` a policy may name as a call's credential.
pub fn host_keys(
    vars: &BTreeMap<String, String>,
    upstreams: &Upstreams,
) -> BTreeMap<String, String> {
    let keys: BTreeSet<&str> = upstreams.key_names().collect();
    vars.iter()
        .filter(|(k, _)| k.ends_with("_API_KEY") || keys.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `env` without the upstreams' key variables (a policy granting the agent one, such as a
/// `secrets-inject` entry naming `OPENAI_API_KEY`): their names, for a warning.
pub fn without_keys(env: &mut Vec<(String, String)>, upstreams: &Upstreams) -> Vec<String> {
    let keys: BTreeSet<&str> = upstreams.key_names().collect();
    let mut dropped = Vec::new();
    env.retain(|(k, _)| {
        let key = keys.contains(k.as_str());
        if key {
            dropped.push(k.clone());
        }
        !key
    });
    dropped
}
