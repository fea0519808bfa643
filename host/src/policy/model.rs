//! The host's own, version-neutral copy of the `ironhost:policy` types.
//!
//! The chain, the CLI and (later) the agent runtime and the API speak these types; only the
//! edge that calls a component converts them to the generated bindings of the component's WIT
//! version. They are also the JSON shapes of `ironhost policy run` input and output, so they use
//! snake_case names, optional fields with defaults, and `content` may be a plain string.

use serde::{Deserialize, Serialize};

use super::bindings::wit::types as w;

/// A hook of the policy chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    AgentStart,
    LlmRequest,
    LlmResponse,
    LlmChunk,
    LlmAbandoned,
    ToolCall,
    ToolResult,
}

impl Hook {
    /// All hooks, in the order a call meets them.
    pub const ALL: [Hook; 7] = [
        Hook::AgentStart,
        Hook::LlmRequest,
        Hook::LlmResponse,
        Hook::LlmChunk,
        Hook::LlmAbandoned,
        Hook::ToolCall,
        Hook::ToolResult,
    ];

    /// The kebab-case name used in WIT, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::AgentStart => "agent-start",
            Hook::LlmRequest => "llm-request",
            Hook::LlmResponse => "llm-response",
            Hook::LlmChunk => "llm-chunk",
            Hook::LlmAbandoned => "llm-abandoned",
            Hook::ToolCall => "tool-call",
            Hook::ToolResult => "tool-result",
        }
    }

    /// The name of the exported WIT function for this hook.
    pub fn function_name(self) -> &'static str {
        match self {
            Hook::AgentStart => "on-agent-start",
            Hook::LlmRequest => "on-llm-request",
            Hook::LlmResponse => "on-llm-response",
            Hook::LlmChunk => "on-llm-chunk",
            Hook::LlmAbandoned => "on-llm-abandoned",
            Hook::ToolCall => "on-tool-call",
            Hook::ToolResult => "on-tool-result",
        }
    }

    /// Parse a kebab-case hook name.
    pub fn parse(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == name)
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host capability (one imported interface of `ironhost:policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Log,
    Clock,
    Config,
    Events,
    State,
    Tokens,
    Secrets,
}

impl Capability {
    /// All capabilities.
    pub const ALL: [Capability; 7] = [
        Capability::Log,
        Capability::Clock,
        Capability::Config,
        Capability::Events,
        Capability::State,
        Capability::Tokens,
        Capability::Secrets,
    ];

    /// The interface name, which is also the name used in bundle.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Config => "config",
            Capability::Events => "events",
            Capability::State => "state",
            Capability::Tokens => "tokens",
            Capability::Secrets => "secrets",
        }
    }

    /// Parse an interface name.
    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// What a policy says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub hooks: Vec<Hook>,
    pub capabilities: Vec<Capability>,
}

/// The agent a call belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_environment")]
    pub environment: String,
}

fn default_environment() -> String {
    "dev".to_owned()
}

/// Context of one call through the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallContext {
    pub agent_id: String,
    pub call_id: String,
    #[serde(default = "default_environment")]
    pub environment: String,
    #[serde(default)]
    pub attempt: u32,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A tool invocation requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUse {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    ToolUse(ToolUse),
    ToolOutput {
        tool_use_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
    Image {
        url: String,
    },
    /// A part the host does not model, as the provider's JSON text.
    Other {
        json: String,
    },
}

/// Message content: JSON accepts a plain string for a single text part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum ContentRepr {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(with = "content_serde")]
    pub content: Vec<ContentPart>,
}

impl Message {
    /// A message with one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message {
            role,
            content: vec![ContentPart::Text { text: text.into() }],
        }
    }

    /// The concatenated text parts.
    pub fn joined_text(&self) -> String {
        self.content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// The strings a model reads inside a part the host does not model (its JSON text): every
/// string value except kinds, ids, signatures, media types and base64 payloads, and nothing
/// of a block the provider signed (Anthropic's thinking), joined by spaces. Token counts use
/// it, so such parts are not free; the policy SDK's `text::visit_message_texts` walks the same
/// strings.
pub fn readable_json_text(json: &str) -> String {
    fn opaque(key: &str) -> bool {
        matches!(
            key,
            "type"
                | "id"
                | "signature"
                | "media_type"
                | "data"
                | "file_data"
                | "encrypted_content"
                | "cache_control"
        ) || key.ends_with("_id")
    }
    fn walk(v: &serde_json::Value, out: &mut String) {
        use serde_json::Value;
        match v {
            Value::String(s) => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => {
                if matches!(
                    map.get("type").and_then(Value::as_str),
                    Some("thinking" | "redacted_thinking")
                ) {
                    return;
                }
                for (k, v) in map {
                    if !opaque(k) {
                        walk(v, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v) => walk(&v, &mut out),
        Err(_) => out.push_str(json),
    }
    out
}

mod content_serde {
    use super::{ContentPart, ContentRepr};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(parts: &[ContentPart], s: S) -> Result<S::Ok, S::Error> {
        match parts {
            [ContentPart::Text { text }] => text.serialize(s),
            _ => parts.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ContentPart>, D::Error> {
        Ok(match ContentRepr::deserialize(d)? {
            ContentRepr::Text(text) => vec![ContentPart::Text { text }],
            ContentRepr::Parts(parts) => parts,
        })
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "empty_object")]
    pub parameters: String,
}

fn empty_object() -> String {
    "{}".to_owned()
}

/// An LLM request, provider-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    #[serde(default = "default_provider")]
    pub provider: String,
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub stream: bool,
    /// Every other request parameter, as a JSON object text.
    #[serde(default = "empty_object")]
    pub extra: String,
    /// Name of the secret whose value the host uses as the provider key at egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

fn default_provider() -> String {
    "openai".to_owned()
}

impl LlmRequest {
    /// A request with these messages and every optional parameter unset.
    pub fn new(provider: &str, model: &str, messages: Vec<Message>) -> LlmRequest {
        LlmRequest {
            provider: provider.to_owned(),
            model: model.to_owned(),
            messages,
            tools: Vec::new(),
            max_output_tokens: None,
            temperature: None,
            stream: false,
            extra: empty_object(),
            credential: None,
        }
    }
}

impl LlmResponse {
    /// A complete answer with one text part.
    pub fn text(model: &str, text: &str, usage: Option<Usage>) -> LlmResponse {
        LlmResponse {
            id: String::new(),
            model: model.to_owned(),
            message: Message::text(Role::Assistant, text),
            finish_reason: default_finish(),
            usage,
        }
    }
}

impl Usage {
    /// Usage without prompt caching.
    pub fn new(input_tokens: u32, output_tokens: u32) -> Usage {
        Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        }
    }
}

impl CallContext {
    /// The first attempt of call `call_id` of agent `agent_id`, in `dev`.
    pub fn new(agent_id: &str, call_id: &str) -> CallContext {
        CallContext {
            agent_id: agent_id.to_owned(),
            call_id: call_id.to_owned(),
            environment: default_environment(),
            attempt: 0,
        }
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    #[serde(default)]
    pub cached_input_tokens: u32,
    #[serde(default)]
    pub cache_write_input_tokens: u32,
}

/// A complete LLM answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    pub message: Message,
    #[serde(default = "default_finish")]
    pub finish_reason: String,
    #[serde(default)]
    pub usage: Option<Usage>,
}

fn default_finish() -> String {
    "stop".to_owned()
}

/// Class of a failed provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderErrorKind {
    RateLimited,
    ServerError,
    Timeout,
    Connection,
    InvalidRequest,
    Authentication,
    Other,
}

/// A failed provider call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

/// What came back from the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmOutcome {
    Ok(LlmResponse),
    Error(ProviderError),
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmChunk {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub last: bool,
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Denial {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A call to a tool function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default = "empty_object")]
    pub arguments: String,
}

/// Class of a failed tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolErrorKind {
    Timeout,
    RateLimited,
    Unavailable,
    InvalidInput,
    Exception,
    Other,
}

/// How a tool call failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolError {
    pub kind: ToolErrorKind,
    #[serde(default)]
    pub message: String,
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolOutcome {
    /// The result as a JSON text.
    Ok(String),
    Error(ToolError),
}

/// Environment changes asked for at agent start.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StartEffects {
    pub env: Vec<(String, String)>,
}

// ---- conversions to and from the v0.1.0 bindings -------------------------------------------
//
// By value, so the hot path moves strings instead of copying them.

impl From<w::Hook> for Hook {
    fn from(h: w::Hook) -> Self {
        match h {
            w::Hook::AgentStart => Hook::AgentStart,
            w::Hook::LlmRequest => Hook::LlmRequest,
            w::Hook::LlmResponse => Hook::LlmResponse,
            w::Hook::LlmChunk => Hook::LlmChunk,
            w::Hook::LlmAbandoned => Hook::LlmAbandoned,
            w::Hook::ToolCall => Hook::ToolCall,
            w::Hook::ToolResult => Hook::ToolResult,
        }
    }
}

impl From<w::Capability> for Capability {
    fn from(c: w::Capability) -> Self {
        match c {
            w::Capability::Log => Capability::Log,
            w::Capability::Clock => Capability::Clock,
            w::Capability::Config => Capability::Config,
            w::Capability::Events => Capability::Events,
            w::Capability::State => Capability::State,
            w::Capability::Tokens => Capability::Tokens,
            w::Capability::Secrets => Capability::Secrets,
        }
    }
}

impl From<w::Severity> for Severity {
    fn from(s: w::Severity) -> Self {
        match s {
            w::Severity::Info => Severity::Info,
            w::Severity::Low => Severity::Low,
            w::Severity::Medium => Severity::Medium,
            w::Severity::High => Severity::High,
            w::Severity::Critical => Severity::Critical,
        }
    }
}

/// Longest policy-written text the host keeps (a denial message, a config error, a
/// description), in characters.
pub const MAX_POLICY_TEXT: usize = 512;

/// Text a policy wrote, made safe to print and store: control characters (terminal escapes,
/// newlines that would forge log lines) and bidirectional overrides become spaces, and the text
/// is cut to `max_chars`, ending in `…` when it was cut.
pub fn plain_text(text: &str, max_chars: usize) -> String {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| if unsafe_char(c) { ' ' } else { c })
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

impl From<w::PolicyInfo> for PolicyInfo {
    fn from(i: w::PolicyInfo) -> Self {
        PolicyInfo {
            name: i.name,
            version: plain_text(&i.version, 64),
            description: plain_text(&i.description, MAX_POLICY_TEXT),
            hooks: i.hooks.into_iter().map(Into::into).collect(),
            capabilities: i.capabilities.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<AgentInfo> for w::AgentInfo {
    fn from(a: AgentInfo) -> Self {
        w::AgentInfo {
            agent_id: a.agent_id,
            name: a.name,
            environment: a.environment,
        }
    }
}

impl From<CallContext> for w::CallContext {
    fn from(c: CallContext) -> Self {
        w::CallContext {
            agent_id: c.agent_id,
            call_id: c.call_id,
            environment: c.environment,
            attempt: c.attempt,
        }
    }
}

impl From<Role> for w::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::System => w::Role::System,
            Role::User => w::Role::User,
            Role::Assistant => w::Role::Assistant,
            Role::Tool => w::Role::Tool,
        }
    }
}

impl From<w::Role> for Role {
    fn from(r: w::Role) -> Self {
        match r {
            w::Role::System => Role::System,
            w::Role::User => Role::User,
            w::Role::Assistant => Role::Assistant,
            w::Role::Tool => Role::Tool,
        }
    }
}

impl From<ContentPart> for w::ContentPart {
    fn from(p: ContentPart) -> Self {
        match p {
            ContentPart::Text { text } => w::ContentPart::Text(text),
            ContentPart::ToolUse(u) => w::ContentPart::ToolUse(w::ToolUse {
                id: u.id,
                name: u.name,
                arguments: u.arguments,
            }),
            ContentPart::ToolOutput {
                tool_use_id,
                content,
                is_error,
            } => w::ContentPart::ToolOutput(w::ToolOutput {
                tool_use_id,
                content,
                is_error,
            }),
            ContentPart::Image { url } => w::ContentPart::Image(url),
            ContentPart::Other { json } => w::ContentPart::Other(json),
        }
    }
}

impl From<w::ContentPart> for ContentPart {
    fn from(p: w::ContentPart) -> Self {
        match p {
            w::ContentPart::Text(text) => ContentPart::Text { text },
            w::ContentPart::ToolUse(u) => ContentPart::ToolUse(ToolUse {
                id: u.id,
                name: u.name,
                arguments: u.arguments,
            }),
            w::ContentPart::ToolOutput(o) => ContentPart::ToolOutput {
                tool_use_id: o.tool_use_id,
                content: o.content,
                is_error: o.is_error,
            },
            w::ContentPart::Image(url) => ContentPart::Image { url },
            w::ContentPart::Other(json) => ContentPart::Other { json },
        }
    }
}

impl From<Message> for w::Message {
    fn from(m: Message) -> Self {
        w::Message {
            role: m.role.into(),
            content: m.content.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<w::Message> for Message {
    fn from(m: w::Message) -> Self {
        Message {
            role: m.role.into(),
            content: m.content.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<LlmRequest> for w::LlmRequest {
    fn from(r: LlmRequest) -> Self {
        w::LlmRequest {
            provider: r.provider,
            model: r.model,
            messages: r.messages.into_iter().map(Into::into).collect(),
            tools: r
                .tools
                .into_iter()
                .map(|t| w::ToolSpec {
                    name: t.name,
                    description: t.description,
                    parameters: t.parameters,
                })
                .collect(),
            max_output_tokens: r.max_output_tokens,
            temperature: r.temperature,
            stream: r.stream,
            extra: r.extra,
            credential: r.credential,
        }
    }
}

impl From<w::LlmRequest> for LlmRequest {
    fn from(r: w::LlmRequest) -> Self {
        LlmRequest {
            provider: r.provider,
            model: r.model,
            messages: r.messages.into_iter().map(Into::into).collect(),
            tools: r
                .tools
                .into_iter()
                .map(|t| ToolSpec {
                    name: t.name,
                    description: t.description,
                    parameters: t.parameters,
                })
                .collect(),
            max_output_tokens: r.max_output_tokens,
            temperature: r.temperature,
            stream: r.stream,
            extra: r.extra,
            credential: r.credential,
        }
    }
}

impl From<Usage> for w::Usage {
    fn from(u: Usage) -> Self {
        w::Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
            cache_write_input_tokens: u.cache_write_input_tokens,
        }
    }
}

impl From<w::Usage> for Usage {
    fn from(u: w::Usage) -> Self {
        Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
            cache_write_input_tokens: u.cache_write_input_tokens,
        }
    }
}

impl From<LlmResponse> for w::LlmResponse {
    fn from(r: LlmResponse) -> Self {
        w::LlmResponse {
            id: r.id,
            model: r.model,
            message: r.message.into(),
            finish_reason: r.finish_reason,
            usage: r.usage.map(Into::into),
        }
    }
}

impl From<w::LlmResponse> for LlmResponse {
    fn from(r: w::LlmResponse) -> Self {
        LlmResponse {
            id: r.id,
            model: r.model,
            message: r.message.into(),
            finish_reason: r.finish_reason,
            usage: r.usage.map(Into::into),
        }
    }
}

impl From<ProviderErrorKind> for w::ProviderErrorKind {
    fn from(k: ProviderErrorKind) -> Self {
        match k {
            ProviderErrorKind::RateLimited => w::ProviderErrorKind::RateLimited,
            ProviderErrorKind::ServerError => w::ProviderErrorKind::ServerError,
            ProviderErrorKind::Timeout => w::ProviderErrorKind::Timeout,
            ProviderErrorKind::Connection => w::ProviderErrorKind::Connection,
            ProviderErrorKind::InvalidRequest => w::ProviderErrorKind::InvalidRequest,
            ProviderErrorKind::Authentication => w::ProviderErrorKind::Authentication,
            ProviderErrorKind::Other => w::ProviderErrorKind::Other,
        }
    }
}

impl From<LlmOutcome> for w::LlmOutcome {
    fn from(o: LlmOutcome) -> Self {
        match o {
            LlmOutcome::Ok(r) => w::LlmOutcome::Ok(r.into()),
            LlmOutcome::Error(e) => w::LlmOutcome::Error(w::ProviderError {
                kind: e.kind.into(),
                status: e.status,
                message: e.message,
                retry_after_ms: e.retry_after_ms,
            }),
        }
    }
}

impl From<w::ProviderErrorKind> for ProviderErrorKind {
    fn from(k: w::ProviderErrorKind) -> Self {
        match k {
            w::ProviderErrorKind::RateLimited => ProviderErrorKind::RateLimited,
            w::ProviderErrorKind::ServerError => ProviderErrorKind::ServerError,
            w::ProviderErrorKind::Timeout => ProviderErrorKind::Timeout,
            w::ProviderErrorKind::Connection => ProviderErrorKind::Connection,
            w::ProviderErrorKind::InvalidRequest => ProviderErrorKind::InvalidRequest,
            w::ProviderErrorKind::Authentication => ProviderErrorKind::Authentication,
            w::ProviderErrorKind::Other => ProviderErrorKind::Other,
        }
    }
}

impl From<w::LlmOutcome> for LlmOutcome {
    fn from(o: w::LlmOutcome) -> Self {
        match o {
            w::LlmOutcome::Ok(r) => LlmOutcome::Ok(r.into()),
            w::LlmOutcome::Error(e) => LlmOutcome::Error(ProviderError {
                kind: e.kind.into(),
                status: e.status,
                message: e.message,
                retry_after_ms: e.retry_after_ms,
            }),
        }
    }
}

impl From<LlmChunk> for w::LlmChunk {
    fn from(c: LlmChunk) -> Self {
        w::LlmChunk {
            index: c.index,
            text: c.text,
            finish_reason: c.finish_reason,
            usage: c.usage.map(Into::into),
            last: c.last,
        }
    }
}

impl From<w::Denial> for Denial {
    fn from(d: w::Denial) -> Self {
        Denial {
            code: plain_text(&d.code, 64),
            message: plain_text(&d.message, MAX_POLICY_TEXT),
            retry_after_ms: d.retry_after_ms,
        }
    }
}

impl From<ToolCall> for w::ToolCall {
    fn from(c: ToolCall) -> Self {
        w::ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }
}

impl From<w::ToolCall> for ToolCall {
    fn from(c: w::ToolCall) -> Self {
        ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }
}

impl From<ToolOutcome> for w::ToolOutcome {
    fn from(o: ToolOutcome) -> Self {
        match o {
            ToolOutcome::Ok(v) => w::ToolOutcome::Ok(v),
            ToolOutcome::Error(e) => w::ToolOutcome::Error(w::ToolError {
                kind: e.kind.into(),
                message: e.message,
            }),
        }
    }
}

impl From<w::ToolOutcome> for ToolOutcome {
    fn from(o: w::ToolOutcome) -> Self {
        match o {
            w::ToolOutcome::Ok(v) => ToolOutcome::Ok(v),
            w::ToolOutcome::Error(e) => ToolOutcome::Error(ToolError {
                kind: e.kind.into(),
                message: e.message,
            }),
        }
    }
}

impl From<ToolErrorKind> for w::ToolErrorKind {
    fn from(k: ToolErrorKind) -> Self {
        match k {
            ToolErrorKind::Timeout => w::ToolErrorKind::Timeout,
            ToolErrorKind::RateLimited => w::ToolErrorKind::RateLimited,
            ToolErrorKind::Unavailable => w::ToolErrorKind::Unavailable,
            ToolErrorKind::InvalidInput => w::ToolErrorKind::InvalidInput,
            ToolErrorKind::Exception => w::ToolErrorKind::Exception,
            ToolErrorKind::Other => w::ToolErrorKind::Other,
        }
    }
}

impl From<w::ToolErrorKind> for ToolErrorKind {
    fn from(k: w::ToolErrorKind) -> Self {
        match k {
            w::ToolErrorKind::Timeout => ToolErrorKind::Timeout,
            w::ToolErrorKind::RateLimited => ToolErrorKind::RateLimited,
            w::ToolErrorKind::Unavailable => ToolErrorKind::Unavailable,
            w::ToolErrorKind::InvalidInput => ToolErrorKind::InvalidInput,
            w::ToolErrorKind::Exception => ToolErrorKind::Exception,
            w::ToolErrorKind::Other => ToolErrorKind::Other,
        }
    }
}

impl From<Denial> for w::Denial {
    fn from(d: Denial) -> Self {
        w::Denial {
            code: d.code,
            message: d.message,
            retry_after_ms: d.retry_after_ms,
        }
    }
}

impl From<w::StartEffects> for StartEffects {
    fn from(e: w::StartEffects) -> Self {
        StartEffects { env: e.env }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_replaces_controls_and_cuts_at_the_limit() {
        assert_eq!(plain_text("a\u{1b}[31mb\nc\u{202e}d", 100), "a [31mb c d");
        assert_eq!(plain_text("abcd", 4), "abcd");
        assert_eq!(plain_text("abcde", 4), "abc…");
        assert_eq!(plain_text("ééééé", 3), "éé…");
        assert_eq!(plain_text("", 3), "");
    }

    #[test]
    fn request_json_accepts_plain_string_content_and_fills_defaults() {
        let r: LlmRequest = serde_json::from_str(
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .expect("valid request");
        assert_eq!(r.provider, "openai");
        assert_eq!(r.messages[0].joined_text(), "hi");
        assert_eq!(r.extra, "{}");
        let back = serde_json::to_value(&r).expect("serializes");
        assert_eq!(back["messages"][0]["content"], "hi");
    }

    #[test]
    fn multi_part_content_round_trips_through_wit_types() {
        let r: LlmRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"assistant","content":[
                {"type":"text","text":"a"},
                {"type":"tool_use","id":"t1","name":"search","arguments":"{}"}]}]}"#,
        )
        .expect("valid request");
        let wit: w::LlmRequest = r.clone().into();
        let back: LlmRequest = wit.into();
        assert_eq!(back, r);
    }
}
