//! OpenAI chat completions: `POST /v1/chat/completions`, JSON and SSE.

use serde_json::{Map, Value, json};

use super::sse::SseEvent;
use super::wire::{
    EventInfo, Origin, ParsedRequest, Parts, Shape, UsagePart, WireError, extra_map, json_text,
    json_value, model_of, neutral_request, patch, patch_parts, pointer_name, render_tools,
    str_field, tool_spec, u32_field, unix_now,
};
use super::wire::{WireFormat, answer_json};
use crate::model::{
    ContentPart, LlmRequest, LlmResponse, Message, ProviderError, ProviderErrorKind, Role, ToolUse,
    Usage,
};

const SHAPE: Shape = Shape {
    provider: "openai",
    modelled: &[
        "model",
        "messages",
        "tools",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "stream",
    ],
    max_keys: &["max_completion_tokens", "max_tokens"],
    tool: |t| {
        (t.get("type").and_then(Value::as_str) == Some("function")).then(|| {
            tool_spec(
                t,
                "/function/name",
                "/function/description",
                "/function/parameters",
            )
        })
    },
};

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

fn role(name: &str) -> Option<Role> {
    Some(match name {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        _ => return None,
    })
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// Parse a message's `content` (at `at`, a JSON pointer) into `out`; `unknown` collects the
/// parts the host does not model.
fn parse_parts(
    content: Option<&Value>,
    at: &str,
    out: &mut Parts,
    unknown: &mut Vec<String>,
) -> Result<(), WireError> {
    match content {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            out.text(s, at.to_owned());
            Ok(())
        }
        Some(Value::Array(parts)) => {
            for (k, p) in parts.iter().enumerate() {
                let here = format!("{at}/{k}");
                match p.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text" if p.get("text").is_some_and(Value::is_string) => {
                        out.text(&json_text(&p["text"]), format!("{here}/text"));
                    }
                    "refusal" if p.get("refusal").is_some_and(Value::is_string) => {
                        out.text(&json_text(&p["refusal"]), format!("{here}/refusal"));
                    }
                    "image_url" if p.pointer("/image_url/url").is_some_and(Value::is_string) => {
                        out.push(
                            ContentPart::Image {
                                url: json_text(&p["image_url"]["url"]),
                            },
                            Origin::Str(Some(format!("{here}/image_url/url"))),
                        );
                    }
                    // Audio and files carry no text to read (a file's name is scanned as JSON).
                    "input_audio" | "file" => out.other(p, here),
                    kind => {
                        unknown.push(format!("{} ({kind})", pointer_name(&here)));
                        out.other(p, here);
                    }
                }
            }
            Ok(())
        }
        Some(_) => Err(err(format!(
            "`{}` must be a string, a list of parts or null",
            pointer_name(at)
        ))),
    }
}

fn parse_message(
    at: usize,
    m: &Value,
    unknown: &mut Vec<String>,
) -> Result<(Message, Vec<Origin>), WireError> {
    parse_message_at(&format!("/messages/{at}"), at, m, unknown)
}

/// A message at the JSON pointer `base` (numbered `at` in errors).
fn parse_message_at(
    base: &str,
    at: usize,
    m: &Value,
    unknown: &mut Vec<String>,
) -> Result<(Message, Vec<Origin>), WireError> {
    let obj = m
        .as_object()
        .ok_or_else(|| err(format!("`messages[{at}]` is not an object")))?;
    let role_text =
        str_field(obj, "role").ok_or_else(|| err(format!("`messages[{at}].role` is missing")))?;
    let role = role(role_text).ok_or_else(|| {
        err(format!(
            "`messages[{at}].role` `{role_text}` is not a chat role"
        ))
    })?;
    let mut out = Parts::default();
    parse_parts(
        obj.get("content"),
        &format!("{base}/content"),
        &mut out,
        unknown,
    )?;
    if role == Role::Tool {
        // The first text is the tool's output; more texts stay texts of the same message.
        let tool_use_id = str_field(obj, "tool_call_id")
            .unwrap_or_default()
            .to_owned();
        let at_text = out
            .parts
            .iter()
            .position(|p| matches!(p, ContentPart::Text { .. }));
        match at_text {
            Some(i) => {
                if let ContentPart::Text { text } = &out.parts[i] {
                    out.parts[i] = ContentPart::ToolOutput {
                        tool_use_id,
                        content: text.clone(),
                        is_error: false,
                    };
                }
            }
            None => {
                out.parts.insert(
                    0,
                    ContentPart::ToolOutput {
                        tool_use_id,
                        content: String::new(),
                        is_error: false,
                    },
                );
                out.origins.insert(0, Origin::Str(None));
            }
        }
    }
    if let Some(calls) = obj.get("tool_calls").and_then(Value::as_array) {
        for (c, call) in calls.iter().enumerate() {
            let here = format!("{base}/tool_calls/{c}");
            out.tool_use(
                call,
                &here,
                ["/id", "/function/name", "/function/arguments"],
                false,
            );
        }
    }
    Ok((
        Message {
            role,
            content: out.parts,
        },
        out.origins,
    ))
}

pub(super) fn parse_request(original: Map<String, Value>) -> Result<ParsedRequest, WireError> {
    let model = model_of(&original)?;
    let mut unknown = Vec::new();
    let (messages, origins): (Vec<Message>, Vec<Vec<Origin>>) = original
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| err("`messages` is missing or not a list"))?
        .iter()
        .enumerate()
        .map(|(i, m)| parse_message(i, m, &mut unknown))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let wants_stream_usage = original
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let request = neutral_request(&SHAPE, &original, model, messages);
    Ok(ParsedRequest {
        request,
        original,
        wants_stream_usage,
        origins,
        unknown,
    })
}

fn render_tool_use(u: &ToolUse) -> Value {
    json!({"id": u.id, "type": "function", "function": {"name": u.name, "arguments": u.arguments}})
}

/// The `tool_calls` list of a message's tool uses.
fn tool_calls(parts: &[ContentPart]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::ToolUse(u) => Some(render_tool_use(u)),
            _ => None,
        })
        .collect()
}

fn render_message(m: &Message, original: Option<&Value>) -> Value {
    // Start from the agent's own message where it lines up, so fields the neutral form does
    // not model (`name`, a `developer` role) are kept.
    let mut out = match original {
        Some(Value::Object(o)) if str_field(o, "role").and_then(role) == Some(m.role) => o.clone(),
        _ => {
            let mut o = Map::new();
            o.insert("role".to_owned(), json!(role_name(m.role)));
            o
        }
    };
    let uses = tool_calls(&m.content);
    if m.role == Role::Tool {
        for p in &m.content {
            if let ContentPart::ToolOutput {
                tool_use_id,
                content,
                ..
            } = p
            {
                out.insert("tool_call_id".to_owned(), json!(tool_use_id));
                out.insert("content".to_owned(), json!(content));
            }
        }
        return Value::Object(out);
    }
    let parts: Vec<&ContentPart> = m
        .content
        .iter()
        .filter(|p| !matches!(p, ContentPart::ToolUse(_)))
        .collect();
    let content = match parts.as_slice() {
        [] => Value::Null,
        [ContentPart::Text { text }] if !matches!(out.get("content"), Some(Value::Array(_))) => {
            json!(text)
        }
        _ => Value::Array(
            parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => json!({"type": "text", "text": text}),
                    ContentPart::Image { url } => {
                        json!({"type": "image_url", "image_url": {"url": url}})
                    }
                    ContentPart::Other { json } => json_value(json),
                    ContentPart::ToolOutput { content, .. } => {
                        json!({"type": "text", "text": content})
                    }
                    ContentPart::ToolUse(_) => Value::Null,
                })
                .collect(),
        ),
    };
    out.insert("content".to_owned(), content);
    if uses.is_empty() {
        out.remove("tool_calls");
    } else {
        out.insert("tool_calls".to_owned(), Value::Array(uses));
    }
    Value::Object(out)
}

pub(super) fn render_request(parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
    let mut out = extra_map(request);
    out.insert("model".to_owned(), json!(request.model));
    let messages = match patch(parsed, request) {
        Some(mut body) => body.remove("messages").unwrap_or(Value::Null),
        None => {
            let originals = parsed
                .original
                .get("messages")
                .and_then(Value::as_array)
                .filter(|o| o.len() == request.messages.len());
            Value::Array(
                request
                    .messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| render_message(m, originals.and_then(|o| o.get(i))))
                    .collect(),
            )
        }
    };
    out.insert("messages".to_owned(), messages);
    render_tools(&mut out, parsed, request, |t| {
        json!({"type": "function", "function": {
            "name": t.name, "description": t.description,
            "parameters": json_value(&t.parameters)}})
    });
    if let Some(n) = request.max_output_tokens {
        let key = if parsed.original.contains_key("max_tokens") {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        out.insert(key.to_owned(), json!(n));
    }
    if let Some(t) = request.temperature {
        out.insert("temperature".to_owned(), json!(t));
    }
    if request.stream {
        out.insert("stream".to_owned(), json!(true));
        // The host settles every streamed call from the provider's usage report.
        let opts = out.entry("stream_options").or_insert_with(|| json!({}));
        if let Value::Object(o) = opts {
            o.insert("include_usage".to_owned(), json!(true));
        }
    } else if parsed.original.contains_key("stream") {
        out.insert("stream".to_owned(), json!(false));
    }
    Value::Object(out).to_string().into_bytes()
}

/// Neutral finish reason for OpenAI's.
fn finish_from(reason: &str) -> String {
    match reason {
        "tool_calls" | "function_call" => "tool-use".to_owned(),
        "content_filter" => "content-filter".to_owned(),
        other => other.to_owned(),
    }
}

fn finish_to(reason: &str) -> String {
    match reason {
        "tool-use" => "tool_calls".to_owned(),
        "content-filter" => "content_filter".to_owned(),
        other => other.to_owned(),
    }
}

fn usage_from(u: &Value) -> Option<Usage> {
    let input = u32_field(u, "/prompt_tokens")?;
    Some(Usage {
        input_tokens: input,
        output_tokens: u32_field(u, "/completion_tokens").unwrap_or(0),
        cached_input_tokens: u32_field(u, "/prompt_tokens_details/cached_tokens").unwrap_or(0),
        cache_write_input_tokens: 0,
    })
}

fn usage_to(u: &Usage, original: Option<&Value>) -> Value {
    let mut out = match original {
        Some(Value::Object(o)) => o.clone(),
        _ => match json!({
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        }) {
            Value::Object(o) => o,
            _ => Map::new(),
        },
    };
    out.insert("prompt_tokens".to_owned(), json!(u.input_tokens));
    out.insert("completion_tokens".to_owned(), json!(u.output_tokens));
    out.insert(
        "total_tokens".to_owned(),
        json!(u64::from(u.input_tokens) + u64::from(u.output_tokens)),
    );
    if let Some(Value::Object(d)) = out.get_mut("prompt_tokens_details") {
        d.insert("cached_tokens".to_owned(), json!(u.cached_input_tokens));
    }
    Value::Object(out)
}

/// Every choice's parts in order (one choice unless the agent asked for `n`), with where each
/// sits in the answer: the chain reads every choice the agent will get.
fn answer_parts(v: &Value) -> Result<(Vec<ContentPart>, Vec<Origin>), WireError> {
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| err("the answer has no `choices[0].message`"))?;
    let mut parts = Vec::new();
    let mut origins = Vec::new();
    for (c, choice) in choices.iter().enumerate() {
        let msg = choice
            .get("message")
            .ok_or_else(|| err(format!("the answer has no `choices[{c}].message`")))?;
        let (m, o) = parse_message_at(&format!("/choices/{c}/message"), c, msg, &mut Vec::new())?;
        parts.extend(m.content);
        origins.extend(o);
    }
    Ok((parts, origins))
}

pub(super) fn parse_response(v: &Value) -> Result<LlmResponse, WireError> {
    let (content, _) = answer_parts(v)?;
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
            .map(finish_from)
            .unwrap_or_else(|| "stop".to_owned()),
        usage: v.get("usage").and_then(usage_from),
    })
}

/// An answer with one choice per text part of `r` (the simulator's answer to `n` > 1).
pub(crate) fn render_choices(r: &LlmResponse) -> Vec<u8> {
    let choices: Vec<Value> = r
        .message
        .content
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let text = match p {
                ContentPart::Text { text } => json!(text),
                _ => Value::Null,
            };
            json!({"index": i, "message": {"role": "assistant", "content": text,
                "refusal": null, "annotations": []}, "logprobs": null,
                "finish_reason": finish_to(&r.finish_reason)})
        })
        .collect();
    let mut out = json!({
        "id": r.id, "object": "chat.completion", "created": unix_now(), "model": r.model,
        "choices": choices, "service_tier": "default", "system_fingerprint": fingerprint(&r.model),
    });
    if let Some(u) = &r.usage {
        out["usage"] = usage_to(u, None);
    }
    out.to_string().into_bytes()
}

/// A stable `system_fingerprint` for a model, shaped like OpenAI's.
fn fingerprint(model: &str) -> String {
    let h = super::stable_hash(&[model.as_bytes()]);
    format!("fp_{:010x}", h & 0xff_ffff_ffff)
}

pub(super) fn render_response(original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
    // The provider's answer with the chain's values written back, every choice and every
    // other field kept, when the chain changed only values.
    if let Some(o) = &original {
        let mut body = Value::Object(o.clone());
        if let Ok((old, origins)) = answer_parts(&body)
            && patch_parts(&mut body, &old, &r.message.content, &origins).is_some()
        {
            if let Some(u) = &r.usage {
                let rendered = usage_to(u, body.get("usage"));
                body["usage"] = rendered;
            }
            return body.to_string().into_bytes();
        }
    }
    let text = r.message.joined_text();
    let has_text = r
        .message
        .content
        .iter()
        .any(|p| matches!(p, ContentPart::Text { .. }));
    let uses = tool_calls(&r.message.content);
    let mut out = original.unwrap_or_else(|| {
        match json!({
            "id": r.id, "object": "chat.completion", "created": unix_now(), "model": r.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
            "service_tier": "default", "system_fingerprint": fingerprint(&r.model),
        }) {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    });
    if let Some(Value::Object(choice)) = out
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .and_then(|c| c.get_mut(0))
    {
        choice.insert(
            "finish_reason".to_owned(),
            json!(finish_to(&r.finish_reason)),
        );
        if let Some(Value::Object(m)) = choice.get_mut("message") {
            m.insert(
                "content".to_owned(),
                if has_text { json!(text) } else { Value::Null },
            );
            if uses.is_empty() {
                m.remove("tool_calls");
            } else {
                m.insert("tool_calls".to_owned(), Value::Array(uses));
            }
        }
    }
    if let Some(u) = &r.usage {
        let rendered = usage_to(u, out.get("usage"));
        out.insert("usage".to_owned(), rendered);
    }
    Value::Object(out).to_string().into_bytes()
}

/// Cut text the way a model streams it: a word with its trailing space per piece.
pub(crate) fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            out.push(&text[start..i]);
            start = i;
            in_space = false;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

pub(super) fn render_stream(r: &LlmResponse, include_usage: bool) -> Vec<SseEvent> {
    let created = unix_now();
    let fp = fingerprint(&r.model);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": r.id, "object": "chat.completion.chunk", "created": created, "model": r.model,
            "service_tier": "default", "system_fingerprint": fp,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage && let Value::Object(o) = &mut c {
            o.insert("usage".to_owned(), Value::Null);
        }
        SseEvent::data(c.to_string())
    };
    let text = r.message.joined_text();
    let calls_only = text.is_empty()
        && r.message
            .content
            .iter()
            .any(|p| matches!(p, ContentPart::ToolUse(_)));
    // An answer that only calls tools starts with `content: null`, as OpenAI sends it.
    let content = if calls_only { Value::Null } else { json!("") };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": content, "refusal": null}),
        Value::Null,
    )];
    for piece in pieces(&text) {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    let mut index = 0;
    for p in &r.message.content {
        if let ContentPart::ToolUse(u) = p {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "id": u.id, "type": "function",
                    "function": {"name": u.name, "arguments": ""}}]}),
                Value::Null,
            ));
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": u.arguments}}]}),
                Value::Null,
            ));
            index += 1;
        }
    }
    events.push(chunk(json!({}), json!(finish_to(&r.finish_reason))));
    if include_usage && let Some(u) = &r.usage {
        let c = json!({
            "id": r.id, "object": "chat.completion.chunk", "created": created, "model": r.model,
            "service_tier": "default", "system_fingerprint": fp, "choices": [],
            "usage": usage_to(u, None),
        });
        events.push(SseEvent::data(c.to_string()));
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
        info.error = Some(
            e.get("message")
                .map(json_text)
                .unwrap_or_else(|| e.to_string()),
        );
        return info;
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        info.usage = Some(UsagePart {
            input_tokens: u32_field(u, "/prompt_tokens"),
            output_tokens: u32_field(u, "/completion_tokens"),
            cached_input_tokens: u32_field(u, "/prompt_tokens_details/cached_tokens"),
            cache_write_input_tokens: None,
        });
    }
    let choices = v.get("choices").and_then(Value::as_array);
    if choices.is_some_and(|c| c.is_empty()) && info.usage.is_some() {
        info.usage_only = true;
    }
    if let Some(text) = v
        .pointer("/choices/0/delta/content")
        .and_then(Value::as_str)
    {
        info.text = Some(text.to_owned());
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
    if let Some(Value::Object(choice)) = v
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .and_then(|c| c.get_mut(0))
    {
        choice.insert("delta".to_owned(), json!({"content": text}));
        choice.insert("finish_reason".to_owned(), Value::Null);
    }
    SseEvent::data(v.to_string())
}

pub(super) fn error_body(e: &ProviderError) -> Vec<u8> {
    let (kind, code) = match e.kind {
        ProviderErrorKind::RateLimited => ("requests", "rate_limit_exceeded"),
        ProviderErrorKind::ServerError => ("server_error", "server_error"),
        ProviderErrorKind::Timeout => ("timeout", "timeout"),
        ProviderErrorKind::Authentication => ("invalid_request_error", "invalid_api_key"),
        ProviderErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
        ProviderErrorKind::Connection | ProviderErrorKind::Other => ("api_error", "api_error"),
    };
    json!({"error": {"message": e.message, "type": kind, "param": null, "code": code}})
        .to_string()
        .into_bytes()
}

/// OpenAI chat completions (`POST …/chat/completions`).
#[derive(Debug, Clone, Copy)]
pub struct Chat;

impl WireFormat for Chat {
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
        error_body(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::api::Api;
    use crate::llm::sse::SseParser;

    const REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[
        {"role":"developer","content":"Be brief."},
        {"role":"user","content":[{"type":"text","text":"Hi"},{"type":"image_url","image_url":{"url":"https://x/y.png","detail":"low"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}]},
        {"role":"tool","tool_call_id":"call_1","content":"{\"ok\":true}"}],
      "tools":[{"type":"function","function":{"name":"lookup","description":"d","parameters":{"type":"object"}}}],
      "max_completion_tokens":50,"temperature":0.2,"stream":true,"seed":7}"#;

    #[test]
    fn requests_parse_into_the_neutral_form() {
        let p = Api::OpenAi.parse_request(REQUEST.as_bytes()).unwrap();
        let r = &p.request;
        assert_eq!(r.model, "gpt-4o-mini");
        assert_eq!(r.messages.len(), 4);
        assert_eq!(r.messages[0].role, Role::System);
        // An image with `detail` is still an image; `detail` stays in the body (see below).
        assert!(
            matches!(&r.messages[1].content[1], ContentPart::Image { url } if url == "https://x/y.png")
        );
        assert!(p.unknown.is_empty());
        assert!(matches!(&r.messages[2].content[0], ContentPart::ToolUse(u) if u.name == "lookup"));
        assert!(
            matches!(&r.messages[3].content[0], ContentPart::ToolOutput { tool_use_id, .. } if tool_use_id == "call_1")
        );
        assert_eq!(r.tools[0].name, "lookup");
        assert_eq!(r.max_output_tokens, Some(50));
        assert!(r.stream);
        assert_eq!(r.extra, r#"{"seed":7}"#);
        assert!(!p.wants_stream_usage);
    }

    #[test]
    fn rendering_keeps_what_the_agent_sent_and_asks_for_usage() {
        let p = Api::OpenAi.parse_request(REQUEST.as_bytes()).unwrap();
        let mut r = p.request.clone();
        r.messages[1].content[0] = ContentPart::Text {
            text: "Hello".to_owned(),
        };
        let body: Value = serde_json::from_slice(&Api::OpenAi.render_request(&p, &r)).unwrap();
        assert_eq!(body["messages"][0]["role"], "developer");
        assert_eq!(body["messages"][1]["content"][0]["text"], "Hello");
        assert_eq!(
            body["messages"][1]["content"][1]["image_url"]["detail"],
            "low"
        );
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["name"],
            "lookup"
        );
        assert_eq!(body["messages"][3]["tool_call_id"], "call_1");
        assert_eq!(body["max_completion_tokens"], 50);
        assert_eq!(body["seed"], 7);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");
    }

    #[test]
    fn answers_round_trip_and_rewrites_keep_other_fields() {
        let mut r = LlmResponse::text("gpt-4o-mini", "Hello there", Some(Usage::new(12, 3)));
        r.id = "chatcmpl-1".to_owned();
        let body = Api::OpenAi.render_response(None, &r);
        let back = Api::OpenAi.parse_response(&body).unwrap();
        assert_eq!(back.message.joined_text(), "Hello there");
        assert_eq!(back.usage, Some(Usage::new(12, 3)));
        let mut changed = back.clone();
        changed.message = Message::text(Role::Assistant, "[redacted]");
        let out: Value =
            serde_json::from_slice(&Api::OpenAi.render_response(Some(&body), &changed)).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "[redacted]");
        assert_eq!(out["id"], "chatcmpl-1");
        assert_eq!(out["usage"]["total_tokens"], 15);
        assert!(
            out["system_fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("fp_")
        );
    }

    #[test]
    fn streams_carry_text_finish_and_usage() {
        let r = LlmResponse::text("gpt-4o", "one two three", Some(Usage::new(5, 3)));
        let events = Api::OpenAi.render_stream(&r, true);
        let wire: Vec<u8> = events.iter().flat_map(|e| e.to_bytes()).collect();
        let parsed = SseParser::default().feed(&wire);
        let infos: Vec<EventInfo> = parsed.iter().map(|e| Api::OpenAi.event_info(e)).collect();
        let text: String = infos.iter().filter_map(|i| i.text.clone()).collect();
        assert_eq!(text, "one two three");
        assert!(infos.iter().any(|i| i.finish.as_deref() == Some("stop")));
        assert!(infos.iter().any(|i| i.usage_only));
        assert!(infos.last().unwrap().done);
        let swapped = Api::OpenAi.event_info(&Api::OpenAi.with_text(&parsed[1], "X"));
        assert_eq!(swapped.text.as_deref(), Some("X"));
    }

    #[test]
    fn tool_call_arguments_and_refusals_in_the_history_are_parts_the_chain_rewrites() {
        let body = r#"{"model":"gpt-4o-mini","messages":[
            {"role":"user","name":"jane","content":"hi"},
            {"role":"assistant","content":[{"type":"refusal","refusal":"No, jane@example.com."}],
             "tool_calls":[{"id":"c1","type":"function","function":{"name":"mail","arguments":"{\"to\":\"jane@example.com\"}"}}]},
            {"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"sent to jane@example.com"}]},
            {"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAA=","format":"wav"}},
                {"type":"mystery","text":"jane@example.com"}]}]}"#;
        let p = Api::OpenAi.parse_request(body.as_bytes()).unwrap();
        assert_eq!(p.unknown, ["messages[3].content[1] (mystery)"]);
        let mut r = p.request.clone();
        for m in &mut r.messages {
            for part in &mut m.content {
                match part {
                    ContentPart::Text { text } | ContentPart::ToolOutput { content: text, .. } => {
                        *text = text.replace("jane@example.com", "[EMAIL]");
                    }
                    ContentPart::ToolUse(u) => {
                        u.arguments = u.arguments.replace("jane@example.com", "[EMAIL]");
                    }
                    _ => {}
                }
            }
        }
        let out: Value = serde_json::from_slice(&Api::OpenAi.render_request(&p, &r)).unwrap();
        assert_eq!(out["messages"][0]["name"], "jane");
        assert_eq!(out["messages"][1]["content"][0]["refusal"], "No, [EMAIL].");
        assert_eq!(
            out["messages"][1]["tool_calls"][0]["function"]["arguments"],
            r#"{"to":"[EMAIL]"}"#
        );
        assert_eq!(out["messages"][2]["content"][0]["text"], "sent to [EMAIL]");
        assert_eq!(
            out["messages"][3]["content"][0]["input_audio"]["data"],
            "AAA="
        );
    }

    #[test]
    fn every_choice_of_an_answer_is_read_and_rewritten() {
        let mut r = LlmResponse::text("gpt-4o-mini", "a", Some(Usage::new(3, 2)));
        r.message.content.push(ContentPart::Text {
            text: "b jane@example.com".to_owned(),
        });
        let body = render_choices(&r);
        let back = Api::OpenAi.parse_response(&body).unwrap();
        assert_eq!(back.message.content.len(), 2);
        let mut changed = back.clone();
        changed.message.content[1] = ContentPart::Text {
            text: "b [EMAIL]".to_owned(),
        };
        let out: Value =
            serde_json::from_slice(&Api::OpenAi.render_response(Some(&body), &changed)).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "a");
        assert_eq!(out["choices"][1]["message"]["content"], "b [EMAIL]");
    }
}
