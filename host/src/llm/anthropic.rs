//! Anthropic messages: `POST /v1/messages`, JSON and SSE.

use serde_json::{Map, Value, json};

use super::sse::SseEvent;
use super::wire::{
    EventInfo, Origin, ParsedRequest, Parts, Shape, UsagePart, WireError, extra_map, json_text,
    json_value, model_of, neutral_request, patch, patch_parts, pointer_name, render_limits,
    render_tools, tool_spec, u32_field,
};
use super::wire::{WireFormat, answer_fields, answer_json};
use crate::model::{
    ContentPart, LlmRequest, LlmResponse, Message, ProviderError, ProviderErrorKind, Role, Usage,
};

const SHAPE: Shape = Shape {
    provider: "anthropic",
    modelled: &[
        "model",
        "messages",
        "system",
        "tools",
        "max_tokens",
        "temperature",
        "stream",
    ],
    max_keys: &["max_tokens"],
    // A custom tool with nothing the neutral form leaves out (`cache_control` aside, tools
    // the agent did not change go as it sent them).
    tool: |t| {
        let custom = matches!(t.get("type").and_then(Value::as_str), None | Some("custom"))
            && t.as_object().is_some_and(|o| {
                o.keys()
                    .all(|k| matches!(k.as_str(), "name" | "description" | "input_schema" | "type"))
            });
        custom.then(|| tool_spec(t, "/name", "/description", "/input_schema"))
    },
};

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

/// A block's text, when it is a text block (`cache_control`, `citations` and other keys
/// aside).
fn block_text(block: &Value) -> Option<&str> {
    (block.get("type").and_then(Value::as_str) == Some("text"))
        .then(|| block.get("text").and_then(Value::as_str))
        .flatten()
}

/// An image block's source as a part: a URL source as its URL, a base64 source as a `data:`
/// URL; other sources (files) are not modelled.
fn image_part(block: &Value, here: &str, out: &mut Parts) {
    let source = block.get("source");
    match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("url")
            if source
                .and_then(|s| s.get("url"))
                .is_some_and(Value::is_string) =>
        {
            out.push(
                ContentPart::Image {
                    url: source.map(|s| json_text(&s["url"])).unwrap_or_default(),
                },
                Origin::Str(Some(format!("{here}/source/url"))),
            );
        }
        Some("base64") => {
            let field = |k: &str| {
                source
                    .and_then(|s| s.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            out.push(
                ContentPart::Image {
                    url: format!("data:{};base64,{}", field("media_type"), field("data")),
                },
                Origin::ImageSource(format!("{here}/source")),
            );
        }
        _ => out.other(block, here.to_owned()),
    }
}

/// One content block (at the JSON pointer `here`) as neutral parts. Every text the model
/// reads becomes a part of its own: a document's title, context and text; each text of a tool
/// result. Keys the neutral form does not model stay in the body (see `wire::patch`).
fn parse_block(block: &Value, here: &str, out: &mut Parts, unknown: &mut Vec<String>) {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" if block_text(block).is_some() => {
            out.text(
                block_text(block).unwrap_or_default(),
                format!("{here}/text"),
            );
        }
        "image" => image_part(block, here, out),
        "document" => {
            let start = out.parts.len();
            for key in ["title", "context"] {
                if let Some(t) = block.get(key).and_then(Value::as_str) {
                    out.text(t, format!("{here}/{key}"));
                }
            }
            let source = block.get("source");
            match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
                Some("text")
                    if source
                        .and_then(|s| s.get("data"))
                        .is_some_and(Value::is_string) =>
                {
                    let data = source.map(|s| json_text(&s["data"])).unwrap_or_default();
                    out.text(&data, format!("{here}/source/data"));
                }
                Some("content") => match source.and_then(|s| s.get("content")) {
                    Some(Value::String(t)) => out.text(t, format!("{here}/source/content")),
                    Some(Value::Array(blocks)) => {
                        for (k, b) in blocks.iter().enumerate() {
                            parse_block(b, &format!("{here}/source/content/{k}"), out, unknown);
                        }
                    }
                    _ => {}
                },
                // A PDF or a file: no text the host can read; the block goes as it is.
                _ if out.parts.len() == start => out.other(block, here.to_owned()),
                _ => {}
            }
        }
        "tool_use" => out.tool_use(block, here, ["/id", "/name", "/input"], true),
        "tool_result" => {
            let output = |content: &str| ContentPart::ToolOutput {
                tool_use_id: block.get("tool_use_id").map(json_text).unwrap_or_default(),
                content: content.to_owned(),
                is_error: block
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            };
            match block.get("content") {
                Some(Value::String(s)) => {
                    out.push(output(s), Origin::Str(Some(format!("{here}/content"))));
                }
                Some(Value::Array(blocks)) => {
                    // The first text is the tool's output; images and further texts follow.
                    let first = blocks.iter().position(|b| block_text(b).is_some());
                    match first {
                        Some(f) => out.push(
                            output(block_text(&blocks[f]).unwrap_or_default()),
                            Origin::Str(Some(format!("{here}/content/{f}/text"))),
                        ),
                        None => out.push(output(""), Origin::Str(None)),
                    }
                    for (k, b) in blocks.iter().enumerate() {
                        if Some(k) != first {
                            parse_block(b, &format!("{here}/content/{k}"), out, unknown);
                        }
                    }
                }
                _ => out.push(output(""), Origin::Str(None)),
            }
        }
        // Signed by the provider: a changed byte makes it refuse the request.
        "thinking" | "redacted_thinking" => out.other(block, here.to_owned()),
        _ => {
            unknown.push(format!("{} ({kind})", pointer_name(here)));
            out.other(block, here.to_owned());
        }
    }
}

fn parse_content(
    content: Option<&Value>,
    at: &str,
    unknown: &mut Vec<String>,
) -> Result<(Vec<ContentPart>, Vec<Origin>), WireError> {
    let mut out = Parts::default();
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.text(s, at.to_owned()),
        Some(Value::Array(blocks)) => {
            for (k, b) in blocks.iter().enumerate() {
                parse_block(b, &format!("{at}/{k}"), &mut out, unknown);
            }
        }
        Some(_) => {
            return Err(err(format!(
                "`{}` must be a string or a list of blocks",
                pointer_name(at)
            )));
        }
    }
    Ok((out.parts, out.origins))
}

pub(super) fn parse_request(original: Map<String, Value>) -> Result<ParsedRequest, WireError> {
    let model = model_of(&original)?;
    let mut messages = Vec::new();
    let mut origins = Vec::new();
    let mut unknown = Vec::new();
    if let Some(system) = original.get("system") {
        let (content, from) = parse_content(Some(system), "/system", &mut unknown)?;
        messages.push(Message {
            role: Role::System,
            content,
        });
        origins.push(from);
    }
    let list = original
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| err("`messages` is missing or not a list"))?;
    for (i, m) in list.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some(other) => {
                return Err(err(format!(
                    "`messages[{i}].role` `{other}` is not `user` or `assistant`"
                )));
            }
            None => return Err(err(format!("`messages[{i}].role` is missing"))),
        };
        let (content, from) = parse_content(
            m.get("content"),
            &format!("/messages/{i}/content"),
            &mut unknown,
        )?;
        messages.push(Message { role, content });
        origins.push(from);
    }
    let request = neutral_request(&SHAPE, &original, model, messages);
    Ok(ParsedRequest {
        request,
        original,
        wants_stream_usage: true,
        origins,
        unknown,
    })
}

fn render_block(p: &ContentPart) -> Value {
    match p {
        ContentPart::Text { text } => json!({"type": "text", "text": text}),
        ContentPart::ToolUse(u) => {
            json!({"type": "tool_use", "id": u.id, "name": u.name, "input": json_value(&u.arguments)})
        }
        ContentPart::ToolOutput {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut b =
                json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content});
            if *is_error && let Value::Object(o) = &mut b {
                o.insert("is_error".to_owned(), json!(true));
            }
            b
        }
        ContentPart::Image { url } => {
            json!({"type": "image", "source": {"type": "url", "url": url}})
        }
        ContentPart::Other { json } => json_value(json),
    }
}

/// Content as a string when the agent sent a string and it is still one text, else blocks.
fn render_content(parts: &[ContentPart], was_string: bool) -> Value {
    match parts {
        [ContentPart::Text { text }] if was_string => json!(text),
        _ => Value::Array(parts.iter().map(render_block).collect()),
    }
}

/// `system` and `messages` rendered from the neutral form (the chain changed the structure).
fn rebuild_messages(parsed: &ParsedRequest, request: &LlmRequest, out: &mut Map<String, Value>) {
    let mut rest = request.messages.as_slice();
    let mut system_parts: Vec<ContentPart> = Vec::new();
    while let Some((first, tail)) = rest.split_first() {
        if first.role != Role::System {
            break;
        }
        system_parts.extend(first.content.iter().cloned());
        rest = tail;
    }
    if !system_parts.is_empty() {
        let was_string = matches!(parsed.original.get("system"), Some(Value::String(_)) | None);
        out.insert(
            "system".to_owned(),
            render_content(&system_parts, was_string),
        );
    }
    let originals = parsed
        .original
        .get("messages")
        .and_then(Value::as_array)
        .filter(|o| o.len() == rest.len());
    let messages: Vec<Value> = rest
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let orig = originals.and_then(|o| o.get(i)).and_then(Value::as_object);
            let mut msg = orig.cloned().unwrap_or_default();
            let was_string = matches!(orig.and_then(|o| o.get("content")), Some(Value::String(_)));
            // Tool results travel in user messages on this API.
            let role = if m.role == Role::Assistant {
                "assistant"
            } else {
                "user"
            };
            msg.insert("role".to_owned(), json!(role));
            msg.insert("content".to_owned(), render_content(&m.content, was_string));
            Value::Object(msg)
        })
        .collect();
    out.insert("messages".to_owned(), Value::Array(messages));
}

pub(super) fn render_request(parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
    let mut out = extra_map(request);
    out.insert("model".to_owned(), json!(request.model));
    if let Some(mut body) = patch(parsed, request) {
        for key in ["system", "messages"] {
            if let Some(v) = body.remove(key) {
                out.insert(key.to_owned(), v);
            }
        }
    } else {
        rebuild_messages(parsed, request, &mut out);
    }
    render_tools(&mut out, parsed, request, |t| {
        json!({"name": t.name, "description": t.description,
            "input_schema": json_value(&t.parameters)})
    });
    render_limits(&mut out, parsed, request, "max_tokens");
    Value::Object(out).to_string().into_bytes()
}

fn finish_from(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" => "stop".to_owned(),
        "max_tokens" => "length".to_owned(),
        "tool_use" => "tool-use".to_owned(),
        "refusal" => "content-filter".to_owned(),
        other => other.to_owned(),
    }
}

fn finish_to(reason: &str, original: Option<&str>) -> String {
    match (reason, original) {
        ("stop", Some("stop_sequence")) => "stop_sequence".to_owned(),
        ("stop", _) => "end_turn".to_owned(),
        ("length", _) => "max_tokens".to_owned(),
        ("tool-use", _) => "tool_use".to_owned(),
        ("content-filter", _) => "refusal".to_owned(),
        (other, _) => other.to_owned(),
    }
}

fn usage_part(u: &Value) -> UsagePart {
    UsagePart {
        input_tokens: u32_field(u, "/input_tokens"),
        output_tokens: u32_field(u, "/output_tokens"),
        cached_input_tokens: u32_field(u, "/cache_read_input_tokens"),
        cache_write_input_tokens: u32_field(u, "/cache_creation_input_tokens"),
    }
}

/// Anthropic reports cache reads and writes beside `input_tokens`; the neutral form counts
/// them inside it.
pub(crate) fn neutral_usage(part: &UsagePart) -> Usage {
    let cached = part.cached_input_tokens.unwrap_or(0);
    let written = part.cache_write_input_tokens.unwrap_or(0);
    Usage {
        input_tokens: part
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cached)
            .saturating_add(written),
        output_tokens: part.output_tokens.unwrap_or(0),
        cached_input_tokens: cached,
        cache_write_input_tokens: written,
    }
}

fn usage_to(u: &Usage, original: Option<&Value>) -> Value {
    let mut out = match original {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    let uncached = u
        .input_tokens
        .saturating_sub(u.cached_input_tokens)
        .saturating_sub(u.cache_write_input_tokens);
    out.insert("input_tokens".to_owned(), json!(uncached));
    out.insert(
        "cache_creation_input_tokens".to_owned(),
        json!(u.cache_write_input_tokens),
    );
    out.insert(
        "cache_read_input_tokens".to_owned(),
        json!(u.cached_input_tokens),
    );
    out.insert("output_tokens".to_owned(), json!(u.output_tokens));
    out.entry("service_tier").or_insert(json!("standard"));
    Value::Object(out)
}

pub(super) fn parse_response(v: &Value) -> Result<LlmResponse, WireError> {
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| err("the answer has no `content` list"))?;
    Ok(LlmResponse {
        id: v.get("id").map(json_text).unwrap_or_default(),
        model: v.get("model").map(json_text).unwrap_or_default(),
        message: Message {
            role: Role::Assistant,
            content: parse_content(
                Some(&Value::Array(content.clone())),
                "/content",
                &mut Vec::new(),
            )?
            .0,
        },
        finish_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(finish_from)
            .unwrap_or_else(|| "stop".to_owned()),
        usage: v.get("usage").map(|u| neutral_usage(&usage_part(u))),
    })
}

pub(super) fn render_response(original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
    let mut out = original.unwrap_or_else(|| {
        match json!({"id": r.id, "type": "message", "role": "assistant", "model": r.model,
            "content": [], "stop_reason": null, "stop_sequence": null})
        {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    });
    // The provider's blocks keep what the neutral form does not model (`citations`) when the
    // chain only changed values; otherwise the blocks are rendered anew.
    let mut content = Value::Object(Map::new());
    if let Some(blocks) = out.get("content").filter(|c| c.is_array()) {
        content["content"] = blocks.clone();
    }
    let patched = parse_content(content.get("content"), "/content", &mut Vec::new())
        .ok()
        .and_then(|(old, origins)| patch_parts(&mut content, &old, &r.message.content, &origins));
    let blocks = match (patched, content.get_mut("content")) {
        (Some(()), Some(blocks)) => blocks.take(),
        _ => Value::Array(r.message.content.iter().map(render_block).collect()),
    };
    out.insert("content".to_owned(), blocks);
    let before = out
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    out.insert(
        "stop_reason".to_owned(),
        json!(finish_to(&r.finish_reason, before.as_deref())),
    );
    if let Some(u) = &r.usage {
        let rendered = usage_to(u, out.get("usage"));
        out.insert("usage".to_owned(), rendered);
    }
    Value::Object(out).to_string().into_bytes()
}

fn event(kind: &str, data: Value) -> SseEvent {
    SseEvent::named(kind, data.to_string())
}

pub(super) fn render_stream(r: &LlmResponse) -> Vec<SseEvent> {
    let usage = r.usage.unwrap_or_default();
    let mut start_usage = usage_to(&usage, None);
    if let Value::Object(o) = &mut start_usage {
        o.insert("output_tokens".to_owned(), json!(1));
    }
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": r.id, "type": "message",
            "role": "assistant", "model": r.model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": start_usage}}),
    )];
    for (index, part) in r.message.content.iter().enumerate() {
        match part {
            ContentPart::Text { text } => {
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                        "content_block": {"type": "text", "text": ""}}),
                ));
                if index == 0 {
                    events.push(event("ping", json!({"type": "ping"})));
                }
                for piece in super::openai::pieces(text) {
                    events.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": piece}}),
                    ));
                }
            }
            ContentPart::ToolUse(u) => {
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                        "content_block": {"type": "tool_use", "id": u.id, "name": u.name, "input": {}}}),
                ));
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": u.arguments}}),
                ));
            }
            other => {
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                        "content_block": render_block(other)}),
                ));
            }
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(event(
        "message_delta",
        json!({"type": "message_delta",
            "delta": {"stop_reason": finish_to(&r.finish_reason, None), "stop_sequence": null},
            "usage": {"output_tokens": usage.output_tokens}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}

pub(super) fn event_info(ev: &SseEvent) -> EventInfo {
    let mut info = EventInfo::default();
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        return info;
    };
    match v.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            info.usage = v.pointer("/message/usage").map(usage_part);
        }
        Some("content_block_delta")
            if v.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta") =>
        {
            info.text = Some(v.pointer("/delta/text").map(json_text).unwrap_or_default());
        }
        Some("content_block_stop") => info.block_stop = true,
        Some("message_delta") => {
            info.finish = v
                .pointer("/delta/stop_reason")
                .and_then(Value::as_str)
                .map(finish_from);
            info.usage = v.get("usage").map(usage_part);
        }
        Some("message_stop") => info.done = true,
        Some("error") => {
            info.error = Some(
                v.pointer("/error/message")
                    .map(json_text)
                    .unwrap_or_else(|| v.to_string()),
            );
        }
        _ => {}
    }
    info
}

pub(super) fn with_text(template: &SseEvent, text: &str) -> SseEvent {
    let mut v: Value = serde_json::from_str(&template.data).unwrap_or_else(|_| json!({}));
    if let Some(Value::Object(d)) = v.get_mut("delta") {
        d.insert("text".to_owned(), json!(text));
    }
    SseEvent::named("content_block_delta", v.to_string())
}

pub(super) fn error_body(e: &ProviderError) -> Vec<u8> {
    let kind = match e.kind {
        ProviderErrorKind::RateLimited => "rate_limit_error",
        ProviderErrorKind::ServerError if e.status == Some(529) => "overloaded_error",
        ProviderErrorKind::ServerError => "api_error",
        ProviderErrorKind::Timeout => "timeout_error",
        ProviderErrorKind::Authentication => "authentication_error",
        ProviderErrorKind::InvalidRequest => "invalid_request_error",
        ProviderErrorKind::Connection | ProviderErrorKind::Other => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": e.message}})
        .to_string()
        .into_bytes()
}

/// Anthropic messages (`POST …/v1/messages`).
#[derive(Debug, Clone, Copy)]
pub struct Messages;

impl WireFormat for Messages {
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
    fn render_stream(&self, r: &LlmResponse, _include_usage: bool) -> Vec<SseEvent> {
        render_stream(r)
    }
    fn event_info(&self, ev: &SseEvent) -> EventInfo {
        event_info(ev)
    }
    fn with_text(&self, template: &SseEvent, text: &str) -> SseEvent {
        with_text(template, text)
    }
    fn error_body(&self, e: &ProviderError) -> Vec<u8> {
        error_body(e)
    }
}

/// Anthropic token counting (`POST …/v1/messages/count_tokens`): a messages request in,
/// `{"input_tokens": n}` out.
#[derive(Debug, Clone, Copy)]
pub struct CountTokens;

impl WireFormat for CountTokens {
    fn parse_request(&self, body: Map<String, Value>) -> Result<ParsedRequest, WireError> {
        parse_request(body)
    }
    fn render_request(&self, parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
        render_request(parsed, request)
    }
    fn parse_response(&self, body: &[u8]) -> Result<LlmResponse, WireError> {
        Ok(super::inputs::parse_response(&answer_fields(body)?, None))
    }
    fn render_response(&self, _original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
        serde_json::json!({"input_tokens": r.usage.map_or(0, |u| u.input_tokens)})
            .to_string()
            .into_bytes()
    }
    fn error_body(&self, e: &ProviderError) -> Vec<u8> {
        error_body(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::api::Api;
    use crate::llm::sse::SseParser;

    const REQUEST: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"system":"Be brief.",
      "messages":[{"role":"user","content":"Hi"},
        {"role":"assistant","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"tu_1","name":"lookup","input":{"q":1}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"tu_1","content":"ok"}]}],
      "tools":[{"name":"lookup","description":"d","input_schema":{"type":"object"}}],
      "stream":true,"metadata":{"user_id":"u"}}"#;

    #[test]
    fn requests_parse_and_render_back() {
        let p = Api::Anthropic.parse_request(REQUEST.as_bytes()).unwrap();
        let r = &p.request;
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[0].joined_text(), "Be brief.");
        assert!(
            matches!(&r.messages[2].content[1], ContentPart::ToolUse(u) if u.arguments == r#"{"q":1}"#)
        );
        assert!(
            matches!(&r.messages[3].content[0], ContentPart::ToolOutput { content, .. } if content == "ok")
        );
        assert_eq!(r.max_output_tokens, Some(100));
        assert_eq!(r.tools[0].parameters, r#"{"type":"object"}"#);
        let mut changed = r.clone();
        changed.messages[1] = Message::text(Role::User, "Hello");
        let body: Value =
            serde_json::from_slice(&Api::Anthropic.render_request(&p, &changed)).unwrap();
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["messages"][0]["content"], "Hello");
        assert_eq!(body["messages"][1]["content"][1]["input"]["q"], 1);
        assert_eq!(body["messages"][2]["content"][0]["tool_use_id"], "tu_1");
        assert_eq!(body["metadata"]["user_id"], "u");
        assert_eq!(body["max_tokens"], 100);
    }

    #[test]
    fn usage_counts_cache_inside_input() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":10,"cache_read_input_tokens":90,"cache_creation_input_tokens":5,"output_tokens":2}}"#;
        let r = Api::Anthropic.parse_response(body).unwrap();
        let u = r.usage.unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.cache_write_input_tokens
            ),
            (105, 90, 5)
        );
        let out: Value =
            serde_json::from_slice(&Api::Anthropic.render_response(Some(body), &r)).unwrap();
        assert_eq!(out["usage"]["input_tokens"], 10);
        assert_eq!(out["stop_reason"], "end_turn");
    }

    #[test]
    fn streams_carry_text_finish_and_usage() {
        let r = LlmResponse::text("claude-x", "one two", Some(Usage::new(7, 2)));
        let wire: Vec<u8> = Api::Anthropic
            .render_stream(&r, true)
            .iter()
            .flat_map(|e| e.to_bytes())
            .collect();
        let events = SseParser::default().feed(&wire);
        let infos: Vec<EventInfo> = events
            .iter()
            .map(|e| Api::Anthropic.event_info(e))
            .collect();
        let text: String = infos.iter().filter_map(|i| i.text.clone()).collect();
        assert_eq!(text, "one two");
        let mut usage = Usage::default();
        for i in &infos {
            if let Some(u) = &i.usage {
                u.apply(&mut usage);
            }
        }
        assert_eq!((usage.input_tokens, usage.output_tokens), (7, 2));
        assert!(infos.iter().any(|i| i.finish.as_deref() == Some("stop")));
        assert!(infos.last().unwrap().done);
    }

    const BLOCKS: &str = r#"{"model":"claude-3-5-haiku-latest","max_tokens":50,
      "system":[{"type":"text","text":"SYSTEM jane@example.com","cache_control":{"type":"ephemeral"}}],
      "messages":[{"role":"user","content":[
          {"type":"document","source":{"type":"text","media_type":"text/plain","data":"DOC 123-45-6789"},
           "title":"T jane@example.com","citations":{"enabled":true},"cache_control":{"type":"ephemeral"}},
          {"type":"document","source":{"type":"content","content":[{"type":"text","text":"C1"},{"type":"text","text":"C2"}]}},
          {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}},
          {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw=="}},
          {"type":"text","text":"Q","cache_control":{"type":"ephemeral"}}]},
        {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"lookup",
          "input":{"email":"jane@example.com"},"cache_control":{"type":"ephemeral"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","cache_control":{"type":"ephemeral"},
          "content":[{"type":"text","text":"R1"},{"type":"text","text":"R2"}]},
          {"type":"server_tool_use","id":"s1","name":"web_search","input":{"query":"jane@example.com"}}]}]}"#;

    #[test]
    fn every_text_the_model_reads_is_a_part_and_extra_keys_survive_a_rewrite() {
        let p = Api::Anthropic.parse_request(BLOCKS.as_bytes()).unwrap();
        let m = &p.request.messages;
        let texts = |i: usize| -> Vec<String> {
            m[i].content
                .iter()
                .map(|c| match c {
                    ContentPart::Text { text } => format!("text:{text}"),
                    ContentPart::ToolOutput { content, .. } => format!("output:{content}"),
                    ContentPart::ToolUse(u) => format!("use:{}", u.arguments),
                    ContentPart::Image { url } => format!("image:{url}"),
                    ContentPart::Other { .. } => "other".to_owned(),
                })
                .collect()
        };
        assert_eq!(texts(0), ["text:SYSTEM jane@example.com"]);
        assert_eq!(
            texts(1),
            [
                "text:T jane@example.com",
                "text:DOC 123-45-6789",
                "text:C1",
                "text:C2",
                "other",
                "image:data:image/png;base64,iVBORw==",
                "text:Q"
            ]
        );
        assert_eq!(texts(2), [r#"use:{"email":"jane@example.com"}"#]);
        assert_eq!(texts(3), ["output:R1", "text:R2", "other"]);
        assert_eq!(p.unknown, ["messages[2].content[1] (server_tool_use)"]);

        // A policy rewrites values only: the body keeps every key it does not model.
        let mut r = p.request.clone();
        for msg in &mut r.messages {
            for part in &mut msg.content {
                match part {
                    ContentPart::Text { text } | ContentPart::ToolOutput { content: text, .. } => {
                        *text = text
                            .replace("jane@example.com", "[EMAIL]")
                            .replace("123-45-6789", "[SSN]")
                            .replace("R2", "r2");
                    }
                    ContentPart::ToolUse(u) => {
                        u.arguments = u.arguments.replace("jane@example.com", "[EMAIL]");
                    }
                    _ => {}
                }
            }
        }
        let body: Value = serde_json::from_slice(&Api::Anthropic.render_request(&p, &r)).unwrap();
        assert_eq!(body["system"][0]["text"], "SYSTEM [EMAIL]");
        assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
        let doc = &body["messages"][0]["content"][0];
        assert_eq!(doc["title"], "T [EMAIL]");
        assert_eq!(doc["source"]["data"], "DOC [SSN]");
        assert_eq!(doc["citations"]["enabled"], true);
        assert_eq!(doc["cache_control"]["type"], "ephemeral");
        assert_eq!(
            body["messages"][0]["content"][2]["source"]["data"],
            "JVBERi0="
        );
        assert_eq!(
            body["messages"][0]["content"][3]["source"]["type"],
            "base64"
        );
        assert_eq!(
            body["messages"][0]["content"][4]["cache_control"]["type"],
            "ephemeral"
        );
        let tool_use = &body["messages"][1]["content"][0];
        assert_eq!(tool_use["input"]["email"], "[EMAIL]");
        assert_eq!(tool_use["cache_control"]["type"], "ephemeral");
        let result = &body["messages"][2]["content"][0];
        assert_eq!(result["content"][1]["text"], "r2");
        assert_eq!(result["cache_control"]["type"], "ephemeral");
        assert_eq!(
            body["messages"][2]["content"][1]["input"]["query"],
            "jane@example.com"
        );
    }

    #[test]
    fn cached_system_prompts_count_their_tokens() {
        use crate::model::TokenMeter;
        use crate::model::tokens::ModelTokenMeter;
        let prompt = "All work and no play makes a dull agent. ".repeat(160);
        let body = json!({"model": "claude-3-5-haiku-latest", "max_tokens": 10,
            "system": [{"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}]});
        let p = Api::Anthropic
            .parse_request(body.to_string().as_bytes())
            .unwrap();
        let n = ModelTokenMeter::embedded().count_messages(&p.request.model, &p.request.messages);
        assert!(
            n as usize >= prompt.len() / 4,
            "{n} tokens for {} characters",
            prompt.len()
        );
    }
}
