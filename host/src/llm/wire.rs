//! The providers' wire formats, in both directions: what an SDK sends (parsed into the neutral
//! [`LlmRequest`] the chain sees, rendered back after the chain), and what a provider answers
//! (JSON bodies, SSE streams and error bodies, parsed for the chain and rendered for the agent).
//!
//! Bytes are passed through untouched wherever the chain changed nothing, so the agent's SDK and
//! the provider see exactly what the other sent.
//!
//! This file has what every format shares: the [`WireFormat`] trait each API implements (in
//! `openai.rs`, `anthropic.rs`, `responses.rs`, `completions.rs`, `inputs.rs`), the parsed
//! request with where each part came from, stream event facts, usage pieces. Which API a
//! path is, and its format, is `api.rs`.

use serde_json::{Map, Value, json};

use super::sse::SseEvent;
use crate::model::{ContentPart, LlmRequest, LlmResponse, ProviderError, ToolSpec, Usage};

/// One provider API's wire format, both ways. `api::Api` names the API and picks its format.
pub trait WireFormat: Sync {
    /// Parse the agent's request body (already a JSON object).
    fn parse_request(&self, body: Map<String, Value>) -> Result<ParsedRequest, WireError>;

    /// The body to send the provider for `request` (the chain's version of `parsed`).
    fn render_request(&self, parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8>;

    /// Parse a provider's successful JSON answer.
    fn parse_response(&self, body: &[u8]) -> Result<LlmResponse, WireError>;

    /// The JSON answer for the agent; with `original` (the provider's answer) only the message
    /// and usage are replaced.
    fn render_response(
        &self,
        original: Option<Map<String, Value>>,
        response: &LlmResponse,
    ) -> Vec<u8>;

    /// A complete answer as the stream of events the provider would have sent (none for an
    /// API that does not stream).
    fn render_stream(&self, _response: &LlmResponse, _include_usage: bool) -> Vec<SseEvent> {
        Vec::new()
    }

    /// What one event of a streamed answer carries.
    fn event_info(&self, _event: &SseEvent) -> EventInfo {
        EventInfo::default()
    }

    /// `template` (an event carrying text) with its text replaced.
    fn with_text(&self, template: &SseEvent, _text: &str) -> SseEvent {
        template.clone()
    }

    /// The body the provider sends for `error`.
    fn error_body(&self, error: &ProviderError) -> Vec<u8>;
}

/// An answer parsed whole.
pub(super) fn answer_json(body: &[u8]) -> Result<Value, WireError> {
    serde_json::from_slice(body).map_err(not_json)
}

/// A large answer (a Responses object echoes the request's settings, an embedding is
/// thousands of numbers): only the fields the chain reads become values.
pub(super) fn answer_fields(body: &[u8]) -> Result<Value, WireError> {
    Ok(serde_json::from_slice::<AnswerFields>(body)
        .map_err(not_json)?
        .into_value())
}

fn not_json(e: serde_json::Error) -> WireError {
    WireError(format!("the provider's answer is not JSON: {e}"))
}

/// What the host does with a request part it does not model (`llm.unknown-parts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownParts {
    /// Pass it to the chain as an `other` part (its JSON), whose string values policies
    /// read like any text (the policy SDK's `text::visit_request_texts`).
    #[default]
    Scan,
    /// Refuse the request (400), naming the part.
    Refuse,
}

/// The fields of an answer the chain reads; the rest of the body is skipped unparsed.
#[derive(Debug, serde::Deserialize)]
struct AnswerFields {
    id: Option<Value>,
    model: Option<Value>,
    status: Option<Value>,
    incomplete_details: Option<Value>,
    output: Option<Value>,
    usage: Option<Value>,
    input_tokens: Option<Value>,
}

impl AnswerFields {
    fn into_value(self) -> Value {
        let mut m = Map::new();
        for (k, v) in [
            ("id", self.id),
            ("model", self.model),
            ("status", self.status),
            ("incomplete_details", self.incomplete_details),
            ("output", self.output),
            ("usage", self.usage),
            ("input_tokens", self.input_tokens),
        ] {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        }
        Value::Object(m)
    }
}

/// The agent's request, parsed.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    /// What the chain sees.
    pub request: LlmRequest,
    /// The body as the agent sent it.
    pub original: Map<String, Value>,
    /// OpenAI: the agent asked for `stream_options.include_usage`.
    pub wants_stream_usage: bool,
    /// Where each part of each message of `request` sits in `original`, part for part.
    pub origins: Vec<Vec<Origin>>,
    /// Parts of a kind this host does not model (passed to the chain as `other`), named by
    /// where they are: `messages[2].content[0] (server_tool_use)`.
    pub unknown: Vec<String>,
}

impl ParsedRequest {
    /// A parsed request with no origins recorded (every render rebuilds the messages).
    pub(super) fn new(request: LlmRequest, original: Map<String, Value>) -> ParsedRequest {
        ParsedRequest {
            request,
            original,
            wants_stream_usage: false,
            origins: Vec::new(),
            unknown: Vec::new(),
        }
    }
}

/// Where a neutral part sits in the agent's body, as JSON pointers from the body's root.
///
/// A request the chain changed only in its values (a redacted text, a rewritten tool argument)
/// is rendered as the agent's own body with just those values replaced, so every key the
/// neutral form does not model (`cache_control`, `citations`, `detail`, `annotations`, a
/// document's `title`) reaches the provider as the agent sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A string: a text, a tool's output, an image URL. `None`: the value is implied (a
    /// missing `content`); a change to it needs a rebuilt body.
    Str(Option<String>),
    /// A tool use: its id, name and arguments; `args_json`: the arguments are a JSON value in
    /// the body (Anthropic's `input`), not a JSON text.
    ToolUse {
        id: String,
        name: String,
        args: String,
        args_json: bool,
    },
    /// An Anthropic image source object (`{"type": "base64", "media_type", "data"}`), shown to
    /// the chain as a `data:` URL.
    ImageSource(String),
    /// A whole value the host does not model, passed as its JSON text.
    Value(String),
}

/// The parts of one message as a parser collects them, with their origins.
#[derive(Debug, Default)]
pub(super) struct Parts {
    pub parts: Vec<ContentPart>,
    pub origins: Vec<Origin>,
}

impl Parts {
    pub fn push(&mut self, part: ContentPart, origin: Origin) {
        self.parts.push(part);
        self.origins.push(origin);
    }

    pub fn text(&mut self, text: &str, at: String) {
        self.push(
            ContentPart::Text {
                text: text.to_owned(),
            },
            Origin::Str(Some(at)),
        );
    }

    /// A tool use in `v` (at `here`), its id, name and arguments at these pointers inside it;
    /// `args_json`: the arguments are a JSON value (Anthropic's `input`), else a JSON text.
    pub fn tool_use(
        &mut self,
        v: &Value,
        here: &str,
        [id, name, args]: [&str; 3],
        args_json: bool,
    ) {
        let text = |p: &str| v.pointer(p).map(json_text).unwrap_or_default();
        let arguments = if args_json {
            v.pointer(args)
                .map_or_else(|| "{}".to_owned(), Value::to_string)
        } else {
            text(args)
        };
        self.push(
            ContentPart::ToolUse(crate::model::ToolUse {
                id: text(id),
                name: text(name),
                arguments,
            }),
            Origin::ToolUse {
                id: format!("{here}{id}"),
                name: format!("{here}{name}"),
                args: format!("{here}{args}"),
                args_json,
            },
        );
    }

    /// A value the host does not model, passed whole.
    pub fn other(&mut self, value: &Value, at: String) {
        self.push(
            ContentPart::Other {
                json: value.to_string(),
            },
            Origin::Value(at),
        );
    }
}

/// The body `parsed.original` with the values of `request` written where they came from, when
/// `request` has the same messages and parts (same roles, same kinds of part) as the parsed
/// one. `None` when the chain changed the structure, or a changed value has nowhere to go:
/// the caller then rebuilds the messages from the neutral form.
pub(super) fn patch(parsed: &ParsedRequest, request: &LlmRequest) -> Option<Map<String, Value>> {
    let before = &parsed.request.messages;
    if before.len() != request.messages.len() || parsed.origins.len() != before.len() {
        return None;
    }
    let mut body = Value::Object(parsed.original.clone());
    for ((old, new), origins) in before.iter().zip(&request.messages).zip(&parsed.origins) {
        if old.role != new.role {
            return None;
        }
        patch_parts(&mut body, &old.content, &new.content, origins)?;
    }
    match body {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Write the parts of `new` that differ from `old` into `body` at their origins; `None` when
/// the two are not the same kinds of part in the same order, or a value has nowhere to go.
pub(super) fn patch_parts(
    body: &mut Value,
    old: &[ContentPart],
    new: &[ContentPart],
    origins: &[Origin],
) -> Option<()> {
    if old.len() != new.len() || origins.len() != old.len() {
        return None;
    }
    for ((a, b), origin) in old.iter().zip(new).zip(origins) {
        if std::mem::discriminant(a) != std::mem::discriminant(b) {
            return None;
        }
        if a != b {
            write_part(body, b, origin)?;
        }
    }
    Some(())
}

fn set(body: &mut Value, at: &str, value: Value) -> Option<()> {
    *body.pointer_mut(at)? = value;
    Some(())
}

fn write_part(body: &mut Value, part: &ContentPart, origin: &Origin) -> Option<()> {
    match (part, origin) {
        (ContentPart::Text { text }, Origin::Str(Some(at))) => set(body, at, json!(text)),
        (ContentPart::ToolOutput { content, .. }, Origin::Str(Some(at))) => {
            set(body, at, json!(content))
        }
        (ContentPart::Image { url }, Origin::Str(Some(at))) => set(body, at, json!(url)),
        (ContentPart::Image { url }, Origin::ImageSource(at)) => {
            let source = match url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"))
            {
                Some((media_type, data)) => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                None => json!({"type": "url", "url": url}),
            };
            set(body, at, source)
        }
        (
            ContentPart::ToolUse(u),
            Origin::ToolUse {
                id,
                name,
                args,
                args_json,
            },
        ) => {
            set(body, id, json!(u.id))?;
            set(body, name, json!(u.name))?;
            let value = if *args_json {
                json_value(&u.arguments)
            } else {
                json!(u.arguments)
            };
            set(body, args, value)
        }
        (ContentPart::Other { json }, Origin::Value(at)) => set(body, at, json_value(json)),
        _ => None,
    }
}

/// A request or answer that does not follow the provider's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

/// What one event of a streamed answer carries, provider-neutral.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventInfo {
    /// Text the event adds to the answer (a text delta).
    pub text: Option<String>,
    /// The answer's finish reason, on the event that reports it.
    pub finish: Option<String>,
    /// Usage reported by this event; fields not reported are `None`.
    pub usage: Option<UsagePart>,
    /// The event only reports usage (OpenAI's last chunk with `include_usage`).
    pub usage_only: bool,
    /// The event ends a content block (Anthropic).
    pub block_stop: bool,
    /// The stream's end marker.
    pub done: bool,
    /// The provider reported an error inside the stream.
    pub error: Option<String>,
}

/// Usage figures as one stream event reports them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct UsagePart {
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    pub cached_input_tokens: Option<u32>,
    pub cache_write_input_tokens: Option<u32>,
}

impl UsagePart {
    /// Take the figures `later` reports; the others stay as they were.
    pub fn merge(&mut self, later: &UsagePart) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cached_input_tokens = later.cached_input_tokens.or(self.cached_input_tokens);
        self.cache_write_input_tokens = later
            .cache_write_input_tokens
            .or(self.cache_write_input_tokens);
    }

    /// Fold this report into `usage` (later reports win).
    pub fn apply(&self, usage: &mut Usage) {
        if let Some(v) = self.input_tokens {
            usage.input_tokens = v;
        }
        if let Some(v) = self.output_tokens {
            usage.output_tokens = v;
        }
        if let Some(v) = self.cached_input_tokens {
            usage.cached_input_tokens = v;
        }
        if let Some(v) = self.cache_write_input_tokens {
            usage.cache_write_input_tokens = v;
        }
    }
}

// ---- helpers shared by the two formats -------------------------------------------------------

pub(super) fn str_field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

pub(super) fn u32_field(v: &Value, pointer: &str) -> Option<u32> {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A JSON value as text; a string stays as it is.
pub(super) fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parse a JSON text produced by a policy (arguments, schemas); invalid JSON stays a string.
pub(super) fn json_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// How one API's body maps to the neutral request's common fields.
pub(super) struct Shape {
    pub provider: &'static str,
    /// The keys the neutral request models; every other key travels in `extra`.
    pub modelled: &'static [&'static str],
    /// The keys of the output limit, the first present wins.
    pub max_keys: &'static [&'static str],
    /// One tool as the neutral form describes it; `None` for a tool it cannot (a built-in
    /// one): then the whole list travels in `extra`, unchanged.
    pub tool: fn(&Value) -> Option<ToolSpec>,
}

/// A tool spec from the JSON pointers of its name, description and parameter schema.
pub(super) fn tool_spec(t: &Value, name: &str, description: &str, parameters: &str) -> ToolSpec {
    ToolSpec {
        name: t.pointer(name).map(json_text).unwrap_or_default(),
        description: t.pointer(description).map(json_text).unwrap_or_default(),
        parameters: t
            .pointer(parameters)
            .map(Value::to_string)
            .unwrap_or_else(|| "{}".to_owned()),
    }
}

/// The neutral request for `messages` of a body `original` of the API `shape` describes.
pub(super) fn neutral_request(
    shape: &Shape,
    original: &Map<String, Value>,
    model: String,
    messages: Vec<crate::model::Message>,
) -> LlmRequest {
    let mut extra: Map<String, Value> = original
        .iter()
        .filter(|(k, _)| !shape.modelled.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut tools = Vec::new();
    if let Some(list) = original.get("tools").and_then(Value::as_array) {
        match list.iter().map(shape.tool).collect::<Option<Vec<_>>>() {
            Some(specs) => tools = specs,
            None => {
                extra.insert("tools".to_owned(), Value::Array(list.clone()));
            }
        }
    }
    LlmRequest {
        provider: shape.provider.to_owned(),
        model,
        messages,
        tools,
        max_output_tokens: shape
            .max_keys
            .iter()
            .find_map(|k| original.get(*k).and_then(Value::as_u64))
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        temperature: original.get("temperature").and_then(Value::as_f64),
        stream: original
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        extra: Value::Object(extra).to_string(),
        credential: None,
    }
}

/// Tools as the agent sent them when the chain left them alone (`strict`, `cache_control`
/// and all), else rendered from the neutral form with `render`.
pub(super) fn render_tools(
    out: &mut Map<String, Value>,
    parsed: &ParsedRequest,
    request: &LlmRequest,
    render: fn(&ToolSpec) -> Value,
) {
    if request.tools == parsed.request.tools
        && let Some(tools) = parsed.original.get("tools")
    {
        out.insert("tools".to_owned(), tools.clone());
    } else if !request.tools.is_empty() {
        let tools = request.tools.iter().map(render).collect();
        out.insert("tools".to_owned(), Value::Array(tools));
    }
}

/// The output limit under `max_key`, `temperature`, and `stream` when set or sent.
pub(super) fn render_limits(
    out: &mut Map<String, Value>,
    parsed: &ParsedRequest,
    request: &LlmRequest,
    max_key: &str,
) {
    if let Some(n) = request.max_output_tokens {
        out.insert(max_key.to_owned(), json!(n));
    }
    if let Some(t) = request.temperature {
        out.insert("temperature".to_owned(), json!(t));
    }
    if request.stream || parsed.original.contains_key("stream") {
        out.insert("stream".to_owned(), json!(request.stream));
    }
}

/// The body's `model`, which every API requires.
pub(super) fn model_of(original: &Map<String, Value>) -> Result<String, WireError> {
    str_field(original, "model")
        .map(str::to_owned)
        .ok_or_else(|| WireError("`model` is missing or not a string".to_owned()))
}

/// Seconds since the epoch, for `created` fields.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A JSON pointer as a person reads it: `/messages/2/content/0` is `messages[2].content[0]`.
pub(super) fn pointer_name(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        if seg.bytes().all(|b| b.is_ascii_digit()) && !seg.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// The request's `extra` object, or an empty one.
pub(super) fn extra_map(request: &LlmRequest) -> Map<String, Value> {
    match serde_json::from_str::<Value>(&request.extra) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}
