//! The call path: an SDK's HTTP request in, the policy chain, the provider (simulator or real),
//! the chain again, and a provider-shaped answer out. Tool calls take the same path with the
//! tool hooks. Every call is counted, priced, logged and published on the bus.
//!
//! Nothing here knows about Python: the embedding hands over bytes and gets bytes back, so the
//! same path serves the benchmark and any other front end.

pub mod keys;
pub mod metrics;

pub use keys::PLACEHOLDER_KEY;

pub use crate::llm::LlmMode;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use self::metrics::{LlmTally, Metrics};
use crate::events::{CallOutcome, EventBus, EventKind, VerdictSummary};
use crate::llm::http::HttpUpstream;
use crate::llm::responses;
use crate::llm::simulator::Simulator;
use crate::llm::sse::SseEvent;
use crate::llm::upstream::{
    Egress, EventStream, Interrupt, StreamError, Upstream, UpstreamReply, sleep,
};
use crate::llm::upstreams::{Endpoint, Format, Upstreams};
use crate::llm::wire::{Api, ParsedRequest, UnknownParts, UsagePart};
use crate::llm::{anthropic, retry_after_ms, retryable};
use crate::model::TokenMeter;
use crate::model::{
    AgentInfo, CallContext, ContentPart, Denial, Hook, LlmChunk, LlmOutcome, LlmRequest,
    LlmResponse, Message, ProviderError, ProviderErrorKind, Role, Severity, ToolCall, ToolOutcome,
    Usage,
};
use crate::policy::chain::{Chain, ChainRun, ChainStream, Outcome, VerdictKind};
use crate::policy::host::{PolicyEvent, SecretResolver};

/// Prompts at least this long (bytes of text) are counted before the chain runs.
const LONG_PROMPT_BYTES: usize = 8 * 1024;

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

/// How many Responses API answers the gateway keeps for `GET /v1/responses/{id}`.
const ANSWERS_KEPT: usize = 256;

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("agent", &self.agent)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What one call collected from the chain across its hooks.
#[derive(Debug, Default)]
struct Trail {
    verdicts: Vec<VerdictSummary>,
    events: Vec<PolicyEvent>,
    /// `policy_failure` events, one per failed policy call.
    failures: Vec<EventKind>,
    policy_ns: u64,
}

impl Trail {
    fn absorb<T>(&mut self, hook: Hook, run: &ChainRun<T>) {
        self.policy_ns += run.latency_ns;
        for r in &run.policies {
            self.verdicts.push(VerdictSummary {
                policy: r.policy.clone(),
                hook: hook.as_str(),
                verdict: r.verdict,
                enforced: r.enforced,
                latency_us: r.latency_ns / 1000,
                code: r.denial.as_ref().map(|d| d.code.clone()),
            });
            self.events.extend(r.events.iter().cloned());
            if let Some(f) = &r.failure {
                self.failures.push(EventKind::PolicyFailure {
                    policy: r.policy.clone(),
                    hook: hook.as_str(),
                    failure: f.kind,
                    message: f.message.clone(),
                    call_id: None,
                });
            }
        }
    }

    /// What the policies did, for the log line: `pii-redact rewrite`, `budget deny`.
    fn actions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in &self.verdicts {
            // A rewrite is worth a mention when the policy said why (an event): naming a
            // credential for egress, for one, changes nothing the agent or provider sees.
            let explained = self.events.iter().any(|e| e.policy == v.policy);
            let shown = match v.verdict {
                VerdictKind::Rewrite => explained,
                VerdictKind::Deny
                | VerdictKind::Respond
                | VerdictKind::Fallback
                | VerdictKind::Failed => true,
                _ => false,
            };
            let text = format!("{} {}", v.policy, v.verdict.as_str());
            if shown && !out.contains(&text) {
                out.push(text);
            }
        }
        out
    }
}

fn error_of_status(
    api: Api,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> ProviderError {
    let retry = retry_after_ms(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    api.parse_error(status, body, retry)
}

/// Headers of the provider's answer worth passing to the agent (the body may have changed).
fn answer_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(k, _)| {
            ![
                "content-length",
                "transfer-encoding",
                "content-encoding",
                "connection",
            ]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        })
        .collect()
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
    #[expect(
        clippy::too_many_arguments,
        reason = "built once, by the runtime, from its parts"
    )]
    pub fn new(
        chain: Arc<Chain>,
        simulator: Arc<Simulator>,
        http: Option<Arc<HttpUpstream>>,
        secrets: Arc<dyn SecretResolver>,
        env_keys: BTreeMap<String, String>,
        meter: Arc<dyn TokenMeter>,
        bus: EventBus,
        metrics: Arc<Metrics>,
        agent: AgentInfo,
        options: GatewayOptions,
    ) -> Gateway {
        Gateway {
            chain,
            simulator,
            http,
            secrets,
            env_keys,
            meter,
            bus,
            metrics,
            agent,
            budget_bits: AtomicU64::new(options.budget_usd.unwrap_or(f64::NAN).to_bits()),
            options,
            seq: AtomicU64::new(0),
            run_tag: run_tag(),
            answers: parking_lot::Mutex::new(VecDeque::new()),
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

    /// The key for this call: the agent's own (unless it is the placeholder), else the secret
    /// the chain named or the upstream's own, from the secret store or the host's environment.
    fn key_for(
        &self,
        endpoint: &Endpoint,
        request: &LlmRequest,
        headers: &[(String, String)],
    ) -> Option<String> {
        let from_agent = headers.iter().find_map(|(k, v)| {
            if k.eq_ignore_ascii_case("authorization") {
                v.strip_prefix("Bearer ").map(str::to_owned)
            } else if k.eq_ignore_ascii_case("x-api-key") || k.eq_ignore_ascii_case("api-key") {
                Some(v.clone())
            } else {
                None
            }
        });
        if let Some(k) = from_agent.filter(|k| !k.is_empty() && k != PLACEHOLDER_KEY) {
            return Some(k);
        }
        let name = endpoint.key_name(request.credential.as_deref())?;
        self.secrets
            .get(&self.agent.environment, name)
            .or_else(|| self.env_keys.get(name).cloned())
            .filter(|k| !k.is_empty() && k != PLACEHOLDER_KEY)
    }

    fn route(
        &self,
        endpoint: &Endpoint,
        request: &LlmRequest,
        headers: &[(String, String)],
    ) -> Result<(Upstream, Option<String>), GatewayError> {
        let sim = || Upstream::Simulator(self.simulator.clone());
        if self.options.mode == LlmMode::Simulator {
            return Ok((sim(), None));
        }
        let key = self.key_for(endpoint, request, headers);
        // An upstream without a key secret (a local server) needs none.
        let keyless = endpoint.key_name(request.credential.as_deref()).is_none();
        match (self.options.mode, key, &self.http) {
            (_, key, Some(http)) if key.is_some() || keyless => {
                Ok((Upstream::Http(http.clone()), key))
            }
            (LlmMode::Auto, _, Some(_)) | (LlmMode::Auto, None, None) => Ok((sim(), None)),
            (_, _, None) => Err(GatewayError::NoKey(
                "the HTTPS client for real providers is not available".to_owned(),
            )),
            (_, _, _) => Err(GatewayError::NoKey(format!(
                "llm.mode is `live` but no key for upstream `{}` is set (secret or host \
                 environment variable `{}`)",
                endpoint.name,
                endpoint
                    .key_name(request.credential.as_deref())
                    .unwrap_or_default()
            ))),
        }
    }

    fn backoff(&self, attempt: u32, retry_after_ms: Option<u64>) -> Duration {
        let exp = self
            .options
            .backoff
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
        let asked = Duration::from_millis(retry_after_ms.unwrap_or(0));
        exp.max(asked).min(self.options.max_backoff)
    }

    /// Handle one HTTP request from an SDK.
    pub fn handle(
        self: &Arc<Self>,
        req: HttpRequest,
        interrupt: Interrupt<'_>,
    ) -> Result<GatewayReply, GatewayError> {
        let started = Instant::now();
        let upstreams = self.options.upstreams.clone();
        let Some(endpoint) = upstreams.get(&req.upstream) else {
            let why = format!(
                "no upstream is named `{}` (known: {})",
                req.upstream,
                upstreams
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Ok(self.refuse_unrouted(&req, None, started, why));
        };
        let target = endpoint.target(&req.path);
        let post = req.method.eq_ignore_ascii_case("POST");
        let Some(api) = target.api.filter(|_| post) else {
            if req.method.eq_ignore_ascii_case("GET")
                && let Some(reply) = self.answer_get(endpoint, &target.rest)
            {
                return Ok(reply);
            }
            let why = format!(
                "ironhost governs chat completions, responses (and their input_tokens), \
                 completions, embeddings and moderations (OpenAI) and messages and count_tokens \
                 (Anthropic); {} {} is not routed (upstream `{}`, {})",
                req.method,
                req.path,
                endpoint.name,
                endpoint.format.name()
            );
            return Ok(self.refuse_unrouted(&req, Some(endpoint), started, why));
        };
        let mut req = req;
        if let Some(deployment) = &target.deployment
            && let Some(body) = with_model(&req.body, deployment)
        {
            req.body = body;
        }
        let mut parsed = match api.parse_request(&req.body) {
            Ok(p) => p,
            Err(e) => {
                let model = model_in(&req.body);
                return Ok(self.refuse(
                    api,
                    api,
                    &endpoint.name,
                    &model,
                    started,
                    400,
                    "invalid_request",
                    &e.0,
                ));
            }
        };
        parsed.request.provider.clone_from(&endpoint.name);
        if !parsed.unknown.is_empty() && self.options.unknown_parts == UnknownParts::Refuse {
            let message = format!(
                "ironhost passes no part it cannot read (llm.unknown-parts = \"refuse\"): {}",
                parsed.unknown.join(", ")
            );
            return Ok(self.refuse(
                api,
                api,
                &endpoint.name,
                &parsed.request.model,
                started,
                400,
                "unknown_part",
                &message,
            ));
        }
        // The store's backpressure: a call starts only when the records of earlier ones can be
        // kept (returns at once unless the store is far behind).
        self.bus.wait_for_room(interrupt);
        let call_id = self.next_call_id("llm");
        if api.provider() == "openai" {
            self.count_long_prompt(&parsed.request);
        }
        let mut trail = Trail::default();
        let mut attempt = 0;
        let mut call = CallRecord {
            call_id: call_id.clone(),
            api,
            reason: None,
            provider: endpoint.name.clone(),
            model: parsed.request.model.clone(),
            stream: parsed.request.stream,
            simulated: true,
            attempts: 0,
            started,
        };
        loop {
            call.attempts = attempt + 1;
            let ctx = self.context(&call_id, attempt);
            let run = self.chain.on_llm_request(&ctx, parsed.request.clone());
            trail.absorb(Hook::LlmRequest, &run);
            let request = match run.outcome {
                Outcome::Continue { value } => value,
                Outcome::Deny { policy, denial } => {
                    self.finish(
                        &call,
                        trail,
                        CallOutcome::Denied,
                        None,
                        Some(&denial.code),
                        None,
                    );
                    return Err(GatewayError::Denied { policy, denial });
                }
                Outcome::Respond { response, .. } => {
                    self.finish(&call, trail, CallOutcome::Fallback, None, None, None);
                    return Ok(render_answer(api, &parsed, &response));
                }
                Outcome::Fallback { policy, .. } => {
                    let denial = Denial {
                        code: "invalid_verdict".to_owned(),
                        message: "a tool fallback cannot answer an LLM call".to_owned(),
                        retry_after_ms: None,
                    };
                    self.finish(
                        &call,
                        trail,
                        CallOutcome::Denied,
                        None,
                        Some(&denial.code),
                        None,
                    );
                    return Err(GatewayError::Denied { policy, denial });
                }
            };
            // The record names the model actually sent, and is priced by it.
            call.model.clone_from(&request.model);
            let (upstream, key) = match self.route(endpoint, &request, &req.headers) {
                Ok(r) => r,
                Err(e) => {
                    self.abandon(
                        &ctx,
                        &request,
                        "no_provider_key",
                        &e.to_string(),
                        None,
                        &mut trail,
                    );
                    self.finish(&call, trail, CallOutcome::Error, None, None, None);
                    return Err(e);
                }
            };
            call.simulated = upstream.is_simulator();
            // Unchanged requests leave byte for byte; OpenAI streams must also ask for usage.
            // (The credential is the host's business: naming one changes nothing on the wire.)
            let verbatim = same_on_wire(&request, &parsed.request)
                && (!request.stream || api.provider() == "anthropic" || parsed.wants_stream_usage);
            let body = if verbatim {
                req.body.clone()
            } else {
                api.render_request(&parsed, &request)
            };
            let egress = Egress {
                api,
                base: &endpoint.send_to,
                format: endpoint.format,
                path: &target.rest,
                headers: &req.headers,
                body,
                stream: request.stream,
                key: key.as_deref(),
            };
            let (error, raw) = match upstream.send(egress, self.options.timeout, interrupt) {
                UpstreamReply::Interrupted => {
                    self.abandon(
                        &ctx,
                        &request,
                        "cancelled",
                        "the agent stopped waiting",
                        None,
                        &mut trail,
                    );
                    self.finish(&call, trail, CallOutcome::Cancelled, None, None, None);
                    return Err(GatewayError::Interrupted);
                }
                UpstreamReply::Stream { headers, events } => {
                    let stream = self.chain.stream(&ctx);
                    return Ok(GatewayReply::Stream(Box::new(StreamReply {
                        gateway: self.clone(),
                        api,
                        ctx,
                        request,
                        headers: answer_headers(headers),
                        events,
                        stream,
                        wants_usage: parsed.wants_stream_usage,
                        out: VecDeque::new(),
                        template: None,
                        held_stop: None,
                        usage: UsagePart::default(),
                        text: String::new(),
                        finish: None,
                        index: 0,
                        last_pushed: false,
                        released: BTreeMap::new(),
                        seq: 0,
                        done: false,
                        call: Some(call),
                        trail: Some(trail),
                    })));
                }
                UpstreamReply::Body {
                    status,
                    headers,
                    body,
                } if (200..300).contains(&status) => {
                    let Ok(response) = api.parse_response(&body) else {
                        // Not an answer this host understands: the agent's SDK decides.
                        call.reason = Some("the provider's answer could not be read".to_owned());
                        self.finish(&call, trail, CallOutcome::Error, Some(status), None, None);
                        return Ok(GatewayReply::Full {
                            status,
                            headers: answer_headers(headers),
                            body,
                        });
                    };
                    let run = self.chain.on_llm_response(
                        &ctx,
                        request.clone(),
                        LlmOutcome::Ok(response.clone()),
                    );
                    trail.absorb(Hook::LlmResponse, &run);
                    return match run.outcome {
                        Outcome::Continue {
                            value: LlmOutcome::Ok(answer),
                        } => {
                            let usage = answer.usage.or(response.usage);
                            let out = if answer == response {
                                body
                            } else {
                                api.render_response(Some(&body), &answer)
                            };
                            self.finish(&call, trail, CallOutcome::Ok, Some(status), None, usage);
                            if api == Api::Responses {
                                self.remember(&response.id, &out);
                            }
                            Ok(GatewayReply::Full {
                                status,
                                headers: answer_headers(headers),
                                body: out,
                            })
                        }
                        Outcome::Deny { policy, denial } => {
                            self.finish(
                                &call,
                                trail,
                                CallOutcome::Denied,
                                Some(status),
                                Some(&denial.code),
                                response.usage,
                            );
                            Err(GatewayError::Denied { policy, denial })
                        }
                        _ => {
                            self.finish(
                                &call,
                                trail,
                                CallOutcome::Error,
                                Some(status),
                                None,
                                response.usage,
                            );
                            Ok(GatewayReply::Full {
                                status,
                                headers: answer_headers(headers),
                                body,
                            })
                        }
                    };
                }
                UpstreamReply::Body {
                    status,
                    headers,
                    body,
                } => (
                    error_of_status(api, status, &headers, &body),
                    Some((status, headers, body)),
                ),
                UpstreamReply::Failed(e) => (e, None),
            };
            // The provider failed: the chain sees it (a circuit breaker counts it, a policy may
            // answer instead), then the host retries or reports it.
            let run =
                self.chain
                    .on_llm_response(&ctx, request.clone(), LlmOutcome::Error(error.clone()));
            trail.absorb(Hook::LlmResponse, &run);
            match run.outcome {
                Outcome::Continue {
                    value: LlmOutcome::Ok(answer),
                } => {
                    self.finish(&call, trail, CallOutcome::Fallback, None, None, None);
                    return Ok(render_answer(api, &parsed, &answer));
                }
                Outcome::Deny { policy, denial } => {
                    self.finish(
                        &call,
                        trail,
                        CallOutcome::Denied,
                        error.status,
                        Some(&denial.code),
                        None,
                    );
                    return Err(GatewayError::Denied { policy, denial });
                }
                _ => {}
            }
            if retryable(&error) && attempt < self.options.max_retries {
                let wait = self.backoff(attempt, error.retry_after_ms);
                tracing::warn!(
                    "{} {} failed ({}); retry {} of {} in {} ms",
                    call.provider,
                    call.model,
                    describe(&error),
                    attempt + 1,
                    self.options.max_retries,
                    wait.as_millis()
                );
                if !sleep(wait, interrupt) {
                    self.finish(
                        &call,
                        trail,
                        CallOutcome::Cancelled,
                        error.status,
                        None,
                        None,
                    );
                    return Err(GatewayError::Interrupted);
                }
                attempt += 1;
                continue;
            }
            call.reason = Some(error.message.clone());
            self.finish(&call, trail, CallOutcome::Error, error.status, None, None);
            return match raw {
                Some((status, headers, body)) => {
                    let mut headers = answer_headers(headers);
                    // The host already retried; the SDK must not multiply the attempts.
                    headers.push(("x-should-retry".to_owned(), "false".to_owned()));
                    Ok(GatewayReply::Full {
                        status,
                        headers,
                        body,
                    })
                }
                None if error.kind == ProviderErrorKind::Timeout => {
                    Err(GatewayError::Timeout(error.message))
                }
                None => Err(GatewayError::Connection(error.message)),
            };
        }
    }

    /// Refuse a request to `api` before any policy ran, as the provider would (the error
    /// shape of `shape`'s provider, with `x-should-retry: false`), and record it as a call
    /// with its reason.
    #[expect(
        clippy::too_many_arguments,
        reason = "a refusal names what it refused and why; grouping them would only rename them"
    )]
    fn refuse(
        &self,
        api: Api,
        shape: Api,
        provider: &str,
        model: &str,
        started: Instant,
        status: u16,
        code: &str,
        message: &str,
    ) -> GatewayReply {
        let call = CallRecord {
            call_id: self.next_call_id("llm"),
            api,
            reason: Some(message.to_owned()),
            provider: provider.to_owned(),
            model: model.to_owned(),
            stream: false,
            simulated: true,
            attempts: 0,
            started,
        };
        let outcome = if code == "unknown_part" {
            CallOutcome::Denied
        } else {
            CallOutcome::Error
        };
        self.finish(
            &call,
            Trail::default(),
            outcome,
            Some(status),
            Some(code),
            None,
        );
        let (status, body) = shape.render_error(&ProviderError {
            kind: crate::llm::error_kind(status),
            status: Some(status),
            message: message.to_owned(),
            retry_after_ms: None,
        });
        let mut headers = json_headers();
        headers.push(("x-should-retry".to_owned(), "false".to_owned()));
        GatewayReply::Full {
            status,
            headers,
            body,
        }
    }

    /// A request to an upstream on a path the host does not govern (or to an upstream it does
    /// not know): refused with a 404 in that upstream's shape, and recorded with `why`.
    fn refuse_unrouted(
        &self,
        req: &HttpRequest,
        endpoint: Option<&Endpoint>,
        started: Instant,
        why: String,
    ) -> GatewayReply {
        let shape = match endpoint.map(|e| e.format) {
            Some(Format::Anthropic) => Api::Anthropic,
            Some(_) => Api::OpenAi,
            None if anthropic_headers(&req.headers) => Api::Anthropic,
            None => Api::OpenAi,
        };
        // A known endpoint asked with another method is recorded under its API.
        let api = endpoint
            .and_then(|e| e.target(&req.path).api)
            .unwrap_or(shape);
        let model = model_in(&req.body);
        let provider = endpoint.map_or(req.upstream.as_str(), |e| e.name.as_str());
        self.refuse(
            api,
            shape,
            provider,
            &model,
            started,
            404,
            "not_routed",
            &why,
        )
    }

    /// `GET`s the host answers itself: the models it can price (`/v1/models`,
    /// `/v1/models/{id}`) and the Responses API answers this agent got
    /// (`/v1/responses/{id}`). `None` for any other path.
    fn answer_get(&self, endpoint: &Endpoint, rest: &str) -> Option<GatewayReply> {
        let path = rest.split('?').next().unwrap_or(rest);
        let path = path.trim_end_matches('/');
        let anthropic = endpoint.format == Format::Anthropic;
        let json = |status: u16, body: serde_json::Value| GatewayReply::Full {
            status,
            headers: json_headers(),
            body: body.to_string().into_bytes(),
        };
        let not_found = |message: String| {
            let api = if anthropic {
                Api::Anthropic
            } else {
                Api::OpenAi
            };
            let (_, body) = api.render_error(&ProviderError {
                kind: ProviderErrorKind::InvalidRequest,
                status: Some(404),
                message,
                retry_after_ms: None,
            });
            GatewayReply::Full {
                status: 404,
                headers: json_headers(),
                body,
            }
        };
        let models: Vec<String> = self
            .meter
            .models()
            .into_iter()
            .filter(|m| m != crate::llm::simulator::ECHO_MODEL)
            .filter(|m| m.starts_with("claude") == anthropic)
            .collect();
        let model_json = |id: &str| {
            if anthropic {
                serde_json::json!({"type": "model", "id": id, "display_name": id,
                    "created_at": "2025-01-01T00:00:00Z"})
            } else {
                serde_json::json!({"id": id, "object": "model", "created": 1_700_000_000,
                    "owned_by": "system"})
            }
        };
        if path.ends_with("/v1/models") || path == "/models" {
            let data: Vec<serde_json::Value> = models.iter().map(|m| model_json(m)).collect();
            return Some(if anthropic {
                json(
                    200,
                    serde_json::json!({"data": data, "has_more": false,
                        "first_id": models.first(), "last_id": models.last()}),
                )
            } else {
                json(200, serde_json::json!({"object": "list", "data": data}))
            });
        }
        if let Some((_, id)) = path.rsplit_once("/models/") {
            return Some(if self.meter.price(id).is_some() {
                json(200, model_json(id))
            } else {
                not_found(format!(
                    "The model `{id}` does not exist or you do not have access to it."
                ))
            });
        }
        if let Some((_, id)) = path.rsplit_once("/responses/") {
            let kept = self
                .answers
                .lock()
                .iter()
                .rev()
                .find(|(k, _)| k == id)
                .map(|(_, body)| body.clone());
            return Some(match kept {
                Some(body) => GatewayReply::Full {
                    status: 200,
                    headers: json_headers(),
                    body,
                },
                None => not_found(format!("Response with id '{id}' not found.")),
            });
        }
        None
    }

    /// Keep a Responses API answer `id` (as the agent got it) for `GET /v1/responses/{id}`.
    fn remember(&self, id: &str, body: &[u8]) {
        if id.is_empty() {
            return;
        }
        let mut answers = self.answers.lock();
        if answers.len() >= ANSWERS_KEPT {
            answers.pop_front();
        }
        answers.push_back((id.to_owned(), body.to_vec()));
    }

    /// Tell the chain a call it passed ended without an answer.
    fn abandon(
        &self,
        ctx: &CallContext,
        request: &LlmRequest,
        code: &str,
        message: &str,
        usage: Option<Usage>,
        trail: &mut Trail,
    ) {
        let run = self.chain.on_llm_abandoned(
            ctx,
            request.clone(),
            Denial {
                code: code.to_owned(),
                message: message.to_owned(),
                retry_after_ms: None,
            },
            None,
            usage,
        );
        trail.absorb(Hook::LlmAbandoned, &run);
    }

    /// Count, price, log and publish a finished LLM call.
    fn finish(
        &self,
        call: &CallRecord,
        trail: Trail,
        outcome: CallOutcome,
        status: Option<u16>,
        code: Option<&str>,
        usage: Option<Usage>,
    ) {
        let latency_ms = call.started.elapsed().as_secs_f64() * 1000.0;
        let usage = usage.unwrap_or_default();
        let cost = self.cost(&call.model, &usage);
        let tally = match outcome {
            CallOutcome::Ok => LlmTally::Answered {
                input: usage.input_tokens,
                output: usage.output_tokens,
                cost,
            },
            CallOutcome::Denied => LlmTally::Denied,
            CallOutcome::Fallback => LlmTally::Fallback,
            CallOutcome::Error | CallOutcome::Cancelled => LlmTally::Error,
        };
        // Token counts and requests the host refused unrouted (a trace upload, a files call)
        // are recorded, but are not calls of a model: the agent's figures leave them out.
        let total = if call.api.counted() && code != Some("not_routed") {
            self.metrics.llm(&call.model, tally, latency_ms)
        } else {
            self.metrics.cost_usd()
        };
        let spent = match self.budget_usd() {
            Some(limit) => format!("${total:.2} / ${limit:.2}"),
            None => format!("${total:.2} spent"),
        };
        let mut line = format!(
            "llm {} {}→{} tok {} | {spent} | {latency_ms:.0} ms",
            call.model,
            usage.input_tokens,
            usage.output_tokens,
            money(cost)
        );
        match outcome {
            CallOutcome::Ok => {}
            CallOutcome::Denied => line.push_str(&format!(" | denied: {}", code.unwrap_or("?"))),
            CallOutcome::Fallback => line.push_str(" | answered by a policy"),
            CallOutcome::Error => line.push_str(&format!(
                " | failed{}",
                status.map(|s| format!(" ({s})")).unwrap_or_default()
            )),
            CallOutcome::Cancelled => line.push_str(" | cancelled"),
        }
        let actions = trail.actions();
        if !actions.is_empty() {
            line.push_str(&format!(" | {}", actions.join(", ")));
        }
        if call.attempts > 1 {
            line.push_str(&format!(" | {} attempts", call.attempts));
        }
        if let Some(reason) = &call.reason
            && matches!(outcome, CallOutcome::Error | CallOutcome::Denied)
        {
            line.push_str(&format!(" | {reason}"));
        }
        // The human line for people; the same figures as fields for `--log-format json`.
        let verdicts_json = AsJson(&trail.verdicts);
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    target: "ironhost::call",
                    agent = %self.agent.agent_id,
                    call_id = %call.call_id,
                    kind = "llm",
                    provider = %call.provider,
                    api = call.api.name(),
                    model = %call.model,
                    stream = call.stream,
                    outcome = outcome.as_str(),
                    status = status.map_or(0, u64::from),
                    code = code.unwrap_or(""),
                    reason = call.reason.as_deref().unwrap_or(""),
                    input_tokens = u64::from(usage.input_tokens),
                    output_tokens = u64::from(usage.output_tokens),
                    cost_usd = cost,
                    spent_usd = total,
                    latency_ms = latency_ms,
                    attempts = u64::from(call.attempts),
                    simulated = call.simulated,
                    verdicts_json = %verdicts_json,
                    "{line}"
                )
            };
        }
        match outcome {
            CallOutcome::Ok | CallOutcome::Fallback => record!(info),
            _ => record!(warn),
        }
        let severity = match outcome {
            CallOutcome::Ok | CallOutcome::Fallback => Severity::Info,
            CallOutcome::Denied | CallOutcome::Cancelled => Severity::Medium,
            CallOutcome::Error => Severity::High,
        };
        self.publish_policy_events(&trail, total, &call.call_id);
        let policy_us = trail.policy_ns / 1000;
        self.bus.publish(
            &self.agent.agent_id,
            severity,
            EventKind::LlmCall {
                call_id: call.call_id.clone(),
                provider: call.provider.clone(),
                api: call.api.name().to_owned(),
                model: call.model.clone(),
                stream: call.stream,
                outcome,
                status,
                code: code.map(str::to_owned),
                reason: call.reason.clone(),
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cost_usd: cost,
                latency_ms,
                policy_us,
                attempts: call.attempts,
                simulated: call.simulated,
                verdicts: trail.verdicts,
            },
        );
    }

    fn publish_policy_events(&self, trail: &Trail, spent: f64, call: &str) {
        for failure in &trail.failures {
            let mut kind = failure.clone();
            if let EventKind::PolicyFailure { call_id, .. } = &mut kind {
                *call_id = Some(call.to_owned());
            }
            self.bus.publish(&self.agent.agent_id, Severity::High, kind);
        }
        for e in &trail.events {
            let mut kind = EventKind::from_policy(e, spent);
            if let EventKind::PiiFinding { call_id, .. } = &mut kind {
                *call_id = Some(call.to_owned());
            }
            match &kind {
                EventKind::PiiFinding { detail, .. } => {
                    self.metrics.pii(
                        detail
                            .get("type")
                            .and_then(|v| v.as_str())
                            .unwrap_or("unknown"),
                    );
                    tracing::warn!(
                        target: "ironhost::finding",
                        call_id = call,
                        "pii {} {} ({})",
                        detail
                            .get("action")
                            .and_then(|v| v.as_str())
                            .unwrap_or("found"),
                        detail
                            .get("type")
                            .and_then(|v| v.as_str())
                            .unwrap_or("value"),
                        e.policy
                    );
                }
                EventKind::BudgetWarning { detail, .. } => tracing::warn!(
                    "budget warning: {}% of ${:.2} used",
                    detail
                        .get("percent_used")
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.0),
                    detail
                        .get("limit_usd")
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.0)
                ),
                EventKind::BudgetExceeded { .. } => {
                    tracing::error!("budget exceeded: the call was refused")
                }
                EventKind::CircuitOpened { detail, .. } => tracing::warn!(
                    "circuit opened for {}",
                    detail
                        .get("service")
                        .and_then(|v| v.as_str())
                        .unwrap_or("a service")
                ),
                EventKind::CircuitClosed { detail, .. } => tracing::info!(
                    "circuit closed for {}",
                    detail
                        .get("service")
                        .and_then(|v| v.as_str())
                        .unwrap_or("a service")
                ),
                _ => {}
            }
            self.bus.publish(&self.agent.agent_id, e.severity, kind);
        }
    }

    /// Count a long OpenAI prompt's tokens now, outside any policy's deadline: BPE over tens of
    /// thousands of tokens takes milliseconds, and a policy that asks for the count (the
    /// budget's estimate) would otherwise pay for it under its own deadline. The meter keeps
    /// the counts of recent texts of 256 bytes or more, so the policy's question is then a
    /// lookup. Short prompts are left to the policies (counting them costs microseconds), and
    /// Anthropic prompts too (their count is a character division).
    fn count_long_prompt(&self, request: &LlmRequest) {
        let chars: usize = request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .map(|p| match p {
                ContentPart::Text { text } => text.len(),
                ContentPart::ToolOutput { content, .. } => content.len(),
                ContentPart::ToolUse(u) => u.arguments.len(),
                _ => 0,
            })
            .sum();
        if chars >= LONG_PROMPT_BYTES {
            self.meter.count_messages(&request.model, &request.messages);
        }
    }

    /// The price of `usage` on `model`, from the pricing table; 0 for an unknown model.
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.meter.price(model).map_or(0.0, |p| p.usd(usage))
    }

    // ---- tools ---------------------------------------------------------------------------

    /// Before a tool runs: the chain's `on-tool-call`.
    pub fn tool_begin(&self, name: &str, arguments: String) -> Result<ToolStart, GatewayError> {
        let started = Instant::now();
        self.bus.wait_for_room(|| false);
        let call_id = self.next_call_id("tool");
        let ctx = self.context(&call_id, 0);
        let call = ToolCall {
            id: call_id.clone(),
            name: name.to_owned(),
            arguments,
        };
        let run = self.chain.on_tool_call(&ctx, call);
        let mut trail = Trail::default();
        trail.absorb(Hook::ToolCall, &run);
        match run.outcome {
            Outcome::Continue { value } => Ok(ToolStart::Run(ToolTicket {
                call: value,
                started,
                trail,
            })),
            Outcome::Fallback { result, policy } => {
                self.finish_tool(name, &call_id, started, trail, CallOutcome::Fallback, None);
                tracing::info!("tool {name}: answered by {policy} (fallback)");
                Ok(ToolStart::Answered(result))
            }
            Outcome::Deny { policy, denial } => {
                self.finish_tool(
                    name,
                    &call_id,
                    started,
                    trail,
                    CallOutcome::Denied,
                    Some(&denial.code),
                );
                Err(GatewayError::Denied { policy, denial })
            }
            Outcome::Respond { policy, .. } => Err(GatewayError::Denied {
                policy,
                denial: Denial {
                    code: "invalid_verdict".to_owned(),
                    message: "an LLM answer cannot answer a tool call".to_owned(),
                    retry_after_ms: None,
                },
            }),
        }
    }

    /// After a tool ran: the chain's `on-tool-result`. `Ok(None)` keeps the tool's own result.
    pub fn tool_end(
        &self,
        ticket: ToolTicket,
        outcome: ToolOutcome,
    ) -> Result<Option<ToolOutcome>, GatewayError> {
        let ToolTicket {
            call,
            started,
            mut trail,
        } = ticket;
        let ctx = self.context(&call.id, 0);
        let failed = matches!(outcome, ToolOutcome::Error(_));
        let run = self
            .chain
            .on_tool_result(&ctx, call.clone(), outcome.clone());
        trail.absorb(Hook::ToolResult, &run);
        match run.outcome {
            Outcome::Continue { value } => {
                let kind = match (&value, failed) {
                    (ToolOutcome::Ok(_), true) => CallOutcome::Fallback,
                    (ToolOutcome::Error(_), _) => CallOutcome::Error,
                    _ => CallOutcome::Ok,
                };
                self.finish_tool(&call.name, &call.id, started, trail, kind, None);
                Ok((value != outcome).then_some(value))
            }
            Outcome::Deny { policy, denial } => {
                self.finish_tool(
                    &call.name,
                    &call.id,
                    started,
                    trail,
                    CallOutcome::Denied,
                    Some(&denial.code),
                );
                Err(GatewayError::Denied { policy, denial })
            }
            _ => Ok(None),
        }
    }

    fn finish_tool(
        &self,
        name: &str,
        call_id: &str,
        started: Instant,
        trail: Trail,
        outcome: CallOutcome,
        code: Option<&str>,
    ) {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.metrics.tool(
            outcome == CallOutcome::Error,
            outcome == CallOutcome::Fallback,
            outcome == CallOutcome::Denied,
        );
        let mut line = format!("tool {name} {latency_ms:.0} ms");
        match outcome {
            CallOutcome::Ok => {}
            CallOutcome::Fallback => line.push_str(" | fallback"),
            CallOutcome::Denied => line.push_str(&format!(" | denied: {}", code.unwrap_or("?"))),
            CallOutcome::Error => line.push_str(" | failed"),
            CallOutcome::Cancelled => line.push_str(" | cancelled"),
        }
        let actions = trail.actions();
        if !actions.is_empty() {
            line.push_str(&format!(" | {}", actions.join(", ")));
        }
        let verdicts_json = AsJson(&trail.verdicts);
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    target: "ironhost::call",
                    agent = %self.agent.agent_id,
                    call_id = call_id,
                    kind = "tool",
                    tool = name,
                    outcome = outcome.as_str(),
                    code = code.unwrap_or(""),
                    latency_ms = latency_ms,
                    verdicts_json = %verdicts_json,
                    "{line}"
                )
            };
        }
        if outcome == CallOutcome::Ok {
            record!(info);
        } else {
            record!(warn);
        }
        self.publish_policy_events(&trail, self.metrics.cost_usd(), call_id);
        self.bus.publish(
            &self.agent.agent_id,
            if outcome == CallOutcome::Ok {
                Severity::Info
            } else {
                Severity::Medium
            },
            EventKind::ToolCall {
                call_id: call_id.to_owned(),
                tool: name.to_owned(),
                outcome,
                code: code.map(str::to_owned),
                latency_ms,
                verdicts: trail.verdicts,
            },
        );
    }
}

/// A tool call the chain let run.
#[derive(Debug)]
pub struct ToolTicket {
    /// The call, arguments possibly rewritten by a policy.
    pub call: ToolCall,
    started: Instant,
    trail: Trail,
}

/// What to do with a tool call.
#[derive(Debug)]
pub enum ToolStart {
    /// Run the tool with `ticket.call.arguments`, then call [`Gateway::tool_end`].
    Run(ToolTicket),
    /// Do not run it: this JSON is the result.
    Answered(String),
}

#[derive(Debug)]
struct CallRecord {
    call_id: String,
    api: Api,
    /// Why the call was refused or failed, in words.
    reason: Option<String>,
    provider: String,
    model: String,
    stream: bool,
    simulated: bool,
    attempts: u32,
    started: Instant,
}

/// Whether two requests render to the same body (the credential never goes on the wire).
fn same_on_wire(a: &LlmRequest, b: &LlmRequest) -> bool {
    a.provider == b.provider
        && a.model == b.model
        && a.messages == b.messages
        && a.tools == b.tools
        && a.max_output_tokens == b.max_output_tokens
        && a.temperature == b.temperature
        && a.stream == b.stream
        && a.extra == b.extra
}

/// A call's cost: cents for ordinary calls, more digits for the many tiny ones.
fn money(usd: f64) -> String {
    if usd == 0.0 || usd >= 0.01 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.6}")
    }
}

fn describe(e: &ProviderError) -> String {
    let kind = match e.kind {
        ProviderErrorKind::RateLimited => "rate limited",
        ProviderErrorKind::ServerError => "server error",
        ProviderErrorKind::Timeout => "timeout",
        ProviderErrorKind::Connection => "connection failed",
        ProviderErrorKind::InvalidRequest => "invalid request",
        ProviderErrorKind::Authentication => "authentication",
        ProviderErrorKind::Other => "error",
    };
    match e.status {
        Some(s) => format!("{s} {kind}"),
        None => kind.to_owned(),
    }
}

/// A value written as JSON only when a log line is formatted (the human format never asks).
struct AsJson<'a, T>(&'a T);

impl<T: serde::Serialize> std::fmt::Display for AsJson<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self.0).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

/// Whether a request is addressed to Anthropic's API (its SDK always sends a version header).
fn anthropic_headers(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("anthropic-version") || k.eq_ignore_ascii_case("x-api-key")
    })
}

/// The `model` of a request body, if it has one.
/// `body` with `"model": deployment` added when it names no model (an Azure request names its
/// deployment in the path); None when it names one already or is not a JSON object.
fn with_model(body: &[u8], deployment: &str) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object_mut()?;
    if obj.get("model").is_some_and(|m| m.is_string()) {
        return None;
    }
    obj.insert("model".to_owned(), deployment.into());
    serde_json::to_vec(&value).ok()
}

fn model_in(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// An answer a policy produced, in the shape the agent asked for.
fn render_answer(api: Api, parsed: &ParsedRequest, response: &LlmResponse) -> GatewayReply {
    let mut response = response.clone();
    if response.model.is_empty() {
        response.model = parsed.request.model.clone();
    }
    if parsed.request.stream {
        let body: Vec<u8> = api
            .render_stream(&response, parsed.wants_stream_usage)
            .iter()
            .flat_map(SseEvent::to_bytes)
            .collect();
        GatewayReply::Full {
            status: 200,
            headers: vec![("content-type".to_owned(), "text/event-stream".to_owned())],
            body,
        }
    } else {
        GatewayReply::Full {
            status: 200,
            headers: json_headers(),
            body: api.render_response(None, &response),
        }
    }
}

/// A streamed answer on its way to the agent: each provider event is parsed, its text passed
/// through the chain's `on-llm-chunk`, and re-sent with the text the chain released.
pub struct StreamReply {
    gateway: Arc<Gateway>,
    api: Api,
    ctx: CallContext,
    request: LlmRequest,
    headers: Vec<(String, String)>,
    events: EventStream,
    stream: ChainStream,
    wants_usage: bool,
    out: VecDeque<Vec<u8>>,
    /// The last text event, the shape for text the chain releases later.
    template: Option<SseEvent>,
    /// Anthropic: the end of the text block, held until the chain flushed.
    held_stop: Option<SseEvent>,
    usage: UsagePart,
    /// The text the agent received.
    text: String,
    finish: Option<String>,
    index: u32,
    last_pushed: bool,
    /// Responses API: the text the agent received per `(output_index, content_index)`, for
    /// the events that repeat a part's whole text.
    released: BTreeMap<(u64, u64), String>,
    /// Responses API: the next `sequence_number` (the chain changes how many events there are).
    seq: u64,
    done: bool,
    call: Option<CallRecord>,
    trail: Option<Trail>,
}

impl std::fmt::Debug for StreamReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReply")
            .field("api", &self.api)
            .field("ctx", &self.ctx)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl StreamReply {
    /// Headers for the agent's response.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    fn usage(&self) -> Usage {
        if self.api.provider() == "anthropic" {
            return anthropic::neutral_usage(&self.usage);
        }
        let mut u = Usage::default();
        self.usage.apply(&mut u);
        u
    }

    /// What a stream that ends early (cut by the agent or denied part-way) costs: the usage the
    /// provider reported, and at least the prompt's tokens and those of the text streamed so
    /// far. Providers bill what they generated, and an OpenAI stream reports its usage only in
    /// its last chunk: without this, a stream closed after one chunk would cost nothing.
    fn usage_so_far(&self) -> Usage {
        let mut u = self.usage();
        let meter = &self.gateway.meter;
        if u.input_tokens == 0 {
            u.input_tokens = meter.count_messages(&self.request.model, &self.request.messages);
        }
        u.output_tokens = u
            .output_tokens
            .max(meter.count_text(&self.request.model, &self.text));
        u
    }

    /// The next bytes for the agent; `Ok(None)` at the end.
    pub fn next_bytes(
        &mut self,
        interrupt: Interrupt<'_>,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Ok(Some(b));
            }
            if self.done {
                return Ok(None);
            }
            match self.events.next(interrupt) {
                Ok(Some(ev)) => self.process(ev)?,
                Ok(None) => {
                    self.flush_last()?;
                    self.complete(None);
                }
                Err(StreamError::Interrupted) => {
                    self.cancel("the agent stopped waiting");
                    return Err(GatewayError::Interrupted);
                }
                Err(StreamError::Provider(e)) => {
                    // The provider failed part-way; the agent has what it got so far.
                    self.complete(Some(e.clone()));
                    return Err(match e.kind {
                        ProviderErrorKind::Timeout => GatewayError::Timeout(e.message),
                        _ => GatewayError::Connection(e.message),
                    });
                }
            }
        }
    }

    fn emit(&mut self, ev: &SseEvent) {
        if self.api != Api::Responses {
            self.out.push_back(ev.to_bytes());
            return;
        }
        let ev = responses::rewrite_event(ev, &self.released, self.seq);
        self.seq += 1;
        if matches!(
            ev.event.as_deref(),
            Some("response.completed" | "response.incomplete")
        ) && let Some(answer) = serde_json::from_str::<serde_json::Value>(&ev.data)
            .ok()
            .and_then(|v| v.get("response").cloned())
        {
            let id = answer
                .get("id")
                .and_then(|i| i.as_str())
                .unwrap_or_default();
            self.gateway.remember(id, answer.to_string().as_bytes());
        }
        self.out.push_back(ev.to_bytes());
    }

    fn release_stop(&mut self) {
        if let Some(stop) = self.held_stop.take() {
            self.emit(&stop);
        }
    }

    /// Push one chunk through the chain; emits what it releases.
    fn push(&mut self, text: String, last: bool) -> Result<(), GatewayError> {
        let chunk = LlmChunk {
            index: self.index,
            text,
            finish_reason: if last { self.finish.clone() } else { None },
            usage: None,
            last,
        };
        self.index += 1;
        let run = self.stream.push(chunk);
        if let Some(t) = self.trail.as_mut() {
            t.absorb(Hook::LlmChunk, &run);
        }
        match run.outcome {
            Outcome::Continue { value } => {
                if !value.is_empty() {
                    let ev = match &self.template {
                        Some(t) => self.api.with_text(t, &value),
                        None => return Ok(()),
                    };
                    if self.api == Api::Responses
                        && let Some(slot) = responses::text_slot(&ev)
                    {
                        self.released.entry(slot).or_default().push_str(&value);
                    }
                    self.text.push_str(&value);
                    self.emit(&ev);
                }
                Ok(())
            }
            Outcome::Deny { policy, denial } => {
                let usage = self.usage_so_far();
                let run = self.gateway.chain.on_llm_abandoned(
                    &self.ctx,
                    self.request.clone(),
                    denial.clone(),
                    Some(policy.clone()),
                    Some(usage),
                );
                if let Some(t) = self.trail.as_mut() {
                    t.absorb(Hook::LlmAbandoned, &run);
                }
                self.done = true;
                self.out.clear();
                self.record(CallOutcome::Denied, Some(&denial.code), Some(usage));
                Err(GatewayError::Denied { policy, denial })
            }
            _ => Ok(()),
        }
    }

    fn flush_last(&mut self) -> Result<(), GatewayError> {
        if self.last_pushed {
            return Ok(());
        }
        self.last_pushed = true;
        self.push(String::new(), true)?;
        self.release_stop();
        Ok(())
    }

    fn process(&mut self, ev: SseEvent) -> Result<(), GatewayError> {
        let info = self.api.event_info(&ev);
        if let Some(u) = &info.usage {
            self.usage.merge(u);
        }
        if info.error.is_some() {
            self.release_stop();
            self.emit(&ev);
            return Ok(());
        }
        if let Some(text) = info.text {
            self.release_stop();
            if text.is_empty() || self.last_pushed {
                self.emit(&ev);
            } else {
                self.template = Some(ev);
                self.push(text, false)?;
            }
            return Ok(());
        }
        if self.api == Api::Responses && info.block_stop {
            // A text part is done: the chain releases what it held, the `done` event repeats
            // the part as the agent received it, and the next text part (if any) passes the
            // chain afresh.
            if self.template.is_some() && !self.last_pushed {
                self.push(String::new(), true)?;
                self.stream = self.gateway.chain.stream(&self.ctx);
                self.template = None;
            }
            self.emit(&ev);
            return Ok(());
        }
        if self.api == Api::Anthropic
            && info.block_stop
            && self.template.is_some()
            && !self.last_pushed
        {
            self.release_stop();
            self.held_stop = Some(ev);
            return Ok(());
        }
        if let Some(f) = info.finish {
            self.finish = Some(f);
            self.flush_last()?;
        }
        if info.done {
            self.flush_last()?;
        }
        if info.usage_only && !self.wants_usage {
            // The host asked for usage; the agent did not and will not see it.
        } else {
            self.release_stop();
            self.emit(&ev);
        }
        if info.done {
            self.complete(None);
        }
        Ok(())
    }

    /// The stream ended: `on-llm-response` with the answer as the agent received it
    /// (recorded, not applied: it was delivered), then the call is counted.
    fn complete(&mut self, failure: Option<ProviderError>) {
        if self.done {
            return;
        }
        self.done = true;
        let usage = self.usage();
        let outcome = match &failure {
            None => LlmOutcome::Ok(LlmResponse {
                id: String::new(),
                model: self.request.model.clone(),
                message: Message::text(Role::Assistant, self.text.clone()),
                finish_reason: self.finish.clone().unwrap_or_else(|| "stop".to_owned()),
                usage: Some(usage),
            }),
            Some(e) => LlmOutcome::Error(e.clone()),
        };
        let run = self
            .gateway
            .chain
            .on_llm_response(&self.ctx, self.request.clone(), outcome);
        if let Some(t) = self.trail.as_mut() {
            t.absorb(Hook::LlmResponse, &run);
        }
        let kind = if failure.is_some() {
            CallOutcome::Error
        } else {
            CallOutcome::Ok
        };
        self.record(kind, None, Some(usage));
    }

    fn cancel(&mut self, why: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let usage = self.usage_so_far();
        let run = self.gateway.chain.on_llm_abandoned(
            &self.ctx,
            self.request.clone(),
            Denial {
                code: "cancelled".to_owned(),
                message: why.to_owned(),
                retry_after_ms: None,
            },
            None,
            Some(usage),
        );
        if let Some(t) = self.trail.as_mut() {
            t.absorb(Hook::LlmAbandoned, &run);
        }
        self.record(CallOutcome::Cancelled, None, Some(usage));
    }

    fn record(&mut self, outcome: CallOutcome, code: Option<&str>, usage: Option<Usage>) {
        if let (Some(call), Some(trail)) = (self.call.take(), self.trail.take()) {
            let status = (outcome == CallOutcome::Ok).then_some(200);
            self.gateway
                .finish(&call, trail, outcome, status, code, usage);
        }
    }
}

impl Drop for StreamReply {
    /// An agent that stops reading part-way abandons the call: reservations are released.
    fn drop(&mut self) {
        self.cancel("the agent closed the stream before its end");
    }
}
