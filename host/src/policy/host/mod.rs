//! The host side of the `ironhost:policy` imports: one file per WIT interface, plus the
//! per-store context ([`PolicyCtx`]) they operate on.
//!
//! Capabilities are checked at admission (a component may only import what its bundle entry
//! grants), so the functions here do not check grants again on every call.

mod clock;
mod config;
mod events;
mod log;
mod secrets;
mod state;
mod tokens;

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::bindings::wit;
use super::model::{Message, Severity};
use super::sandbox::{self, StderrTail};
use super::state::{MemoryState, StateBackend};

pub use tokens::ApproxTokenMeter;

/// Largest log line kept, in bytes.
pub const MAX_LOG_BYTES: usize = 16 * 1024;
/// Most events one hook call may emit; the rest are dropped and logged.
pub const MAX_EVENTS_PER_CALL: usize = 64;

/// Counts tokens and knows model prices: the `tokens` capability.
pub trait TokenMeter: Send + Sync {
    /// Tokens `text` takes for `model`.
    fn count_text(&self, model: &str, text: &str) -> u32;
    /// Input tokens of `messages` for `model`, including per-message overhead.
    fn count_messages(&self, model: &str, messages: &[Message]) -> u32;
    /// Prices of `model` in USD per million tokens, if known.
    fn price(&self, model: &str) -> Option<Price>;
}

/// Prices of one model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: f64,
    pub cache_write_per_mtok: f64,
}

/// Resolves secrets by name: the `secrets` capability.
pub trait SecretResolver: Send + Sync {
    /// The secret `name` in `environment`, if there is one.
    fn get(&self, environment: &str, name: &str) -> Option<String>;
}

/// A resolver that knows no secrets (the host has no secret store configured).
#[derive(Debug, Default)]
pub struct NoSecrets;

impl SecretResolver for NoSecrets {
    fn get(&self, _environment: &str, _name: &str) -> Option<String> {
        None
    }
}

/// The services behind the capabilities, shared by every policy of a host.
#[derive(Clone)]
pub struct HostServices {
    pub state: Arc<dyn StateBackend>,
    pub tokens: Arc<dyn TokenMeter>,
    pub secrets: Arc<dyn SecretResolver>,
}

impl Default for HostServices {
    fn default() -> Self {
        HostServices {
            state: Arc::new(MemoryState::default()),
            tokens: Arc::new(ApproxTokenMeter),
            secrets: Arc::new(NoSecrets),
        }
    }
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices").finish_non_exhaustive()
    }
}

/// An event a policy emitted during one hook call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyEvent {
    pub policy: String,
    pub kind: String,
    pub severity: Severity,
    pub detail: serde_json::Value,
}

/// What a policy instance knows about itself; shared by all its instances.
#[derive(Debug)]
pub struct PolicyIdentity {
    /// The policy's name in the chain.
    pub name: String,
    /// The `config` table as a JSON object text.
    pub config_json: String,
    /// The secret names the policy may read (`None`: every secret).
    pub allowed_secrets: Option<std::collections::BTreeSet<String>>,
}

/// Per-call data: who the call is for and what the policy emitted.
#[derive(Default)]
pub(crate) struct CallScope {
    pub agent_id: Option<String>,
    pub environment: String,
    pub events: Vec<PolicyEvent>,
    pub dropped_events: usize,
    /// The admission probe runs against scratch state so it never touches real values.
    pub state_override: Option<Arc<dyn StateBackend>>,
}

/// Memory and table caps of one policy instance. The memory cap counts every linear memory
/// of the instance together.
pub(crate) struct Limiter {
    pub memory_cap: usize,
    pub memory_used: usize,
    pub memory_hit: bool,
}

/// Most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memory_used.saturating_sub(current)).saturating_add(desired);
        if total > self.memory_cap {
            self.memory_hit = true;
            wasmtime::bail!(
                "memory limit of {} MiB reached (asked for {} MiB in all)",
                self.memory_cap >> 20,
                total.div_ceil(1 << 20)
            );
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The data of one policy instance's wasmtime store.
pub struct PolicyCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) identity: Arc<PolicyIdentity>,
    pub(crate) services: HostServices,
    pub(crate) call: CallScope,
    pub(crate) stderr: StderrTail,
}

impl std::fmt::Debug for PolicyCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCtx")
            .field("policy", &self.identity.name)
            .finish_non_exhaustive()
    }
}

impl PolicyCtx {
    /// A fresh context with the locked-down WASI of [`sandbox`].
    pub(crate) fn new(
        identity: Arc<PolicyIdentity>,
        services: HostServices,
        memory_cap: usize,
    ) -> PolicyCtx {
        let stderr = StderrTail::default();
        PolicyCtx {
            wasi: sandbox::wasi_ctx(&stderr),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_cap,
                memory_used: 0,
                memory_hit: false,
            },
            identity,
            services,
            call: CallScope::default(),
            stderr,
        }
    }

    /// The last line the policy wrote to stderr in this call (a panic message, usually).
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        self.stderr.last_line()
    }

    fn state_backend(&self) -> &Arc<dyn StateBackend> {
        self.call
            .state_override
            .as_ref()
            .unwrap_or(&self.services.state)
    }
}

impl WasiView for PolicyCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::types::Host for PolicyCtx {}
