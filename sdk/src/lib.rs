//! Write ironhost policy components in Rust.
//!
//! A policy is a type that implements [`Policy`]; [`export_policy!`] turns it into the
//! `ironhost:policy/hooks` export of a WebAssembly component. Build it with plain
//! `cargo build --release --target wasm32-wasip2` (crate type `cdylib`).
//!
//! ```no_run
//! use ironhost_policy::{Policy, types::*};
//!
//! struct DenyDelete;
//!
//! impl Policy for DenyDelete {
//!     fn describe() -> PolicyInfo {
//!         ironhost_policy::info("deny-delete", env!("CARGO_PKG_VERSION"), "Refuses the delete tool")
//!             .hooks(&[Hook::ToolCall])
//!             .build()
//!     }
//!
//!     fn on_tool_call(_ctx: CallContext, call: ToolCall) -> ToolVerdict {
//!         if call.name == "delete" {
//!             let denial = ironhost_policy::deny("tool_forbidden", "the delete tool is not allowed");
//!             return ToolVerdict::Deny(denial);
//!         }
//!         ToolVerdict::Pass
//!     }
//! }
//!
//! ironhost_policy::export_policy!(DenyDelete);
//! ```

extern crate self as ironhost_policy;

pub mod config;
pub mod events;
pub mod log;
pub mod secrets;
pub mod state;
pub mod text;
pub mod tokens;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The WIT package version this SDK was built against.
pub const WIT_VERSION: &str = "0.1.0";

/// The stamp [`export_policy!`] puts into every component, in a custom section named
/// `ironhost-policy-sdk`: which SDK and WIT version built it (`ironhost policy check` shows it).
pub const STAMP: &str = concat!(
    "ironhost-policy ",
    env!("CARGO_PKG_VERSION"),
    "; ironhost:policy@0.1.0"
);

#[doc(hidden)]
pub const __STAMP_BYTES: [u8; STAMP.len()] = {
    let mut out = [0u8; STAMP.len()];
    let bytes = STAMP.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
};

/// Generated bindings for the `ironhost:policy` world. Policy authors normally use [`types`]
/// and the capability modules re-exported below instead.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "policy",
        pub_export_macro: true,
        default_bindings_module: "ironhost_policy::bindings",
        runtime_path: "ironhost_policy::__wit_bindgen::rt",
    });
}

/// The values exchanged with the host (`ironhost:policy/types`).
pub mod types {
    pub use crate::bindings::ironhost::policy::types::*;
}

/// The raw host capabilities, as generated. Prefer the typed modules ([`state`], [`config`],
/// [`events`], [`tokens`], [`secrets`], [`log`]); each import must be granted in `bundle.toml`.
pub mod host {
    pub use crate::bindings::ironhost::policy::{
        clock, config, events, log, secrets, state, tokens,
    };
}

use types::*;

/// A policy: implement the hooks you need; every other hook passes the call through.
///
/// List the hooks you implement in [`PolicyInfo::hooks`]: the host only calls those.
pub trait Policy {
    /// Name, version, hooks and wanted capabilities. Called once at admission.
    fn describe() -> PolicyInfo;

    /// Check the bundle's `config` table (a JSON object text) before the policy goes live.
    fn validate_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    /// An agent is about to start.
    fn on_agent_start(_agent: AgentInfo) -> StartVerdict {
        StartVerdict::Pass
    }

    /// An LLM request is about to leave the host.
    fn on_llm_request(_ctx: CallContext, _request: LlmRequest) -> RequestVerdict {
        RequestVerdict::Pass
    }

    /// An LLM call finished or failed. Also called once after a streamed answer ends, with the
    /// answer assembled from the chunks (`request.stream` is true); that answer has already
    /// reached the agent, so verdicts on it are recorded but not applied.
    fn on_llm_response(
        _ctx: CallContext,
        _request: LlmRequest,
        _outcome: LlmOutcome,
    ) -> ResponseVerdict {
        ResponseVerdict::Pass
    }

    /// A piece of a streamed answer arrived.
    fn on_llm_chunk(_ctx: CallContext, _state: StreamState, _chunk: LlmChunk) -> ChunkVerdict {
        ChunkVerdict::Pass
    }

    /// A call whose request this policy passed ended without `on_llm_response` (a later
    /// policy denied or answered it, or the agent gave up): release what the request reserved.
    fn on_llm_abandoned(_ctx: CallContext, _request: LlmRequest, _abandonment: Abandonment) {}

    /// A tool function is about to run.
    fn on_tool_call(_ctx: CallContext, _call: ToolCall) -> ToolVerdict {
        ToolVerdict::Pass
    }

    /// A tool function finished or failed.
    fn on_tool_result(_ctx: CallContext, _call: ToolCall, _outcome: ToolOutcome) -> ResultVerdict {
        ResultVerdict::Pass
    }
}

/// Start a [`PolicyInfo`] with no hooks and no capabilities.
pub fn info(name: &str, version: &str, description: &str) -> InfoBuilder {
    InfoBuilder(PolicyInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        description: description.to_owned(),
        hooks: Vec::new(),
        capabilities: Vec::new(),
    })
}

/// Builds a [`PolicyInfo`]; see [`info`].
#[derive(Debug)]
pub struct InfoBuilder(PolicyInfo);

impl InfoBuilder {
    /// The hooks the policy implements.
    pub fn hooks(mut self, hooks: &[Hook]) -> Self {
        self.0.hooks = hooks.to_vec();
        self
    }

    /// The capabilities the policy wants granted.
    pub fn capabilities(mut self, capabilities: &[Capability]) -> Self {
        self.0.capabilities = capabilities.to_vec();
        self
    }

    /// The finished description.
    pub fn build(self) -> PolicyInfo {
        self.0
    }
}

/// A [`Denial`] with a code and a message.
pub fn deny(code: &str, message: &str) -> Denial {
    Denial {
        code: code.to_owned(),
        message: message.to_owned(),
        retry_after_ms: None,
    }
}

/// Export a [`Policy`] implementation as this component's `ironhost:policy/hooks`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        // Exports exist only in the component; a native build (unit tests) links without them,
        // but still names the policy so its type and hooks count as used.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::types::PolicyInfo = <$policy as $crate::Policy>::describe;

        #[cfg(target_arch = "wasm32")]
        #[expect(unsafe_code, reason = "generated canonical-ABI exports")]
        const _: () = {
            use $crate::bindings::exports::ironhost::policy::hooks::Guest;
            use $crate::types::*;

            struct IronhostExport;

            impl Guest for IronhostExport {
                fn describe() -> PolicyInfo {
                    <$policy as $crate::Policy>::describe()
                }
                fn validate_config(config: String) -> Result<(), String> {
                    <$policy as $crate::Policy>::validate_config(config)
                }
                fn on_agent_start(agent: AgentInfo) -> StartVerdict {
                    <$policy as $crate::Policy>::on_agent_start(agent)
                }
                fn on_llm_request(ctx: CallContext, request: LlmRequest) -> RequestVerdict {
                    <$policy as $crate::Policy>::on_llm_request(ctx, request)
                }
                fn on_llm_response(
                    ctx: CallContext,
                    request: LlmRequest,
                    outcome: LlmOutcome,
                ) -> ResponseVerdict {
                    <$policy as $crate::Policy>::on_llm_response(ctx, request, outcome)
                }
                fn on_llm_chunk(
                    ctx: CallContext,
                    state: StreamState,
                    chunk: LlmChunk,
                ) -> ChunkVerdict {
                    <$policy as $crate::Policy>::on_llm_chunk(ctx, state, chunk)
                }
                fn on_llm_abandoned(
                    ctx: CallContext,
                    request: LlmRequest,
                    abandonment: Abandonment,
                ) {
                    <$policy as $crate::Policy>::on_llm_abandoned(ctx, request, abandonment)
                }
                fn on_tool_call(ctx: CallContext, call: ToolCall) -> ToolVerdict {
                    <$policy as $crate::Policy>::on_tool_call(ctx, call)
                }
                fn on_tool_result(
                    ctx: CallContext,
                    call: ToolCall,
                    outcome: ToolOutcome,
                ) -> ResultVerdict {
                    <$policy as $crate::Policy>::on_tool_result(ctx, call, outcome)
                }
            }

    $crate::bindings::export!(IronhostExport with_types_in $crate::bindings);

            #[used]
            #[unsafe(link_section = "ironhost-policy-sdk")]
            static STAMP: [u8; $crate::STAMP.len()] = $crate::__STAMP_BYTES;
        };
    };
}
