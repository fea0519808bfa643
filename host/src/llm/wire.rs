//! The providers' wire formats, in both directions: what an SDK sends (parsed into the neutral
//! [`LlmRequest`] the chain sees, rendered back after the chain), and what a provider answers
//! (JSON bodies, SSE streams and error bodies, parsed for the chain and rendered for the agent).
//!
//! Bytes are passed through untouched wherever the chain changed nothing, so the agent's SDK and
//! the provider see exactly what the other sent.

use serde_json::{Map, Value};

use super::sse::SseEvent;
use super::{anthropic, openai};
use crate::policy::model::{LlmRequest, LlmResponse, ProviderError, Usage};

/// A provider API ironhost routes through the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI chat completions (`POST …/chat/completions`).
    OpenAi,
    /// Anthropic messages (`POST …/messages`).
    Anthropic,
}

impl Api {
    /// The API a request path belongs to, if ironhost routes it.
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Api::OpenAi)
        } else if path.ends_with("/v1/messages") || path == "/messages" {
            Some(Api::Anthropic)
        } else {
            None
        }
    }

    /// The provider name the chain sees.
    pub fn provider(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }

    /// Parse the agent's request body.
    pub fn parse_request(self, body: &[u8]) -> Result<ParsedRequest, WireError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| WireError(format!("the request body is not JSON: {e}")))?;
        let Value::Object(original) = value else {
            return Err(WireError(
                "the request body is not a JSON object".to_owned(),
            ));
        };
        match self {
            Api::OpenAi => openai::parse_request(original),
            Api::Anthropic => anthropic::parse_request(original),
        }
    }

    /// The body to send the provider for `request` (the chain's version of `parsed`).
    pub fn render_request(self, parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
        match self {
            Api::OpenAi => openai::render_request(parsed, request),
            Api::Anthropic => anthropic::render_request(parsed, request),
        }
    }

    /// Parse a provider's successful JSON answer.
    pub fn parse_response(self, body: &[u8]) -> Result<LlmResponse, WireError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| WireError(format!("the provider's answer is not JSON: {e}")))?;
        match self {
            Api::OpenAi => openai::parse_response(&value),
            Api::Anthropic => anthropic::parse_response(&value),
        }
    }

    /// The JSON answer for the agent. With `original` (the provider's body) only the message
    /// and usage are replaced, so every other field the provider sent is kept.
    pub fn render_response(self, original: Option<&[u8]>, response: &LlmResponse) -> Vec<u8> {
        let original = original
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            });
        match self {
            Api::OpenAi => openai::render_response(original, response),
            Api::Anthropic => anthropic::render_response(original, response),
        }
    }

    /// A complete answer as the stream of events the provider would have sent.
    pub fn render_stream(self, response: &LlmResponse, include_usage: bool) -> Vec<SseEvent> {
        match self {
            Api::OpenAi => openai::render_stream(response, include_usage),
            Api::Anthropic => anthropic::render_stream(response),
        }
    }

    /// A provider error from its status, body and `Retry-After`.
    pub fn parse_error(
        self,
        status: u16,
        body: &[u8],
        retry_after_ms: Option<u64>,
    ) -> ProviderError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
        ProviderError {
            kind: super::error_kind(status),
            status: Some(status),
            message,
            retry_after_ms,
        }
    }

    /// The status and body the provider sends for `error`.
    pub fn render_error(self, error: &ProviderError) -> (u16, Vec<u8>) {
        let status = super::error_status(error);
        let body = match self {
            Api::OpenAi => openai::error_body(error),
            Api::Anthropic => anthropic::error_body(error),
        };
        (status, body)
    }

    /// What one event of a streamed answer carries.
    pub fn event_info(self, event: &SseEvent) -> EventInfo {
        match self {
            Api::OpenAi => openai::event_info(event),
            Api::Anthropic => anthropic::event_info(event),
        }
    }

    /// `template` (an event carrying text) with its text replaced.
    pub fn with_text(self, template: &SseEvent, text: &str) -> SseEvent {
        match self {
            Api::OpenAi => openai::with_text(template, text),
            Api::Anthropic => anthropic::with_text(template, text),
        }
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

/// The request's `extra` object, or an empty one.
pub(super) fn extra_map(request: &LlmRequest) -> Map<String, Value> {
    match serde_json::from_str::<Value>(&request.extra) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_their_api() {
        assert_eq!(Api::from_path("/v1/chat/completions"), Some(Api::OpenAi));
        assert_eq!(
            Api::from_path("/openai/deployments/x/chat/completions?api-version=1"),
            Some(Api::OpenAi)
        );
        assert_eq!(Api::from_path("/v1/messages"), Some(Api::Anthropic));
        assert_eq!(Api::from_path("/v1/messages/count_tokens"), None);
        assert_eq!(Api::from_path("/v1/embeddings"), None);
    }
}
