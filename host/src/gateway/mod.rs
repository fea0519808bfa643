//! The call path: an SDK's HTTP request in, the policy chain, the provider (simulator or real),
//! the chain again, and a provider-shaped answer out. Tool calls take the same path with the
//! tool hooks. Every call is counted, priced, logged and published on the bus.
//!
//! Nothing here knows about Python: the embedding hands over bytes and gets bytes back, so the
//! same path serves the benchmark and any other front end.
//!
//! An LLM call, [`Gateway::handle`], file by file:
//!
//! 1. `route.rs`: the upstream the request names and the API of its path; a request the host
//!    does not route is refused there (in the provider's shape, and recorded), and the `GET`s
//!    the host answers itself (models, kept Responses answers) are answered there.
//! 2. `attempt.rs`: the attempts: the chain's `on-llm-request`, the upstream and key for it
//!    (`route.rs`: the simulator or HTTPS; `keys.rs`: keys in environments), the send, the
//!    chain's `on-llm-response`, retries with backoff. They return how the call ended, and
//!    `handle` records it once.
//! 3. `stream.rs`: a streamed answer ([`StreamReply`]), chunk by chunk through the chain's
//!    `on-llm-chunk`; it records the call when the stream ends.
//! 4. `report.rs`: what a call collected from the chain, its price, the agent's figures
//!    (`metrics.rs`), the log line and the events on the bus.
//!
//! Tool calls, [`Gateway::tool_begin`] and [`Gateway::tool_end`], are in `tools.rs`. This
//! file has the public types, [`GatewayBuilder`] and the small accessors.

mod attempt;
pub mod keys;
pub mod metrics;
mod report;
mod route;
mod stream;
mod tools;

pub use keys::PLACEHOLDER_KEY;
pub use stream::StreamReply;
pub use tools::{ToolStart, ToolTicket};

pub use crate::llm::LlmMode;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use self::metrics::Metrics;
use crate::events::EventBus;
use crate::llm::http::HttpUpstream;
use crate::llm::simulator::{Simulator, SimulatorConfig};
use crate::llm::upstreams::Upstreams;
use crate::llm::wire::UnknownParts;
use crate::model::TokenMeter;
use crate::model::{AgentInfo, CallContext, Denial};
use crate::policy::chain::Chain;
use crate::policy::host::{NoSecrets, SecretResolver};

/// How the gateway calls providers.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub mode: LlmMode,
    /// Limit for one attempt (for a stream: until the first event, then between events).
    pub timeout: Duration,
    /// Retries after a rate limit, server error, timeout or connection failure.
    pub max_retries: u32,
    /// First backoff; doubles per retry.
    pub backoff: Duration,
    /// Longest wait between two attempts, `Retry-After` included.
    pub max_backoff: Duration,
    /// The agent's budget, for the log's running total.
    pub budget_usd: Option<f64>,
    /// What to do with request parts the host does not model (`llm.unknown-parts`).
    pub unknown_parts: UnknownParts,
    /// Where requests are addressed and sent, with which key (`[[llm.upstreams]]`).
    pub upstreams: Arc<Upstreams>,
}

impl Default for GatewayOptions {
    fn default() -> GatewayOptions {
        GatewayOptions {
            mode: LlmMode::Auto,
            timeout: Duration::from_secs(60),
            max_retries: 2,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            budget_usd: None,
            unknown_parts: UnknownParts::Scan,
            upstreams: Arc::default(),
        }
    }
}

/// An HTTP request as the SDK built it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The upstream the agent addressed (`openai`, `anthropic`, a `[[llm.upstreams]]` name).
    pub upstream: String,
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the agent gets back.
#[derive(Debug)]
pub enum GatewayReply {
    /// A complete HTTP answer (success or provider error).
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A `200` event stream; pull its bytes with [`StreamReply::next_bytes`].
    Stream(Box<StreamReply>),
}

/// Why a call did not produce an HTTP answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    #[error("policy `{policy}` denied the call ({}): {}", denial.code, denial.message)]
    Denied { policy: String, denial: Denial },
    #[error("the provider did not answer in time: {0}")]
    Timeout(String),
    #[error("cannot reach the provider: {0}")]
    Connection(String),
    #[error("the call was cancelled")]
    Interrupted,
    #[error("{0}")]
    NoKey(String),
}

/// The services the call path needs.
pub struct Gateway {
    chain: Arc<Chain>,
    simulator: Arc<Simulator>,
    http: Option<Arc<HttpUpstream>>,
    secrets: Arc<dyn SecretResolver>,
    /// Provider keys from the host's own environment, by variable name.
    env_keys: BTreeMap<String, String>,
    meter: Arc<dyn TokenMeter>,
    bus: EventBus,
    metrics: Arc<Metrics>,
    agent: AgentInfo,
    options: GatewayOptions,
    /// The budget shown in log lines and figures (f64 bits; NaN: none). Starts as
    /// `options.budget_usd`; a limit changed through the control plane updates it.
    budget_bits: AtomicU64,
    seq: AtomicU64,
    /// Eight hex digits drawn when the gateway is made: part of every call id.
    run_tag: String,
    /// The latest Responses API answers as the agent got them, by id, for
    /// `GET /v1/responses/{id}`.
    answers: parking_lot::Mutex<VecDeque<(String, Vec<u8>)>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("agent", &self.agent)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// How a [`Gateway`] is made: [`Gateway::builder`] takes what it cannot do without (the
/// chain, the agent, the token meter); every other part has a default, named on its setter.
/// [`GatewayBuilder::build`] cannot fail.
#[must_use = "a builder does nothing until `build` is called"]
pub struct GatewayBuilder {
    chain: Arc<Chain>,
    agent: AgentInfo,
    meter: Arc<dyn TokenMeter>,
    simulator: Option<Arc<Simulator>>,
    http: Option<Arc<HttpUpstream>>,
    secrets: Arc<dyn SecretResolver>,
    env_keys: BTreeMap<String, String>,
    bus: Option<EventBus>,
    metrics: Option<Arc<Metrics>>,
    options: GatewayOptions,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("agent", &self.agent)
            .field("http", &self.http.is_some())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// The simulator that answers offline. Default: one with the default
    /// [`SimulatorConfig`], counting with the builder's meter.
    pub fn simulator(mut self, simulator: Arc<Simulator>) -> GatewayBuilder {
        self.simulator = Some(simulator);
        self
    }

    /// The HTTPS client for real providers. Default: none: only the simulator answers, and a
    /// call that would go to a provider fails with [`GatewayError::NoKey`].
    pub fn http(mut self, http: Option<Arc<HttpUpstream>>) -> GatewayBuilder {
        self.http = http;
        self
    }

    /// Where provider keys named by an upstream or a policy are looked up first. Default:
    /// [`NoSecrets`].
    pub fn secrets(mut self, secrets: Arc<dyn SecretResolver>) -> GatewayBuilder {
        self.secrets = secrets;
        self
    }

    /// Provider keys from the host's own environment, by variable name (after the secrets).
    /// Default: none.
    pub fn env_keys(mut self, env_keys: BTreeMap<String, String>) -> GatewayBuilder {
        self.env_keys = env_keys;
        self
    }

    /// The bus every call is published on. Default: a new bus of its own.
    pub fn bus(mut self, bus: EventBus) -> GatewayBuilder {
        self.bus = Some(bus);
        self
    }

    /// The agent's figures. Default: new (all zero).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> GatewayBuilder {
        self.metrics = Some(metrics);
        self
    }

    /// How providers are called. Default: [`GatewayOptions::default`].
    pub fn options(mut self, options: GatewayOptions) -> GatewayBuilder {
        self.options = options;
        self
    }

    /// The gateway, with a run tag of its own (part of every call id).
    pub fn build(self) -> Gateway {
        let GatewayBuilder {
            chain,
            agent,
            meter,
            simulator,
            http,
            secrets,
            env_keys,
            bus,
            metrics,
            options,
        } = self;
        let simulator = simulator
            .unwrap_or_else(|| Arc::new(Simulator::new(SimulatorConfig::default(), meter.clone())));
        Gateway {
            chain,
            simulator,
            http,
            secrets,
            env_keys,
            meter,
            bus: bus.unwrap_or_default(),
            metrics: metrics.unwrap_or_default(),
            agent,
            budget_bits: AtomicU64::new(options.budget_usd.unwrap_or(f64::NAN).to_bits()),
            options,
            seq: AtomicU64::new(0),
            run_tag: run_tag(),
            answers: parking_lot::Mutex::new(VecDeque::new()),
        }
    }
}

fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".to_owned(), "application/json".to_owned())]
}

/// Eight random hex digits (from the clock if the system has no randomness to give).
fn run_tag() -> String {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ std::process::id());
        b = t.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Gateway {
    /// A builder for a gateway running `chain` for `agent`, counting and pricing with `meter`
    /// (the meter the chain's policies count with, so a prompt counted before the chain runs
    /// is a lookup for them).
    pub fn builder(
        chain: Arc<Chain>,
        agent: AgentInfo,
        meter: Arc<dyn TokenMeter>,
    ) -> GatewayBuilder {
        GatewayBuilder {
            chain,
            agent,
            meter,
            simulator: None,
            http: None,
            secrets: Arc::new(NoSecrets),
            env_keys: BTreeMap::new(),
            bus: None,
            metrics: None,
            options: GatewayOptions::default(),
        }
    }

    /// The budget the agent runs under now, in USD.
    pub fn budget_usd(&self) -> Option<f64> {
        let v = f64::from_bits(self.budget_bits.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }

    /// Record a new budget (the budget policy was re-admitted with it).
    pub fn set_budget_usd(&self, usd: Option<f64>) {
        self.budget_bits
            .store(usd.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
    }

    pub fn agent(&self) -> &AgentInfo {
        &self.agent
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    pub fn options(&self) -> &GatewayOptions {
        &self.options
    }

    fn context(&self, call_id: &str, attempt: u32) -> CallContext {
        CallContext {
            agent_id: self.agent.agent_id.clone(),
            call_id: call_id.to_owned(),
            environment: self.agent.environment.clone(),
            attempt,
        }
    }

    /// `AGENT-RUN-llmN`: the run tag keeps the ids of one agent's runs (a restart, a resumed
    /// `--agent-id`) apart in the store and in the budget's reservations.
    fn next_call_id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{}-{prefix}{n}", self.agent.agent_id, self.run_tag)
    }
}
