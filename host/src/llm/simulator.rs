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

use std::collections::VecDeque;

use parking_lot::Mutex;

use super::api::Api;
use super::sse::SseEvent;
use super::upstream::{Egress, EventStream, Interrupt, Upstream, UpstreamReply, sleep};
use super::wire::ParsedRequest;
use super::{inputs, responses, schema, stable_hash};
use crate::model::TokenMeter;
use crate::model::{
    ContentPart, LlmRequest, LlmResponse, Message, ProviderError, ProviderErrorKind, Role, ToolUse,
    Usage,
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

/// `[[simulator.replies]]`: answer prompts containing `when` with `text`, or with a call of
/// the tool `tool` (with `arguments`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReplyRule {
    /// Text the last user message (tool results aside) must contain.
    pub when: String,
    /// The answer.
    #[serde(default)]
    pub text: Option<String>,
    /// Answer with a call of this tool: only when the request offers it, and not right after a
    /// tool result (so the agent's next turn gets an answer, not the same call again).
    #[serde(default)]
    pub tool: Option<String>,
    /// The tool call's arguments (a table; `{}` if unset).
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
}

impl ReplyRule {
    /// Whether the rule answers a request whose prompt is `prompt` and that offers the tools
    /// `offered`.
    fn answers(&self, prompt: &str, offered: &[String], request: &LlmRequest) -> bool {
        if !prompt.contains(&self.when) {
            return false;
        }
        match &self.tool {
            None => true,
            Some(name) => {
                offered.contains(name) && !request.messages.last().is_some_and(is_tool_result)
            }
        }
    }
}

/// The names of the tools a request lets the model call: none with `tool_choice` "none", only
/// the named one when it names one. Read from the body as sent, so tools the neutral form
/// leaves aside (Anthropic `cache_control`, server tools) count too.
fn offered_tools(original: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    let choice = original.get("tool_choice");
    let kind = choice.and_then(|c| c.as_str().or_else(|| c.get("type")?.as_str()));
    if kind == Some("none") {
        return Vec::new();
    }
    // OpenAI {"type":"function","function":{"name":…}}; Anthropic {"type":"tool","name":…}.
    let named = choice.and_then(|c| {
        c.pointer("/function/name")
            .or_else(|| c.get("name"))
            .and_then(Value::as_str)
    });
    original
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
        })
        .filter(|name| named.is_none_or(|n| n == *name))
        .map(str::to_owned)
        .collect()
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
        for (i, r) in self.replies.iter().enumerate() {
            let at = format!("simulator.replies[{i}]");
            match (&r.text, &r.tool) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{at}: has both `text` and `tool`; a reply is one or the other"
                    ));
                }
                (None, None) => {
                    return Err(format!(
                        "{at}: needs `text` (an answer) or `tool` (a tool call)"
                    ));
                }
                (Some(_), None) if r.arguments.is_some() => {
                    return Err(format!("{at}.arguments: only a `tool` reply has arguments"));
                }
                _ => {}
            }
            if r.tool.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(format!("{at}.tool: the tool name is empty"));
            }
            if r.arguments.as_ref().is_some_and(|a| !a.is_object()) {
                return Err(format!(
                    "{at}.arguments: must be a table (the tool call's JSON object)"
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
    /// The latest Responses API ids it answered, for `previous_response_id`.
    issued: Mutex<VecDeque<String>>,
}

/// How many Responses API ids the simulator remembers.
const ISSUED_KEPT: usize = 4096;

fn json_reply(body: Vec<u8>) -> SimReply {
    SimReply::Json {
        status: 200,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body,
    }
}

/// How many answers the request asks for (OpenAI's `n`).
fn choices(original: &serde_json::Map<String, serde_json::Value>) -> u32 {
    original
        .get("n")
        .and_then(serde_json::Value::as_u64)
        .map_or(1, |n| u32::try_from(n.clamp(1, 128)).unwrap_or(1))
}

/// The schema the answer's text must follow: chat's `response_format` (`json_schema`, or
/// `json_object`: any object), the Responses API's `text.format`.
fn output_schema(
    original: &serde_json::Map<String, serde_json::Value>,
) -> Option<serde_json::Value> {
    use serde_json::{Value, json};
    let format = original
        .get("response_format")
        .or_else(|| original.get("text").and_then(|t| t.get("format")))?;
    match format.get("type").and_then(Value::as_str)? {
        "json_object" => Some(json!({"type": "object", "properties": {
            "answer": {"type": "string"}}, "required": ["answer"]})),
        // Chat nests the schema under `json_schema`; the Responses API does not.
        "json_schema" => format
            .pointer("/json_schema/schema")
            .or_else(|| format.get("schema"))
            .cloned()
            .or_else(|| Some(json!({"type": "object"}))),
        _ => None,
    }
}

/// The tool a request forces the model to call, with its parameter schema: OpenAI's
/// `{"type": "function", "function": {"name"}}` (chat) or `{"type": "function", "name"}`
/// (responses), Anthropic's `{"type": "tool", "name"}`; `required` / `any` with one tool.
fn forced_tool(
    original: &serde_json::Map<String, serde_json::Value>,
) -> Option<(String, serde_json::Value)> {
    use serde_json::Value;
    let choice = original.get("tool_choice")?;
    let tools = original.get("tools")?.as_array()?;
    let name_of = |t: &Value| {
        t.pointer("/function/name")
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let schema_of = |t: &Value| {
        t.pointer("/function/parameters")
            .or_else(|| t.get("parameters"))
            .or_else(|| t.get("input_schema"))
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"type": "object"}))
    };
    let wanted = match choice {
        Value::String(s) if s == "required" || s == "any" => None,
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("any") => None,
            Some("function" | "tool") => Some(name_of(choice)?),
            _ => return None,
        },
        _ => return None,
    };
    let tool = match wanted {
        Some(name) => tools
            .iter()
            .find(|t| name_of(t).as_deref() == Some(name.as_str()))?,
        None => tools.first()?,
    };
    Some((name_of(tool)?, schema_of(tool)))
}

/// A unit vector of `dims` drawn from the words of `text`.
fn embed(text: &str, dims: usize, seed: u64) -> Vec<f32> {
    let mut sum = vec![0f64; dims];
    let mut words = 0;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        words += 1;
        let lower = word.to_lowercase();
        let mut rng = Rng(stable_hash(&[&seed.to_le_bytes(), lower.as_bytes()]));
        for v in &mut sum {
            *v += rng.unit() * 2.0 - 1.0;
        }
    }
    if words == 0 {
        let mut rng = Rng(stable_hash(&[&seed.to_le_bytes(), b"empty"]));
        for v in &mut sum {
            *v = rng.unit() * 2.0 - 1.0;
        }
    }
    let norm = sum
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    sum.iter().map(|v| (v / norm) as f32).collect()
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

/// A user message's text parts (and its tool results' text, with `tool_outputs`), one per line.
fn user_text(m: &Message, tool_outputs: bool) -> String {
    m.content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } => Some(text.as_str()),
            ContentPart::ToolOutput { content, .. } if tool_outputs => Some(content.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last user message (or tool result) as received: what `echo` answers with.
fn last_user_text(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User || m.role == Role::Tool)
        .map(|m| user_text(m, true))
        .unwrap_or_default()
}

/// The text of the last user message that has any, tool results aside: what reply rules match.
fn last_user_prompt(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .filter(|m| m.role == Role::User)
        .map(|m| user_text(m, false))
        .find(|t| !t.is_empty())
        .unwrap_or_default()
}

/// Whether a message carries tool results (OpenAI's `tool` role, Anthropic's `tool_result`).
fn is_tool_result(m: &Message) -> bool {
    m.role == Role::Tool
        || m.content
            .iter()
            .any(|p| matches!(p, ContentPart::ToolOutput { .. }))
}

impl Simulator {
    pub fn new(config: SimulatorConfig, meter: Arc<dyn TokenMeter>) -> Simulator {
        Simulator {
            config,
            meter,
            calls: AtomicU64::new(0),
            issued: Mutex::new(VecDeque::new()),
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
        let request = &parsed.request;
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
        let id_hash = stable_hash(&[&self.config.seed.to_le_bytes(), &call.to_le_bytes()]);
        match api {
            Api::Embeddings => return self.embeddings(&parsed),
            Api::Moderations => {
                let inputs = &request.messages[0].content;
                let model = match request.model.as_str() {
                    "omni-moderation-latest" => "omni-moderation-2024-09-26",
                    "text-moderation-latest" => "text-moderation-007",
                    other => other,
                };
                let body =
                    inputs::moderation_body(&format!("modr-sim{id_hash:016x}"), model, inputs);
                return json_reply(body.to_string().into_bytes());
            }
            Api::CountTokens => {
                let n = self.meter.count_messages(&request.model, &request.messages);
                return json_reply(
                    serde_json::json!({ "input_tokens": n })
                        .to_string()
                        .into_bytes(),
                );
            }
            Api::Responses => {
                if let Some(prev) = parsed
                    .original
                    .get("previous_response_id")
                    .and_then(serde_json::Value::as_str)
                    && !self.issued.lock().iter().any(|id| id == prev)
                {
                    return self.error(
                        api,
                        ProviderErrorKind::InvalidRequest,
                        400,
                        &format!("Previous response with id '{prev}' not found."),
                        None,
                    );
                }
            }
            _ => {}
        }
        let mut response = self.answer(api, &parsed, id_hash);
        response.id = match api {
            Api::OpenAi => format!("chatcmpl-sim{id_hash:016x}"),
            Api::Anthropic => format!("msg_sim{id_hash:016x}"),
            Api::Responses => format!("resp_sim{id_hash:016x}"),
            _ => format!("cmpl-sim{id_hash:016x}"),
        };
        if api == Api::Responses {
            let mut issued = self.issued.lock();
            if issued.len() >= ISSUED_KEPT {
                issued.pop_front();
            }
            issued.push_back(response.id.clone());
        }
        let choices = choices(&parsed.original);
        if api == Api::Responses {
            return if request.stream {
                SimReply::Stream(responses::render_stream(Some(&parsed.original), &response))
            } else {
                json_reply(
                    responses::answer_object(Some(&parsed.original), &response)
                        .to_string()
                        .into_bytes(),
                )
            };
        }
        if request.stream {
            return SimReply::Stream(api.render_stream(&response, parsed.wants_stream_usage));
        }
        let body = if choices > 1 && matches!(api, Api::OpenAi | Api::Completions) {
            self.several(api, &parsed, &response, choices)
        } else {
            api.render_response(None, &response)
        };
        json_reply(body)
    }

    /// The answer to a generating request: a reply rule's, a forced tool call, structured
    /// output for a schema, the echo, or composed text.
    fn answer(&self, api: Api, parsed: &ParsedRequest, id_hash: u64) -> LlmResponse {
        let request = &parsed.request;
        let echo = self.config.echo || request.model == ECHO_MODEL;
        let prompt_text = last_user_text(&request.messages);
        let after_tool = request.messages.last().is_some_and(is_tool_result);
        // The echo of a prompt that is itself a JSON object is that object: a structured
        // answer (or forced tool call) that shows what the provider received.
        let echoed_json = || {
            echo.then(|| serde_json::from_str::<serde_json::Value>(prompt_text.trim()).ok())
                .flatten()
                .filter(serde_json::Value::is_object)
        };
        let rule = if echo {
            None
        } else {
            let prompt = last_user_prompt(&request.messages);
            let offered = offered_tools(&parsed.original);
            self.config
                .replies
                .iter()
                .find(|r| r.answers(&prompt, &offered, request))
        };
        if let Some(ReplyRule {
            tool: Some(name),
            arguments,
            ..
        }) = rule
        {
            return self.tool_call(api, request, id_hash, name, arguments.as_ref());
        }
        // A tool the request forces (`tool_choice`), called with arguments its schema accepts:
        // how LangChain and others ask for structured output.
        if rule.is_none()
            && !after_tool
            && let Some((name, schema)) = forced_tool(&parsed.original)
        {
            let args = echoed_json().unwrap_or_else(|| {
                schema::instance(&schema, self.config.seed ^ id_hash, &prompt_text)
            });
            return self.tool_call(api, request, id_hash, &name, Some(&args));
        }
        let text = match rule {
            Some(ReplyRule {
                text: Some(text), ..
            }) => text.clone(),
            _ => match output_schema(&parsed.original) {
                Some(schema) => match echoed_json() {
                    Some(json) => json.to_string(),
                    None => {
                        let hint = if echo {
                            prompt_text.clone()
                        } else {
                            self.compose(&request.model, &prompt_text)
                        };
                        schema::instance(&schema, self.config.seed, &hint).to_string()
                    }
                },
                None if echo => prompt_text,
                None => self.compose(&request.model, &prompt_text),
            },
        };
        let (text, finish) = self.fit(&request.model, text, request.max_output_tokens);
        let usage = self.usage(request, &text);
        let mut response = LlmResponse::text(&request.model, &text, Some(usage));
        response.finish_reason = finish;
        response
    }

    /// An answer with `n` choices: the first is `first`, the others composed with their own
    /// seed (or the same echo); usage counts every choice's output.
    fn several(&self, api: Api, parsed: &ParsedRequest, first: &LlmResponse, n: u32) -> Vec<u8> {
        let request = &parsed.request;
        let echo = self.config.echo || request.model == ECHO_MODEL;
        let prompt = last_user_text(&request.messages);
        let mut texts = vec![first.message.joined_text()];
        for i in 1..n {
            let text = if echo {
                prompt.clone()
            } else {
                self.compose(&request.model, &format!("{prompt}\u{0}{i}"))
            };
            texts.push(self.fit(&request.model, text, request.max_output_tokens).0);
        }
        let output: u32 = texts
            .iter()
            .map(|t| self.meter.count_text(&request.model, t))
            .sum();
        let mut response = first.clone();
        response.message = Message {
            role: Role::Assistant,
            content: texts
                .into_iter()
                .map(|text| ContentPart::Text { text })
                .collect(),
        };
        if let Some(u) = &mut response.usage {
            u.output_tokens = output;
        }
        match api {
            Api::OpenAi => super::openai::render_choices(&response),
            _ => api.render_response(None, &response),
        }
    }

    /// Deterministic embeddings of the model's dimension (or `dimensions`), one per input:
    /// each word adds a vector drawn from its hash, and the sum is scaled to length 1, so
    /// texts that share words point the same way. `encoding_format: "base64"` (what the
    /// `openai` SDK asks for) packs little-endian `f32`s.
    fn embeddings(&self, parsed: &ParsedRequest) -> SimReply {
        use base64::Engine as _;
        use serde_json::{Value, json};
        let request = &parsed.request;
        let dims = parsed
            .original
            .get("dimensions")
            .and_then(Value::as_u64)
            .map_or_else(
                || match request.model.as_str() {
                    m if m.starts_with("text-embedding-3-large") => 3072,
                    _ => 1536,
                },
                |d| d.clamp(1, 8192) as usize,
            );
        let base64 = parsed
            .original
            .get("encoding_format")
            .and_then(Value::as_str)
            == Some("base64");
        let mut data = Vec::new();
        let mut tokens = 0u32;
        for (index, part) in request.messages[0].content.iter().enumerate() {
            let text = match part {
                ContentPart::Text { text } => {
                    tokens = tokens.saturating_add(self.meter.count_text(&request.model, text));
                    text.clone()
                }
                ContentPart::Other { json } => {
                    let ids: Vec<Value> = serde_json::from_str::<Value>(json)
                        .ok()
                        .and_then(|v| v.as_array().cloned())
                        .unwrap_or_default();
                    tokens =
                        tokens.saturating_add(u32::try_from(ids.len().max(1)).unwrap_or(u32::MAX));
                    json.clone()
                }
                _ => String::new(),
            };
            let vector = embed(&text, dims, self.config.seed);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
        }
        let body = json!({"object": "list", "data": data, "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
        json_reply(body.to_string().into_bytes())
    }

    fn usage(&self, request: &LlmRequest, output: &str) -> Usage {
        Usage {
            input_tokens: self.meter.count_messages(&request.model, &request.messages),
            output_tokens: self.meter.count_text(&request.model, output),
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
        }
    }

    /// An answer that calls the tool `name`, in the provider's form (`tool_calls` with finish
    /// `tool_calls`; a `tool_use` block with stop `tool_use`).
    fn tool_call(
        &self,
        api: Api,
        request: &LlmRequest,
        id_hash: u64,
        name: &str,
        arguments: Option<&serde_json::Value>,
    ) -> LlmResponse {
        let arguments = arguments.map_or_else(|| "{}".to_owned(), |a| a.to_string());
        let id = match api {
            Api::Anthropic => format!("toolu_sim{id_hash:016x}"),
            _ => format!("call_sim{id_hash:016x}"),
        };
        let usage = self.usage(request, &format!("{name}{arguments}"));
        LlmResponse {
            id: String::new(),
            model: request.model.clone(),
            message: Message {
                role: Role::Assistant,
                content: vec![ContentPart::ToolUse(ToolUse {
                    id,
                    name: name.to_owned(),
                    arguments,
                })],
            },
            finish_reason: "tool-use".to_owned(),
            usage: Some(usage),
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

/// The simulator as the gateway's upstream: it answers after its configured latency, in the
/// provider's wire format.
impl Upstream for Simulator {
    fn send(
        &self,
        egress: Egress<'_>,
        timeout: Duration,
        interrupt: Interrupt<'_>,
    ) -> UpstreamReply {
        if !sleep(self.latency(), interrupt) {
            return UpstreamReply::Interrupted;
        }
        match self.handle(egress.api, &egress.body) {
            SimReply::Json {
                status,
                headers,
                body,
            } => UpstreamReply::Body {
                status,
                headers,
                body,
            },
            SimReply::Stream(events) => UpstreamReply::Stream {
                headers: vec![(
                    "content-type".to_owned(),
                    "text/event-stream; charset=utf-8".to_owned(),
                )],
                events: EventStream::Ready(events.into_iter()),
            },
            SimReply::Timeout => {
                if !sleep(timeout, interrupt) {
                    return UpstreamReply::Interrupted;
                }
                UpstreamReply::Failed(ProviderError {
                    kind: ProviderErrorKind::Timeout,
                    status: None,
                    message: format!(
                        "no answer within {} ms (simulated timeout)",
                        timeout.as_millis()
                    ),
                    retry_after_ms: None,
                })
            }
        }
    }

    fn is_simulator(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tokens::ModelTokenMeter;

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

    fn weather_rules() -> SimulatorConfig {
        SimulatorConfig {
            replies: vec![
                ReplyRule {
                    when: "weather in Paris".to_owned(),
                    text: None,
                    tool: Some("get_weather".to_owned()),
                    arguments: Some(serde_json::json!({"city": "Paris", "days": 2})),
                },
                ReplyRule {
                    when: "weather in Paris".to_owned(),
                    text: Some("Sunny in Paris.".to_owned()),
                    tool: None,
                    arguments: None,
                },
            ],
            ..SimulatorConfig::default()
        }
    }

    const OPENAI_TOOLS: &str = r#","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]"#;

    #[test]
    fn a_tool_reply_calls_the_tool_in_openais_form_then_the_result_gets_an_answer() {
        let s = sim(weather_rules());
        let v = body(s.handle(
            Api::OpenAi,
            &openai("gpt-4o", "What is the weather in Paris?", OPENAI_TOOLS),
        ));
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], serde_json::Value::Null);
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        assert!(call["id"].as_str().unwrap().starts_with("call_sim"));
        let args: serde_json::Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, serde_json::json!({"city": "Paris", "days": 2}));
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);

        // The tool's result comes back: the same prompt now gets the text reply.
        let next = format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"What is the weather in Paris?"}},
            {{"role":"assistant","content":null,"tool_calls":[{call}]}},
            {{"role":"tool","tool_call_id":{id},"content":"18 C"}}]{OPENAI_TOOLS}}}"#,
            id = call["id"]
        );
        let v = body(s.handle(Api::OpenAi, next.as_bytes()));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["choices"][0]["message"]["content"], "Sunny in Paris.");

        // A request that does not offer the tool gets text.
        let v = body(s.handle(Api::OpenAi, &openai("gpt-4o", "weather in Paris", "")));
        assert_eq!(v["choices"][0]["message"]["content"], "Sunny in Paris.");
    }

    #[test]
    fn a_tool_reply_calls_the_tool_in_anthropics_form_json_and_stream() {
        let s = sim(weather_rules());
        let request = |stream: bool| {
            format!(
                r#"{{"model":"claude-sonnet-4-5","max_tokens":200,"stream":{stream},
                "messages":[{{"role":"user","content":"weather in Paris?"}}],
                "tools":[{{"name":"get_weather","input_schema":{{"type":"object"}}}}]}}"#
            )
        };
        let v = body(s.handle(Api::Anthropic, request(false).as_bytes()));
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["content"][0]["type"], "tool_use");
        assert_eq!(v["content"][0]["name"], "get_weather");
        assert!(
            v["content"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("toolu_sim")
        );
        assert_eq!(
            v["content"][0]["input"],
            serde_json::json!({"city": "Paris", "days": 2})
        );
        let SimReply::Stream(events) = s.handle(Api::Anthropic, request(true).as_bytes()) else {
            panic!("expected a stream");
        };
        let data: Vec<serde_json::Value> = events
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert!(data.iter().any(|d| d["type"] == "content_block_start"
            && d["content_block"]["type"] == "tool_use"
            && d["content_block"]["name"] == "get_weather"));
        let json: String = data
            .iter()
            .filter(|d| d["delta"]["type"] == "input_json_delta")
            .map(|d| d["delta"]["partial_json"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            serde_json::json!({"city": "Paris", "days": 2})
        );
        assert!(
            data.iter()
                .any(|d| d["type"] == "message_delta" && d["delta"]["stop_reason"] == "tool_use")
        );

        // The turn after the tool's result (a user message of tool_result only) gets the text.
        let after = br#"{"model":"claude-sonnet-4-5","max_tokens":200,
            "messages":[{"role":"user","content":"weather in Paris?"},
              {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18 C"}]}],
            "tools":[{"name":"get_weather","input_schema":{"type":"object"}}]}"#;
        let v = body(s.handle(Api::Anthropic, after));
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["content"][0]["text"], "Sunny in Paris.");
    }

    #[test]
    fn tool_choice_and_tools_kept_aside_decide_what_is_offered() {
        let s = sim(weather_rules());
        let ask = |extra: &str| {
            let v = body(
                s.handle(
                    Api::Anthropic,
                    format!(
                        r#"{{"model":"claude-sonnet-4-5","max_tokens":200,
                    "messages":[{{"role":"user","content":"weather in Paris?"}}]{extra}}}"#
                    )
                    .as_bytes(),
                ),
            );
            v["stop_reason"].as_str().unwrap().to_owned()
        };
        let cached = r#","tools":[{"name":"get_weather","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}]"#;
        assert_eq!(ask(cached), "tool_use");
        assert_eq!(
            ask(&format!(r#"{cached},"tool_choice":{{"type":"none"}}"#)),
            "end_turn"
        );
        assert_eq!(
            ask(&format!(
                r#"{cached},"tool_choice":{{"type":"tool","name":"other"}}"#
            )),
            "end_turn"
        );
        let v = body(s.handle(
            Api::OpenAi,
            &openai(
                "gpt-4o",
                "weather in Paris",
                &format!(r#"{OPENAI_TOOLS},"tool_choice":"none""#),
            ),
        ));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn reply_rules_are_checked() {
        let rule =
            |text: Option<&str>, tool: Option<&str>, arguments: Option<serde_json::Value>| {
                SimulatorConfig {
                    replies: vec![ReplyRule {
                        when: "x".to_owned(),
                        text: text.map(str::to_owned),
                        tool: tool.map(str::to_owned),
                        arguments,
                    }],
                    ..SimulatorConfig::default()
                }
                .check()
            };
        assert!(rule(Some("a"), None, None).is_ok());
        assert!(rule(None, Some("t"), Some(serde_json::json!({"k": 1}))).is_ok());
        let both = rule(Some("a"), Some("t"), None).unwrap_err();
        assert!(both.starts_with("simulator.replies[0]: has both"), "{both}");
        let neither = rule(None, None, None).unwrap_err();
        assert!(neither.contains("needs `text`"), "{neither}");
        let args = rule(Some("a"), None, Some(serde_json::json!({}))).unwrap_err();
        assert!(args.starts_with("simulator.replies[0].arguments"), "{args}");
        let list = rule(None, Some("t"), Some(serde_json::json!([1]))).unwrap_err();
        assert!(list.contains("must be a table"), "{list}");
        let empty = rule(None, Some(" "), None).unwrap_err();
        assert!(empty.starts_with("simulator.replies[0].tool"), "{empty}");
    }

    #[test]
    fn structured_output_follows_the_schema_it_was_given() {
        let schema = serde_json::json!({"type": "object", "additionalProperties": false,
            "required": ["name", "score", "tags"],
            "properties": {"name": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 5},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["hot", "cold"]}, "minItems": 1}}});
        let extra = format!(
            r#","response_format":{{"type":"json_schema","json_schema":{{"name":"Lead","strict":true,"schema":{schema}}}}}"#
        );
        let v = body(
            sim(SimulatorConfig::default())
                .handle(Api::OpenAi, &openai("gpt-4o", "rate this lead", &extra)),
        );
        let answer: serde_json::Value =
            serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(answer["name"].is_string(), "{answer}");
        let score = answer["score"].as_i64().unwrap();
        assert!((1..=5).contains(&score), "{answer}");
        let tags = answer["tags"].as_array().unwrap();
        assert!(
            !tags.is_empty() && tags.iter().all(|t| t == "hot" || t == "cold"),
            "{answer}"
        );
        assert_eq!(
            answer.as_object().unwrap().len(),
            3,
            "no other keys: {answer}"
        );

        // The Responses API's `text.format` and a tool forced by `tool_choice`.
        let req = serde_json::json!({"model": "gpt-4o", "input": "rate",
            "text": {"format": {"type": "json_schema", "name": "Lead", "schema": schema}}});
        let v = body(
            sim(SimulatorConfig::default()).handle(Api::Responses, req.to_string().as_bytes()),
        );
        let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(text).unwrap()["score"].is_i64());
        let req = serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 100,
            "messages": [{"role": "user", "content": "rate"}],
            "tools": [{"name": "Lead", "input_schema": schema}],
            "tool_choice": {"type": "tool", "name": "Lead"}});
        let v = body(
            sim(SimulatorConfig::default()).handle(Api::Anthropic, req.to_string().as_bytes()),
        );
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["content"][0]["name"], "Lead");
        assert!(v["content"][0]["input"]["score"].is_i64(), "{v}");
    }

    #[test]
    fn n_choices_embeddings_moderations_and_counts_answer_in_their_shapes() {
        let v = body(
            sim(SimulatorConfig::default())
                .handle(Api::OpenAi, &openai("gpt-4o", "hi", r#","n":3"#)),
        );
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 3);
        assert_eq!(choices[2]["index"], 2);

        let s = sim(SimulatorConfig::default());
        let req = br#"{"model":"text-embedding-3-small","input":["red apple","red apple pie","tax law"],"encoding_format":"float"}"#;
        let v = body(s.handle(Api::Embeddings, req));
        let vec = |i: usize| -> Vec<f64> {
            v["data"][i]["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (a, b, c) = (vec(0), vec(1), vec(2));
        assert_eq!(a.len(), 1536);
        let norm: f64 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-3, "unit length: {norm}");
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        assert!(dot(&a, &b) > dot(&a, &c), "texts sharing words are closer");
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        let v = body(s.handle(
            Api::Embeddings,
            br#"{"model":"text-embedding-3-large","input":"x","dimensions":256}"#,
        ));
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
        let v = body(s.handle(
            Api::Embeddings,
            br#"{"model":"text-embedding-3-large","input":"x","encoding_format":"base64"}"#,
        ));
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            bytes.len(),
            3072 * 4,
            "little-endian f32s of the model's dimension"
        );

        let v = body(s.handle(Api::Moderations, br#"{"input":["a","b"]}"#));
        assert_eq!(v["results"].as_array().unwrap().len(), 2);
        assert_eq!(v["results"][0]["flagged"], false);
        let v = body(s.handle(
            Api::InputTokens,
            br#"{"model":"gpt-4o-mini","input":"hello there"}"#,
        ));
        assert_eq!(v["object"], "response.input_tokens");
        assert!(v["input_tokens"].as_u64().unwrap() > 0);
        let v = body(s.handle(
            Api::CountTokens,
            br#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hello there"}]}"#,
        ));
        assert!(v["input_tokens"].as_u64().unwrap() > 0);
    }

    #[test]
    fn responses_chain_on_ids_the_simulator_gave() {
        let s = sim(SimulatorConfig::default());
        let first = body(s.handle(Api::Responses, br#"{"model":"gpt-4o","input":"hi"}"#));
        let id = first["id"].as_str().unwrap();
        assert!(id.starts_with("resp_"));
        assert_eq!(first["object"], "response");
        assert_eq!(first["status"], "completed");
        assert!(first["usage"]["total_tokens"].as_u64().unwrap() > 0);
        let next = format!(r#"{{"model":"gpt-4o","input":"more","previous_response_id":"{id}"}}"#);
        assert_eq!(
            body(s.handle(Api::Responses, next.as_bytes()))["status"],
            "completed"
        );
        match s.handle(
            Api::Responses,
            br#"{"model":"gpt-4o","input":"x","previous_response_id":"resp_nope"}"#,
        ) {
            SimReply::Json { status, body, .. } => {
                assert_eq!(status, 400);
                assert!(String::from_utf8_lossy(&body).contains("resp_nope"));
            }
            other => panic!("{other:?}"),
        }
    }
}
