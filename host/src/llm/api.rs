//! Which provider API a request is ([`Api`], from its path), and that API's wire format
//! ([`Api::format`]): one [`WireFormat`] implementation per API. The gateway speaks to the
//! formats only through [`Api`].

use serde_json::Value;

use super::sse::SseEvent;
use super::wire::{EventInfo, ParsedRequest, WireError, WireFormat};
use super::{anthropic, completions, errors, inputs, openai, responses};
use crate::model::{LlmRequest, LlmResponse, ProviderError};

/// A provider API ironhost routes through the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI chat completions (`POST …/chat/completions`).
    OpenAi,
    /// Anthropic messages (`POST …/v1/messages`).
    Anthropic,
    /// OpenAI responses (`POST …/v1/responses`).
    Responses,
    /// OpenAI legacy completions (`POST …/v1/completions`).
    Completions,
    /// OpenAI embeddings (`POST …/v1/embeddings`).
    Embeddings,
    /// OpenAI moderations (`POST …/v1/moderations`).
    Moderations,
    /// Anthropic token counting (`POST …/v1/messages/count_tokens`).
    CountTokens,
    /// OpenAI token counting for a Responses request (`POST …/v1/responses/input_tokens`).
    InputTokens,
}

impl Api {
    /// The API a `POST` to this path belongs to, if ironhost routes it.
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Api::OpenAi)
        } else if path.ends_with("/v1/messages") || path == "/messages" {
            Some(Api::Anthropic)
        } else if path.ends_with("/messages/count_tokens") {
            Some(Api::CountTokens)
        } else if path.ends_with("/responses/input_tokens") {
            Some(Api::InputTokens)
        } else if path.ends_with("/v1/responses") || path == "/responses" {
            Some(Api::Responses)
        } else if path.ends_with("/v1/completions") || path == "/completions" {
            Some(Api::Completions)
        } else if path.ends_with("/embeddings") {
            Some(Api::Embeddings)
        } else if path.ends_with("/v1/moderations") || path == "/moderations" {
            Some(Api::Moderations)
        } else {
            None
        }
    }

    /// The provider name the chain sees.
    pub fn provider(self) -> &'static str {
        match self {
            Api::Anthropic | Api::CountTokens => "anthropic",
            _ => "openai",
        }
    }

    /// The API's name in logs and call records.
    pub fn name(self) -> &'static str {
        match self {
            Api::OpenAi => "chat",
            Api::Anthropic => "messages",
            Api::Responses => "responses",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
            Api::Moderations => "moderations",
            Api::CountTokens => "count_tokens",
            Api::InputTokens => "input_tokens",
        }
    }

    /// Whether a call counts among the agent's LLM calls (its live figures): token counts
    /// are recorded, but are not calls of a model.
    pub fn counted(self) -> bool {
        !matches!(self, Api::CountTokens | Api::InputTokens)
    }

    /// Whether the API answers with generated text (and may stream it).
    pub fn generates(self) -> bool {
        matches!(
            self,
            Api::OpenAi | Api::Anthropic | Api::Responses | Api::Completions
        )
    }

    /// This API's wire format.
    pub fn format(self) -> &'static dyn WireFormat {
        match self {
            Api::OpenAi => &openai::Chat,
            Api::Anthropic => &anthropic::Messages,
            Api::CountTokens => &anthropic::CountTokens,
            Api::Responses => &responses::Responses,
            Api::InputTokens => &responses::InputTokens,
            Api::Completions => &completions::Completions,
            Api::Embeddings => &inputs::Embeddings,
            Api::Moderations => &inputs::Moderations,
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
        self.format().parse_request(original)
    }

    /// The body to send the provider for `request` (the chain's version of `parsed`).
    pub fn render_request(self, parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
        self.format().render_request(parsed, request)
    }

    /// Parse a provider's successful JSON answer.
    pub fn parse_response(self, body: &[u8]) -> Result<LlmResponse, WireError> {
        self.format().parse_response(body)
    }

    /// The JSON answer for the agent. With `original` (the provider's body) only the message
    /// and usage are replaced, so every other field the provider sent is kept.
    pub fn render_response(self, original: Option<&[u8]>, response: &LlmResponse) -> Vec<u8> {
        if !self.generates()
            && let Some(body) = original
        {
            // Nothing generated, nothing for a policy to change: the provider's answer as is.
            return body.to_vec();
        }
        let original = original
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            });
        self.format().render_response(original, response)
    }

    /// A complete answer as the stream of events the provider would have sent.
    pub fn render_stream(self, response: &LlmResponse, include_usage: bool) -> Vec<SseEvent> {
        self.format().render_stream(response, include_usage)
    }

    /// A provider error from its status, body and `Retry-After`.
    pub fn parse_error(
        self,
        status: u16,
        body: &[u8],
        retry_after_ms: Option<u64>,
    ) -> ProviderError {
        errors::from_body(status, body, retry_after_ms)
    }

    /// The status and body the provider sends for `error`.
    pub fn render_error(self, error: &ProviderError) -> (u16, Vec<u8>) {
        (errors::status_of(error), self.format().error_body(error))
    }

    /// What one event of a streamed answer carries.
    pub fn event_info(self, event: &SseEvent) -> EventInfo {
        self.format().event_info(event)
    }

    /// `template` (an event carrying text) with its text replaced.
    pub fn with_text(self, template: &SseEvent, text: &str) -> SseEvent {
        self.format().with_text(template, text)
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
        assert_eq!(
            Api::from_path("/v1/messages/count_tokens"),
            Some(Api::CountTokens)
        );
        assert_eq!(Api::from_path("/v1/embeddings"), Some(Api::Embeddings));
        assert_eq!(Api::from_path("/v1/responses"), Some(Api::Responses));
        assert_eq!(
            Api::from_path("/v1/responses/input_tokens"),
            Some(Api::InputTokens)
        );
        assert_eq!(Api::from_path("/v1/completions"), Some(Api::Completions));
        assert_eq!(Api::from_path("/v1/moderations"), Some(Api::Moderations));
        assert_eq!(Api::from_path("/v1/files"), None);
    }
}
