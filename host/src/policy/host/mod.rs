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
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::wit;
use super::model::{Message, Severity};
use super::state::{MemoryState, StateBackend};

pub use tokens::ApproxTokenMeter;

/// Largest log line kept, in bytes.
pub const MAX_LOG_BYTES: usize = 16 * 1024;
/// Most events one hook call may emit; the rest are dropped and logged.
pub const MAX_EVENTS_PER_CALL: usize = 64;
/// How much of a policy's stderr (panic messages) is kept for failure reports.
const STDERR_CAPACITY: usize = 8 * 1024;

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

/// Memory and table caps of one policy instance.
pub(crate) struct Limiter {
    pub memory_cap: usize,
    pub memory_hit: bool,
}

/// Most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_hit = true;
            wasmtime::bail!(
                "memory limit of {} MiB reached (asked for {} MiB)",
                self.memory_cap >> 20,
                desired.div_ceil(1 << 20)
            );
        }
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
    pub(crate) stderr: MemoryOutputPipe,
}

impl std::fmt::Debug for PolicyCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCtx")
            .field("policy", &self.identity.name)
            .finish_non_exhaustive()
    }
}

/// WASI clocks inside the sandbox read zero: time comes only through the `clock` capability.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl PolicyCtx {
    /// A fresh context: WASI with no files, no network, no environment, no arguments, frozen
    /// clocks and stdout discarded; stderr kept (bounded) for failure reports.
    pub(crate) fn new(
        identity: Arc<PolicyIdentity>,
        services: HostServices,
        memory_cap: usize,
    ) -> PolicyCtx {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        PolicyCtx {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_cap,
                memory_hit: false,
            },
            identity,
            services,
            call: CallScope::default(),
            stderr,
        }
    }

    /// The last line the policy wrote to stderr (a panic message, usually), if any.
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("note:"))
            .map(|l| l.trim().to_owned())
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
