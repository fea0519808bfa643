//! OpenAI legacy completions: `POST /v1/completions` (`gpt-3.5-turbo-instruct`), JSON and SSE.
//! The prompt (and a `suffix`) are texts of one user message.

use serde_json::{Map, Value, json};

use super::sse::SseEvent;
use super::wire::{
    EventInfo, ParsedRequest, Parts, Shape, UsagePart, WireError, extra_map, json_text, model_of,
    neutral_request, patch, u32_field, unix_now,
};
use super::wire::{WireFormat, answer_json};
use crate::model::{ContentPart, LlmRequest, LlmResponse, Message, ProviderError, Role, Usage};

const SHAPE: Shape = Shape {
    provider: "openai",
    modelled: &[
        "model",
        "prompt",
        "suffix",
        "max_tokens",
        "temperature",
        "stream",
    ],
    max_keys: &["max_tokens"],
    tool: |_| None,
};

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

pub(super) fn parse_request(original: Map<String, Value>) -> Result<ParsedRequest, WireError> {
    let model = model_of(&original)?;
    let mut parts = Parts::default();
    match original.get("prompt") {
        Some(Value::String(s)) => parts.text(s, "/prompt".to_owned()),
        Some(Value::Array(items)) => {
            for (k, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => parts.text(s, format!("/prompt/{k}")),
                    other => parts.other(other, format!("/prompt/{k}")),
                }
            }
        }
        None | Some(Value::Null) => return Err(err("`prompt` is missing")),
        Some(_) => return Err(err("`prompt` must be a string or a list")),
    }
    if let Some(s) = original.get("suffix").and_then(Value::as_str) {
        parts.text(s, "/suffix".to_owned());
    }
    let mut request = neutral_request(
        &SHAPE,
        &original,
        model,
        vec![Message {
            role: Role::User,
            content: parts.parts,
        }],
    );
    // The API's default when `max_tokens` is left out.
    request.max_output_tokens = request.max_output_tokens.or(Some(16));
    let wants_stream_usage = original
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut parsed = ParsedRequest::new(request, original);
    parsed.origins = vec![parts.origins];
    parsed.wants_stream_usage = wants_stream_usage;
    Ok(parsed)
}

pub(super) fn render_request(parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
    let mut out = extra_map(request);
    out.insert("model".to_owned(), json!(request.model));
    match patch(parsed, request) {
        Some(mut body) => {
            for key in ["prompt", "suffix"] {
                if let Some(v) = body.remove(key) {
                    out.insert(key.to_owned(), v);
                }
            }
        }
        None => {
            let texts: Vec<Value> = request
                .messages
                .iter()
                .flat_map(|m| &m.content)
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(json!(text)),
                    _ => None,
                })
                .collect();
            out.insert("prompt".to_owned(), Value::Array(texts));
        }
    }
    if parsed.original.contains_key("max_tokens")
        || request.max_output_tokens != parsed.request.max_output_tokens
    {
        out.insert("max_tokens".to_owned(), json!(request.max_output_tokens));
    }
    if let Some(t) = request.temperature {
        out.insert("temperature".to_owned(), json!(t));
    }
    if request.stream {
        out.insert("stream".to_owned(), json!(true));
        let opts = out.entry("stream_options").or_insert_with(|| json!({}));
        if let Value::Object(o) = opts {
            o.insert("include_usage".to_owned(), json!(true));
        }
    } else if parsed.original.contains_key("stream") {
        out.insert("stream".to_owned(), json!(false));
    }
    Value::Object(out).to_string().into_bytes()
}

fn finish_from(reason: &str) -> String {
    match reason {
        "content_filter" => "content-filter".to_owned(),
        other => other.to_owned(),
    }
}

fn finish_to(reason: &str) -> &str {
    match reason {
        "content-filter" => "content_filter",
        "length" => "length",
        _ => "stop",
    }
}

fn usage_to(u: &Usage) -> Value {
    json!({"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
        "total_tokens": u64::from(u.input_tokens) + u64::from(u.output_tokens)})
}

pub(super) fn parse_response(v: &Value) -> Result<LlmResponse, WireError> {
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| err("the answer has no `choices`"))?;
    let content = choices
        .iter()
        .map(|c| ContentPart::Text {
            text: c.get("text").map(json_text).unwrap_or_default(),
        })
        .collect();
    Ok(LlmResponse {
        id: v.get("id").map(json_text).unwrap_or_default(),
        model: v.get("model").map(json_text).unwrap_or_default(),
        message: Message {
            role: Role::Assistant,
            content,
        },
        finish_reason: v
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            .map_or_else(|| "stop".to_owned(), finish_from),
        usage: v.get("usage").and_then(|u| {
            Some(Usage::new(
                u32_field(u, "/prompt_tokens")?,
                u32_field(u, "/completion_tokens").unwrap_or(0),
            ))
        }),
    })
}

/// One choice per text part (OpenAI's `n`).
pub(super) fn render_response(original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
    let mut out = original.unwrap_or_else(|| {
        match json!({"id": r.id, "object": "text_completion", "created": unix_now(),
            "model": r.model, "choices": []})
        {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    });
    let texts: Vec<&str> = r
        .message
        .content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let old = out
        .get("choices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let choices: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut c = old.get(i).cloned().unwrap_or_else(|| {
                json!({"index": i, "logprobs": null, "finish_reason": finish_to(&r.finish_reason)})
            });
            c["text"] = json!(t);
            c
        })
        .collect();
    out.insert("choices".to_owned(), Value::Array(choices));
    if let Some(u) = &r.usage {
        out.insert("usage".to_owned(), usage_to(u));
    }
    Value::Object(out).to_string().into_bytes()
}

pub(super) fn render_stream(r: &LlmResponse, include_usage: bool) -> Vec<SseEvent> {
    let created = unix_now();
    let chunk = |text: &str, finish: Value| {
        SseEvent::data(
            json!({"id": r.id, "object": "text_completion", "created": created,
                "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
                "model": r.model})
            .to_string(),
        )
    };
    let mut events: Vec<SseEvent> = super::openai::pieces(&r.message.joined_text())
        .into_iter()
        .map(|p| chunk(p, Value::Null))
        .collect();
    events.push(chunk("", json!(finish_to(&r.finish_reason))));
    if include_usage && let Some(u) = &r.usage {
        events.push(SseEvent::data(
            json!({"id": r.id, "object": "text_completion", "created": created,
                "choices": [], "model": r.model, "usage": usage_to(u)})
            .to_string(),
        ));
    }
    events.push(SseEvent::data("[DONE]"));
    events
}

pub(super) fn event_info(ev: &SseEvent) -> EventInfo {
    let mut info = EventInfo::default();
    if ev.data.trim() == "[DONE]" {
        info.done = true;
        return info;
    }
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        return info;
    };
    if let Some(e) = v.get("error") {
        info.error = Some(e.get("message").map_or_else(|| e.to_string(), json_text));
        return info;
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        info.usage = Some(UsagePart {
            input_tokens: u32_field(u, "/prompt_tokens"),
            output_tokens: u32_field(u, "/completion_tokens"),
            cached_input_tokens: None,
            cache_write_input_tokens: None,
        });
        if v.get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            info.usage_only = true;
        }
    }
    if let Some(t) = v.pointer("/choices/0/text").and_then(Value::as_str)
        && !t.is_empty()
    {
        info.text = Some(t.to_owned());
    }
    if let Some(f) = v
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
    {
        info.finish = Some(finish_from(f));
    }
    info
}

pub(super) fn with_text(template: &SseEvent, text: &str) -> SseEvent {
    let mut v: Value = serde_json::from_str(&template.data).unwrap_or_else(|_| json!({}));
    if let Some(c) = v.pointer_mut("/choices/0") {
        c["text"] = json!(text);
        c["finish_reason"] = Value::Null;
    }
    SseEvent::data(v.to_string())
}

/// OpenAI legacy completions (`POST …/v1/completions`).
#[derive(Debug, Clone, Copy)]
pub struct Completions;

impl WireFormat for Completions {
    fn parse_request(&self, body: Map<String, Value>) -> Result<ParsedRequest, WireError> {
        parse_request(body)
    }
    fn render_request(&self, parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
        render_request(parsed, request)
    }
    fn parse_response(&self, body: &[u8]) -> Result<LlmResponse, WireError> {
        parse_response(&answer_json(body)?)
    }
    fn render_response(&self, original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
        render_response(original, r)
    }
    fn render_stream(&self, r: &LlmResponse, include_usage: bool) -> Vec<SseEvent> {
        render_stream(r, include_usage)
    }
    fn event_info(&self, ev: &SseEvent) -> EventInfo {
        event_info(ev)
    }
    fn with_text(&self, template: &SseEvent, text: &str) -> SseEvent {
        with_text(template, text)
    }
    fn error_body(&self, e: &ProviderError) -> Vec<u8> {
        super::openai::error_body(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::api::Api;
    use crate::llm::sse::SseParser;

    #[test]
    fn prompts_parse_render_and_stream() {
        let p = Api::Completions
            .parse_request(br#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi to jane@example.com","echo":false}"#)
            .unwrap();
        assert_eq!(
            p.request.messages[0].joined_text(),
            "Say hi to jane@example.com"
        );
        assert_eq!(p.request.max_output_tokens, Some(16));
        let mut changed = p.request.clone();
        changed.messages[0].content[0] = ContentPart::Text {
            text: "Say hi to [EMAIL]".to_owned(),
        };
        let body: Value =
            serde_json::from_slice(&Api::Completions.render_request(&p, &changed)).unwrap();
        assert_eq!(body["prompt"], "Say hi to [EMAIL]");
        assert_eq!(body["echo"], false);
        assert!(body.get("max_tokens").is_none());

        let r = LlmResponse::text(
            "gpt-3.5-turbo-instruct",
            "hello there",
            Some(Usage::new(6, 2)),
        );
        let back = Api::Completions
            .parse_response(&Api::Completions.render_response(None, &r))
            .unwrap();
        assert_eq!(back.message.joined_text(), "hello there");
        assert_eq!(back.usage, Some(Usage::new(6, 2)));
        let wire: Vec<u8> = Api::Completions
            .render_stream(&r, true)
            .iter()
            .flat_map(SseEvent::to_bytes)
            .collect();
        let infos: Vec<EventInfo> = SseParser::default()
            .feed(&wire)
            .iter()
            .map(|e| Api::Completions.event_info(e))
            .collect();
        let text: String = infos.iter().filter_map(|i| i.text.clone()).collect();
        assert_eq!(text, "hello there");
        assert!(infos.iter().any(|i| i.usage_only));
        assert!(infos.last().unwrap().done);
    }
}
