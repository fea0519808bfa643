//! The one place the `ironhost:policy` WIT worlds are turned into Rust.
//!
//! Each released WIT version gets its own module (`v0_1_0`, ...) with its generated bindings
//! and its conversions to and from the host's neutral model ([`crate::model`]). The rest of the
//! engine speaks the newest version's types ([`wit`]) and calls a component through [`Policy`],
//! which dispatches to the version the component was built against; a component of an older
//! version has its values converted from the newest types inside its own module. Adding WIT
//! 0.2 means adding `v0_2_0`, pointing [`latest`] at it, adding a variant to [`Policy`] and
//! [`PolicyPre`], and converting 0.2's types to 0.1's in `v0_1_0`: the chain does not change.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::host::PolicyCtx;

pub mod v0_1_0;

pub use latest::ironhost::policy as wit;
/// The newest WIT version: the types the engine speaks.
pub use v0_1_0 as latest;

use wit::types as w;

/// WIT versions of `ironhost:policy` this host can run, newest last.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &[v0_1_0::VERSION];

/// The WIT version new policies are built against.
pub const CURRENT_WIT_VERSION: &str = latest::VERSION;

/// Add the host's capabilities, for every supported version, to `linker`.
pub fn add_to_linker(linker: &mut Linker<PolicyCtx>) -> wasmtime::Result<()> {
    v0_1_0::Policy::add_to_linker::<PolicyCtx, HasSelf<PolicyCtx>>(linker, |ctx| ctx)
}

/// A linked component, ready to instantiate, by the WIT version it exports.
pub enum PolicyPre {
    V0_1_0(v0_1_0::PolicyPre<PolicyCtx>),
}

impl PolicyPre {
    /// Match the component's exports against the supported versions.
    pub fn new(pre: InstancePre<PolicyCtx>) -> wasmtime::Result<PolicyPre> {
        Ok(PolicyPre::V0_1_0(v0_1_0::PolicyPre::new(pre)?))
    }

    pub fn instantiate(&self, store: &mut Store<PolicyCtx>) -> wasmtime::Result<Policy> {
        match self {
            PolicyPre::V0_1_0(pre) => Ok(Policy::V0_1_0(pre.instantiate(store)?)),
        }
    }
}

/// An instantiated component's hooks, called with the newest version's types.
pub enum Policy {
    V0_1_0(v0_1_0::Policy),
}

impl Policy {
    /// The WIT version the component exports.
    pub fn version(&self) -> &'static str {
        match self {
            Policy::V0_1_0(_) => v0_1_0::VERSION,
        }
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Policy(ironhost:policy@{})", self.version())
    }
}

impl std::fmt::Debug for PolicyPre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyPre::V0_1_0(_) => write!(f, "PolicyPre(ironhost:policy@{})", v0_1_0::VERSION),
        }
    }
}

impl Policy {
    pub fn call_describe(&self, s: &mut Store<PolicyCtx>) -> wasmtime::Result<w::PolicyInfo> {
        match self {
            Policy::V0_1_0(p) => p.ironhost_policy_hooks().call_describe(s),
        }
    }

    pub fn call_validate_config(
        &self,
        s: &mut Store<PolicyCtx>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Policy::V0_1_0(p) => p.ironhost_policy_hooks().call_validate_config(s, config),
        }
    }

    pub fn call_on_agent_start(
        &self,
        s: &mut Store<PolicyCtx>,
        agent: &w::AgentInfo,
    ) -> wasmtime::Result<w::StartVerdict> {
        match self {
            Policy::V0_1_0(p) => p.ironhost_policy_hooks().call_on_agent_start(s, agent),
        }
    }

    pub fn call_on_llm_request(
        &self,
        s: &mut Store<PolicyCtx>,
        ctx: &w::CallContext,
        request: &w::LlmRequest,
    ) -> wasmtime::Result<w::RequestVerdict> {
        match self {
            Policy::V0_1_0(p) => p
                .ironhost_policy_hooks()
                .call_on_llm_request(s, ctx, request),
        }
    }

    pub fn call_on_llm_response(
        &self,
        s: &mut Store<PolicyCtx>,
        ctx: &w::CallContext,
        request: &w::LlmRequest,
        outcome: &w::LlmOutcome,
    ) -> wasmtime::Result<w::ResponseVerdict> {
        match self {
            Policy::V0_1_0(p) => p
                .ironhost_policy_hooks()
                .call_on_llm_response(s, ctx, request, outcome),
        }
    }

    pub fn call_on_llm_chunk(
        &self,
        s: &mut Store<PolicyCtx>,
        ctx: &w::CallContext,
        state: &w::StreamState,
        chunk: &w::LlmChunk,
    ) -> wasmtime::Result<w::ChunkVerdict> {
        match self {
            Policy::V0_1_0(p) => p
                .ironhost_policy_hooks()
                .call_on_llm_chunk(s, ctx, state, chunk),
        }
    }

    pub fn call_on_llm_abandoned(
        &self,
        s: &mut Store<PolicyCtx>,
        ctx: &w::CallContext,
        request: &w::LlmRequest,
        abandonment: &w::Abandonment,
    ) -> wasmtime::Result<()> {
        match self {
            Policy::V0_1_0(p) => {
                p.ironhost_policy_hooks()
                    .call_on_llm_abandoned(s, ctx, request, abandonment)
            }
        }
    }

    pub fn call_on_tool_call(
        &self,
        s: &mut Store<PolicyCtx>,
        ctx: &w::CallContext,
        call: &w::ToolCall,
    ) -> wasmtime::Result<w::ToolVerdict> {
        match self {
            Policy::V0_1_0(p) => p.ironhost_policy_hooks().call_on_tool_call(s, ctx, call),
        }
    }

    pub fn call_on_tool_result(
        &self,
        s: &mut Store<PolicyCtx>,
        ctx: &w::CallContext,
        call: &w::ToolCall,
        outcome: &w::ToolOutcome,
    ) -> wasmtime::Result<w::ResultVerdict> {
        match self {
            Policy::V0_1_0(p) => p
                .ironhost_policy_hooks()
                .call_on_tool_result(s, ctx, call, outcome),
        }
    }
}
