//! The built-in LLM simulator: the offline default when no provider key is set.
//!
//! It takes the request body exactly as a provider would receive it and answers in that
//! provider's wire format (JSON or SSE, with `usage`), so the official SDKs parse its answers.
//! Answers are deterministic for a seed: the same seed and request give the same text, ids and
//! token counts. Token counts come from the host's meter (tiktoken for OpenAI models).
//! Failures (rate limits, 500s, overloads, timeouts) can be injected at given call numbers or
//! at a rate drawn from the seed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use super::sse::SseEvent;
use super::stable_hash;
use super::wire::Api;
use crate::policy::host::TokenMeter;
use crate::policy::model::{
    ContentPart, LlmResponse, Message, ProviderError, ProviderErrorKind, Role, Usage,
};

/// The model name that makes the simulator answer with the last user message as received.
pub const ECHO_MODEL: &str = "echo";

/// `[simulator]` in `ironhost.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SimulatorConfig {
    /// Seed of every choice the simulator makes.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Time before each answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// Answer every request with its last user message, whatever the model.
    #[serde(default)]
    pub echo: bool,
    /// Failures to inject.
    #[serde(default)]
    pub failures: Vec<FailureRule>,
    /// Fixed answers for prompts that contain a given text.
    #[serde(default)]
    pub replies: Vec<ReplyRule>,
}

fn default_seed() -> u64 {
    42
}

impl Default for SimulatorConfig {
    fn default() -> SimulatorConfig {
        SimulatorConfig {
            seed: default_seed(),
            latency_ms: 0,
            echo: false,
            failures: Vec::new(),
            replies: Vec::new(),
        }
    }
}

/// What kind of failure to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// HTTP 429 with `Retry-After`.
    RateLimit,
    /// HTTP 500.
    ServerError,
    /// HTTP 529 (Anthropic) / 503 (OpenAI): the provider is overloaded.
    Overloaded,
    /// No answer: the call runs into the host's request timeout.
    Timeout,
}

/// `[[simulator.failures]]`: fail the calls it matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FailureRule {
    pub kind: FailureKind,
    /// 1-based numbers of the calls (attempts, retries included) to fail.
    #[serde(default)]
    pub at_calls: Vec<u64>,
    /// Probability of failing any other call, drawn from the seed.
    #[serde(default)]
    pub rate: f64,
    /// `Retry-After` sent with a rate limit.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Only calls to this model.
    #[serde(default)]
    pub model: Option<String>,
}

/// `[[simulator.replies]]`: answer prompts containing `when` with `text`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReplyRule {
    /// Text the last user message must contain.
    pub when: String,
    /// The answer.
    pub text: String,
}

impl SimulatorConfig {
    /// Why this configuration cannot work, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        for (i, f) in self.failures.iter().enumerate() {
            if !(0.0..=1.0).contains(&f.rate) {
                return Err(format!(
                    "simulator.failures[{i}].rate: {} is not a probability between 0 and 1",
                    f.rate
                ));
            }
            if f.at_calls.contains(&0) {
                return Err(format!(
                    "simulator.failures[{i}].at-calls: calls are numbered from 1"
                ));
            }
        }
        Ok(())
    }
}

/// What the simulator answers.
#[derive(Debug, Clone, PartialEq)]
pub enum SimReply {
    /// A JSON body (an answer or an error) with its status and headers.
    Json {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A streamed answer.
    Stream(Vec<SseEvent>),
    /// No answer at all: the caller's timeout decides.
    Timeout,
}

/// The simulator. Cheap to share; calls are numbered across all users of one instance.
pub struct Simulator {
    config: SimulatorConfig,
    meter: Arc<dyn TokenMeter>,
    calls: AtomicU64,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("config", &self.config)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

/// SplitMix64: a small, good, seedable generator; enough for choosing words and failures.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const OPENINGS: [&str; 6] = [
    "Here is a short answer.",
    "Sure.",
    "Good question.",
    "Based on what you shared,",
    "In brief:",
    "Looking at this request,",
];

const SENTENCES: [&str; 12] = [
    "The main point is to keep the scope small and measurable.",
    "A practical next step is to confirm the requirements with the team.",
    "The data suggests steady growth over the last two quarters.",
    "Prioritise the options with the best ratio of value to effort.",
    "There are three factors to weigh: cost, timing and risk.",
    "It would help to compare this with last year's results.",
    "The simplest approach is usually the most robust one.",
    "Most teams start with a pilot before a full rollout.",
    "The company appears to be a good fit for a follow-up.",
    "Consider the customer's budget cycle when planning outreach.",
    "A clear summary makes the decision easier for everyone.",
    "The numbers look consistent with the market trend.",
];

fn last_user_text(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| {
            m.content
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    ContentPart::ToolOutput { content, .. } => Some(content.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

impl Simulator {
    pub fn new(config: SimulatorConfig, meter: Arc<dyn TokenMeter>) -> Simulator {
        Simulator {
            config,
            meter,
            calls: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.config
    }

    /// Time to wait before the answer.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.config.latency_ms)
    }

    /// Calls answered so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Answer a request body sent to `api`, as the provider would.
    pub fn handle(&self, api: Api, body: &[u8]) -> SimReply {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let parsed = match api.parse_request(body) {
            Ok(p) => p,
            Err(e) => return self.error(api, ProviderErrorKind::InvalidRequest, 400, &e.0, None),
        };
        let request = parsed.request;
        if api == Api::Anthropic && request.max_output_tokens.is_none() {
            return self.error(
                api,
                ProviderErrorKind::InvalidRequest,
                400,
                "max_tokens: Field required",
                None,
            );
        }
        if let Some(reply) = self.injected_failure(api, call, &request.model) {
            return reply;
        }
        let prompt = last_user_text(&request.messages);
        let text = if self.config.echo || request.model == ECHO_MODEL {
            prompt.clone()
        } else if let Some(rule) = self
            .config
            .replies
            .iter()
            .find(|r| prompt.contains(&r.when))
        {
            rule.text.clone()
        } else {
            self.compose(&request.model, &prompt)
        };
        let (text, finish) = self.fit(&request.model, text, request.max_output_tokens);
        let usage = Usage {
            input_tokens: self.meter.count_messages(&request.model, &request.messages),
            output_tokens: self.meter.count_text(&request.model, &text),
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
        };
        let id_hash = stable_hash(&[&self.config.seed.to_le_bytes(), &call.to_le_bytes()]);
        let id = match api {
            Api::OpenAi => format!("chatcmpl-sim{id_hash:016x}"),
            Api::Anthropic => format!("msg_sim{id_hash:016x}"),
        };
        let mut response = LlmResponse::text(&request.model, &text, Some(usage));
        response.id = id;
        response.finish_reason = finish;
        if request.stream {
            SimReply::Stream(api.render_stream(&response, parsed.wants_stream_usage))
        } else {
            SimReply::Json {
                status: 200,
                headers: vec![("content-type".to_owned(), "application/json".to_owned())],
                body: api.render_response(None, &response),
            }
        }
    }

    fn injected_failure(&self, api: Api, call: u64, model: &str) -> Option<SimReply> {
        let mut rng = Rng(stable_hash(&[
            &self.config.seed.to_le_bytes(),
            b"failure",
            &call.to_le_bytes(),
        ]));
        let rule = self.config.failures.iter().find(|f| {
            let draw = rng.unit();
            f.model.as_deref().is_none_or(|m| m == model)
                && (f.at_calls.contains(&call) || draw < f.rate)
        })?;
        Some(match rule.kind {
            FailureKind::RateLimit => {
                let wait = rule.retry_after_ms.unwrap_or(1000);
                self.error(
                    api,
                    ProviderErrorKind::RateLimited,
                    429,
                    &format!("Rate limit reached for {model} (simulated, call {call})"),
                    Some(wait),
                )
            }
            FailureKind::ServerError => self.error(
                api,
                ProviderErrorKind::ServerError,
                500,
                &format!(
                    "The server had an error processing your request (simulated, call {call})"
                ),
                None,
            ),
            FailureKind::Overloaded => self.error(
                api,
                ProviderErrorKind::ServerError,
                if api == Api::Anthropic { 529 } else { 503 },
                &format!("Overloaded (simulated, call {call})"),
                None,
            ),
            FailureKind::Timeout => SimReply::Timeout,
        })
    }

    fn error(
        &self,
        api: Api,
        kind: ProviderErrorKind,
        status: u16,
        message: &str,
        retry_after_ms: Option<u64>,
    ) -> SimReply {
        let e = ProviderError {
            kind,
            status: Some(status),
            message: message.to_owned(),
            retry_after_ms,
        };
        let (status, body) = api.render_error(&e);
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(ms) = retry_after_ms {
            headers.push(("retry-after".to_owned(), ms.div_ceil(1000).to_string()));
            headers.push(("retry-after-ms".to_owned(), ms.to_string()));
        }
        SimReply::Json {
            status,
            headers,
            body,
        }
    }

    /// A deterministic answer: the same seed, model and prompt give the same text.
    fn compose(&self, model: &str, prompt: &str) -> String {
        let mut rng = Rng(stable_hash(&[
            &self.config.seed.to_le_bytes(),
            model.as_bytes(),
            prompt.as_bytes(),
        ]));
        let mut out = String::from(OPENINGS[rng.below(OPENINGS.len())]);
        for _ in 0..2 + rng.below(3) {
            out.push(' ');
            out.push_str(SENTENCES[rng.below(SENTENCES.len())]);
        }
        out
    }

    /// Cut the answer to `max` output tokens, as a provider stops at the limit.
    fn fit(&self, model: &str, text: String, max: Option<u32>) -> (String, String) {
        let Some(max) = max else {
            return (text, "stop".to_owned());
        };
        if self.meter.count_text(model, &text) <= max {
            return (text, "stop".to_owned());
        }
        let mut kept = String::new();
        for piece in super::openai::pieces(&text) {
            let candidate = format!("{kept}{piece}");
            if self.meter.count_text(model, &candidate) > max {
                break;
            }
            kept = candidate;
        }
        (kept, "length".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::tokens::ModelTokenMeter;

    fn sim(config: SimulatorConfig) -> Simulator {
        Simulator::new(config, Arc::new(ModelTokenMeter::embedded()))
    }

    fn openai(model: &str, text: &str, extra: &str) -> Vec<u8> {
        format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":{}}}]{extra}}}"#,
            serde_json::Value::String(text.to_owned())
        )
        .into_bytes()
    }

    fn body(reply: SimReply) -> serde_json::Value {
        match reply {
            SimReply::Json { body, .. } => serde_json::from_slice(&body).unwrap(),
            other => panic!("expected JSON, got {other:?}"),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_answer() {
        let a =
            body(sim(SimulatorConfig::default()).handle(Api::OpenAi, &openai("gpt-4o", "hi", "")));
        let b =
            body(sim(SimulatorConfig::default()).handle(Api::OpenAi, &openai("gpt-4o", "hi", "")));
        assert_eq!(a["choices"], b["choices"]);
        assert_eq!(a["id"], b["id"]);
        let c = body(
            sim(SimulatorConfig {
                seed: 7,
                ..SimulatorConfig::default()
            })
            .handle(Api::OpenAi, &openai("gpt-4o", "hi", "")),
        );
        assert_ne!(a["id"], c["id"]);
    }

    #[test]
    fn usage_is_counted_with_the_models_tokenizer() {
        let meter = ModelTokenMeter::embedded();
        let v = body(
            sim(SimulatorConfig::default())
                .handle(Api::OpenAi, &openai("gpt-4o", "hello world", "")),
        );
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(
            v["usage"]["completion_tokens"],
            meter.count_text("gpt-4o", text)
        );
        assert_eq!(
            v["usage"]["prompt_tokens"],
            meter.count_messages("gpt-4o", &[Message::text(Role::User, "hello world")])
        );
    }

    #[test]
    fn echo_answers_with_what_arrived() {
        let v = body(
            sim(SimulatorConfig::default())
                .handle(Api::OpenAi, &openai(ECHO_MODEL, "mail a@b.co", "")),
        );
        assert_eq!(v["choices"][0]["message"]["content"], "mail a@b.co");
    }

    #[test]
    fn max_tokens_cuts_the_answer() {
        let v = body(
            sim(SimulatorConfig::default())
                .handle(Api::OpenAi, &openai("gpt-4o", "hi", r#","max_tokens":3"#)),
        );
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
    }

    #[test]
    fn failures_are_injected_at_call_numbers() {
        let s = sim(SimulatorConfig {
            failures: vec![FailureRule {
                kind: FailureKind::RateLimit,
                at_calls: vec![2],
                rate: 0.0,
                retry_after_ms: Some(1500),
                model: None,
            }],
            ..SimulatorConfig::default()
        });
        let req = openai("gpt-4o", "hi", "");
        assert!(matches!(
            s.handle(Api::OpenAi, &req),
            SimReply::Json { status: 200, .. }
        ));
        match s.handle(Api::OpenAi, &req) {
            SimReply::Json {
                status, headers, ..
            } => {
                assert_eq!(status, 429);
                assert!(headers.contains(&("retry-after".to_owned(), "2".to_owned())));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.handle(Api::OpenAi, &req),
            SimReply::Json { status: 200, .. }
        ));
    }

    #[test]
    fn anthropic_requires_max_tokens_like_the_real_api() {
        let body = br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#;
        match sim(SimulatorConfig::default()).handle(Api::Anthropic, body) {
            SimReply::Json { status, body, .. } => {
                assert_eq!(status, 400);
                assert!(String::from_utf8_lossy(&body).contains("invalid_request_error"));
            }
            other => panic!("{other:?}"),
        }
    }
}
