//! Admission: every check a policy passes before it serves a call.
//!
//! 1. the file is a WebAssembly component (not a core module, not truncated);
//! 2. it exports `ironhost:policy/hooks` of a WIT version this host supports;
//! 3. it imports nothing outside the sandbox, and no capability its bundle entry does not grant;
//! 4. it links and instantiates; `describe` answers with a valid name and version;
//! 5. `validate-config` accepts the bundle's `config` table;
//! 6. a probe call of each hook it implements, on sample input, returns without failing.
//!
//! Admission is all-or-nothing for a bundle: one refused policy refuses the bundle, and the
//! chain in use is left as it was.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::bindings::wit::types as w;
use super::bundle::{Bundle, PolicyEntry, validate_name};
use super::chain::Chain;
use super::engine::PolicyEngine;
use super::inspect::{self, InspectError};
use super::instance::{CallTarget, LoadedPolicy, PolicyFailure};
use super::state::{MemoryState, StateBackend};
use crate::model::{Capability, Hook, MAX_POLICY_TEXT, PolicyInfo, plain_text};

/// A policy that passed admission.
pub type AdmittedPolicy = Arc<LoadedPolicy>;

/// Why a policy was refused. Every message names the component file.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("builtin:{name}: no such built-in component (built in: {known})")]
    UnknownBuiltin { name: String, known: String },
    #[error("{}: cannot read component: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Inspect { path: PathBuf, source: InspectError },
    #[error("{}: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error(
        "{}: imports the `{}` capability, which its bundle entry does not grant (granted: {})",
        path.display(), capability, fmt_caps(granted)
    )]
    NotGranted {
        path: PathBuf,
        capability: Capability,
        granted: BTreeSet<Capability>,
    },
    #[error("{}: cannot link: {message}", path.display())]
    Link { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Describe { path: PathBuf, message: String },
    #[error("{}: policy `{policy}` rejected its config: {message}", path.display())]
    Config {
        path: PathBuf,
        policy: String,
        message: String,
    },
    #[error("{}: probe call of {hook} failed: {failure}", path.display())]
    Probe {
        path: PathBuf,
        hook: Hook,
        failure: PolicyFailure,
    },
    #[error("{}: policy name `{name}` is already used by another policy of the bundle", path.display())]
    DuplicateName { path: PathBuf, name: String },
}

fn fmt_caps(caps: &BTreeSet<Capability>) -> String {
    if caps.is_empty() {
        "none".to_owned()
    } else {
        caps.iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The bytes of an entry's component: built into ironhost, or read from its file.
pub fn component_bytes(
    entry: &PolicyEntry,
) -> Result<std::borrow::Cow<'static, [u8]>, AdmissionError> {
    if let Some(name) = entry.builtin_name() {
        let bytes =
            super::defaults::builtin(name).ok_or_else(|| AdmissionError::UnknownBuiltin {
                name: name.to_owned(),
                known: super::defaults::builtin_names()
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let path = entry.component.clone();
    std::fs::read(&path)
        .map(std::borrow::Cow::Owned)
        .map_err(|source| AdmissionError::Read { path, source })
}

/// Admit one policy.
pub fn admit_policy(
    engine: &PolicyEngine,
    entry: &PolicyEntry,
) -> Result<AdmittedPolicy, AdmissionError> {
    let bytes = component_bytes(entry)?;
    admit_bytes(engine, entry, &bytes).map(Arc::new)
}

/// The name a component gives itself (its `describe`), without admitting it: for a bundle
/// entry that names no policy. Every interface it imports is granted for the question.
pub fn own_name(
    engine: &PolicyEngine,
    path: &Path,
    bytes: &[u8],
) -> Result<String, AdmissionError> {
    let (component, summary) = load_component(engine, path, bytes)?;
    let mut entry = PolicyEntry::for_component(path.to_path_buf());
    entry.capabilities = summary.capabilities.iter().copied().collect();
    let policy = LoadedPolicy::link(
        engine,
        &component,
        entry,
        summary,
        String::new(),
        "unnamed".to_owned(),
    )
    .map_err(|message| AdmissionError::Link {
        path: path.to_path_buf(),
        message,
    })?;
    let scratch: Arc<dyn StateBackend> = Arc::new(MemoryState::default());
    Ok(describe(&policy, probe_target(&scratch), path)?.name)
}

/// How admission calls a component: for a probe agent, on `scratch` state, under the
/// admission deadline.
fn probe_target(scratch: &Arc<dyn StateBackend>) -> CallTarget<'_> {
    CallTarget {
        agent_id: Some(PROBE_AGENT),
        environment: "dev",
        state_override: Some(scratch),
        admission: true,
    }
}

/// What a linked component says of itself (`describe`).
fn describe(
    policy: &LoadedPolicy,
    target: CallTarget<'_>,
    path: &Path,
) -> Result<PolicyInfo, AdmissionError> {
    Ok(policy
        .call(target, "describe", |h, s| h.call_describe(s))
        .result
        .map_err(|f| AdmissionError::Describe {
            path: path.to_path_buf(),
            message: f.message,
        })?
        .into())
}

/// Admit every policy of a bundle, in order, and build a chain of them.
pub fn admit_bundle(engine: &PolicyEngine, bundle: &Bundle) -> Result<Chain, AdmissionError> {
    let mut names = BTreeSet::new();
    let mut policies = Vec::with_capacity(bundle.policies.len());
    for entry in &bundle.policies {
        let policy = admit_policy(engine, entry)?;
        if !names.insert(policy.name.clone()) {
            return Err(AdmissionError::DuplicateName {
                path: entry.component.clone(),
                name: policy.name.clone(),
            });
        }
        policies.push(policy);
    }
    Ok(Chain::new(bundle.name.clone(), policies))
}

/// Admit a component given as bytes; `entry.component` is used for messages only.
pub fn admit_bytes(
    engine: &PolicyEngine,
    entry: &PolicyEntry,
    bytes: &[u8],
) -> Result<LoadedPolicy, AdmissionError> {
    let path = entry.component.as_path();
    let (component, summary) = load_component(engine, path, bytes)?;
    inspect::check_policy_surface(&summary).map_err(|source| AdmissionError::Inspect {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(capability) = summary
        .capabilities
        .iter()
        .find(|c| !entry.capabilities.contains(c))
    {
        return Err(AdmissionError::NotGranted {
            path: path.to_path_buf(),
            capability: *capability,
            granted: entry.capabilities.clone(),
        });
    }

    let sha256 = hex::encode(Sha256::digest(bytes));
    let provisional = entry.name.clone().unwrap_or_else(|| "unnamed".to_owned());
    let mut policy = LoadedPolicy::link(
        engine,
        &component,
        entry.clone(),
        summary,
        sha256,
        provisional,
    )
    .map_err(|message| AdmissionError::Link {
        path: path.to_path_buf(),
        message,
    })?;

    let scratch: Arc<dyn StateBackend> = Arc::new(MemoryState::default());
    let probe_target = probe_target(&scratch);
    let info = describe(&policy, probe_target, path)?;
    validate_name(&info.name).map_err(|message| AdmissionError::Describe {
        path: path.to_path_buf(),
        message: format!("describe: the component's own name: {message}"),
    })?;
    if info.version.trim().is_empty() {
        return Err(AdmissionError::Describe {
            path: path.to_path_buf(),
            message: "describe: the component reports an empty version".to_owned(),
        });
    }
    let name = entry.name.clone().unwrap_or_else(|| info.name.clone());
    policy.set_identity(name.clone(), info);

    let config = entry.config.to_string();
    let verdict = policy
        .call(probe_target, "validate-config", |h, s| {
            h.call_validate_config(s, &config)
        })
        .result
        .map_err(|f| AdmissionError::Config {
            path: path.to_path_buf(),
            policy: name.clone(),
            message: f.message,
        })?;
    if let Err(message) = verdict {
        return Err(AdmissionError::Config {
            path: path.to_path_buf(),
            policy: name,
            message: plain_text(&message, MAX_POLICY_TEXT),
        });
    }

    probe(&policy, probe_target).map_err(|(hook, failure)| AdmissionError::Probe {
        path: path.to_path_buf(),
        hook,
        failure,
    })?;
    // Admission calls are not traffic.
    policy.stats = Default::default();
    Ok(policy)
}

/// Read, check and compile a component; shared with `ironhost policy check`.
pub fn load_component(
    engine: &PolicyEngine,
    path: &Path,
    bytes: &[u8],
) -> Result<(wasmtime::component::Component, inspect::ComponentSummary), AdmissionError> {
    let inspect_err = |source| AdmissionError::Inspect {
        path: path.to_path_buf(),
        source,
    };
    // A precompiled copy exists only for bytes that were validated before, so the header and
    // validation pass is needed only when compiling.
    inspect::check_binary(bytes).map_err(inspect_err)?;
    let (component, _) = engine.compile(bytes).map_err(|e| AdmissionError::Compile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut summary = inspect::summarize(engine.engine(), &component);
    summary.sdk = inspect::sdk_stamp(bytes);
    Ok((component, summary))
}

/// Agent id the admission probe runs as.
pub const PROBE_AGENT: &str = "ironhost-probe";

fn probe(policy: &LoadedPolicy, target: CallTarget<'_>) -> Result<(), (Hook, PolicyFailure)> {
    let ctx = w::CallContext {
        agent_id: PROBE_AGENT.to_owned(),
        call_id: "probe-1".to_owned(),
        environment: "dev".to_owned(),
        attempt: 0,
    };
    let request = w::LlmRequest {
        provider: "openai".to_owned(),
        model: "gpt-4o-mini".to_owned(),
        messages: vec![
            w::Message {
                role: w::Role::System,
                content: vec![w::ContentPart::Text(
                    "You are a helpful assistant.".to_owned(),
                )],
            },
            w::Message {
                role: w::Role::User,
                content: vec![w::ContentPart::Text("Say hello.".to_owned())],
            },
        ],
        tools: Vec::new(),
        max_output_tokens: Some(16),
        temperature: None,
        stream: false,
        extra: "{}".to_owned(),
        credential: None,
    };
    let response = w::LlmResponse {
        id: "probe-response".to_owned(),
        model: "gpt-4o-mini".to_owned(),
        message: w::Message {
            role: w::Role::Assistant,
            content: vec![w::ContentPart::Text("Hello!".to_owned())],
        },
        finish_reason: "stop".to_owned(),
        usage: Some(w::Usage {
            input_tokens: 20,
            output_tokens: 2,
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
        }),
    };
    let tool = w::ToolCall {
        id: "probe-tool-1".to_owned(),
        name: "search".to_owned(),
        arguments: r#"{"query":"hello"}"#.to_owned(),
    };
    let check = |hook: Hook, r: Result<(), PolicyFailure>| r.map_err(|f| (hook, f));
    for hook in policy.info.hooks.clone() {
        let result = match hook {
            Hook::AgentStart => {
                let agent = w::AgentInfo {
                    agent_id: PROBE_AGENT.to_owned(),
                    name: "probe".to_owned(),
                    environment: "dev".to_owned(),
                };
                policy
                    .call(target, "on-agent-start", |h, s| {
                        h.call_on_agent_start(s, &agent)
                    })
                    .result
                    .map(drop)
            }
            Hook::LlmRequest => policy
                .call(target, "on-llm-request", |h, s| {
                    h.call_on_llm_request(s, &ctx, &request)
                })
                .result
                .map(drop),
            Hook::LlmResponse => {
                let outcome = w::LlmOutcome::Ok(response.clone());
                policy
                    .call(target, "on-llm-response", |h, s| {
                        h.call_on_llm_response(s, &ctx, &request, &outcome)
                    })
                    .result
                    .map(drop)
            }
            Hook::LlmChunk => {
                let state = w::StreamState {
                    held: String::new(),
                    emitted_chars: 0,
                };
                let chunk = w::LlmChunk {
                    index: 0,
                    text: "Hello!".to_owned(),
                    finish_reason: Some("stop".to_owned()),
                    usage: None,
                    last: true,
                };
                policy
                    .call(target, "on-llm-chunk", |h, s| {
                        h.call_on_llm_chunk(s, &ctx, &state, &chunk)
                    })
                    .result
                    .map(drop)
            }
            Hook::LlmAbandoned => {
                let abandonment = w::Abandonment {
                    reason: w::Denial {
                        code: "probe".to_owned(),
                        message: "admission probe".to_owned(),
                        retry_after_ms: None,
                    },
                    by_policy: None,
                    usage: None,
                };
                policy
                    .call(target, Hook::LlmAbandoned.function_name(), |h, s| {
                        h.call_on_llm_abandoned(s, &ctx, &request, &abandonment)
                    })
                    .result
            }
            Hook::ToolCall => policy
                .call(target, "on-tool-call", |h, s| {
                    h.call_on_tool_call(s, &ctx, &tool)
                })
                .result
                .map(drop),
            Hook::ToolResult => {
                let outcome = w::ToolOutcome::Ok(r#"{"results":[]}"#.to_owned());
                policy
                    .call(target, "on-tool-result", |h, s| {
                        h.call_on_tool_result(s, &ctx, &tool, &outcome)
                    })
                    .result
                    .map(drop)
            }
        };
        check(hook, result)?;
    }
    Ok(())
}
