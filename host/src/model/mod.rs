//! The neutral call model every part of the host speaks: requests, answers, messages, tool
//! calls, severities ([`mod.rs`](self)), and what calls cost: token counts ([`tokens`]) and
//! prices ([`pricing`]).
//!
//! These are the host's own, version-neutral copy of the `ironhost:policy` types; only the
//! edge that calls a component converts them to the generated bindings of the component's WIT
//! version (`policy::bindings::v0_1_0::convert`). They are also the JSON shapes of `ironhost policy run` input and output, so they use
//! snake_case names, optional fields with defaults, and `content` may be a plain string.

use serde::{Deserialize, Serialize};

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

impl ToolErrorKind {
    /// A tool error's kind as the agent names it (`ToolError(kind="rate-limited")`); an
    /// unknown name is `other`.
    pub fn from_name(kind: &str) -> ToolErrorKind {
        match kind {
            "timeout" => ToolErrorKind::Timeout,
            "rate-limited" => ToolErrorKind::RateLimited,
            "unavailable" => ToolErrorKind::Unavailable,
            "invalid-input" => ToolErrorKind::InvalidInput,
            "exception" => ToolErrorKind::Exception,
            _ => ToolErrorKind::Other,
        }
    }
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

pub mod pricing;
pub mod recommend;
pub mod tokens;
pub mod units;

/// This machine's host name (`localhost` if it has none).
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().trim().to_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

pub use tokens::{Price, TokenMeter};

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
}
