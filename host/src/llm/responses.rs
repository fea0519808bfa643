//! OpenAI Responses API: `POST /v1/responses`, JSON and SSE (`response.*` events).
//!
//! The request's `instructions` and `input` items become neutral messages: message items by
//! role, a `function_call` item an assistant tool use, a `function_call_output` item a tool
//! output. Items the neutral form does not model (reasoning, item references, built-in tool
//! calls) pass as `other` parts. An answer's `output` items map the same way back.

use serde_json::{Map, Value, json};

use super::sse::SseEvent;
use super::wire::{
    EventInfo, Origin, ParsedRequest, Parts, Shape, UsagePart, WireError, extra_map, json_text,
    json_value, model_of, neutral_request, patch, patch_parts, pointer_name, render_limits,
    render_tools, tool_spec, u32_field, unix_now,
};
use super::wire::{WireFormat, answer_fields};
use crate::model::{ContentPart, LlmRequest, LlmResponse, Message, ProviderError, Role, Usage};

const SHAPE: Shape = Shape {
    provider: "openai",
    modelled: &[
        "model",
        "input",
        "instructions",
        "tools",
        "max_output_tokens",
        "temperature",
        "stream",
    ],
    max_keys: &["max_output_tokens"],
    // Built-in tools (web search, file search…) the neutral form cannot describe.
    tool: |t| {
        (t.get("type").and_then(Value::as_str) == Some("function"))
            .then(|| tool_spec(t, "/name", "/description", "/parameters"))
    },
};

/// Where a `function_call` item keeps its call id, name and arguments.
const FUNCTION_CALL: [&str; 3] = ["/call_id", "/name", "/arguments"];

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

fn role(name: &str) -> Option<Role> {
    Some(match name {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        _ => return None,
    })
}

/// The parts of a message item's (or a tool output's) content at `at`.
fn parse_content(
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
                    "input_text" | "output_text" | "text"
                        if p.get("text").is_some_and(Value::is_string) =>
                    {
                        out.text(&json_text(&p["text"]), format!("{here}/text"));
                    }
                    "refusal" if p.get("refusal").is_some_and(Value::is_string) => {
                        out.text(&json_text(&p["refusal"]), format!("{here}/refusal"));
                    }
                    "input_image" if p.get("image_url").is_some_and(Value::is_string) => {
                        out.push(
                            ContentPart::Image {
                                url: json_text(&p["image_url"]),
                            },
                            Origin::Str(Some(format!("{here}/image_url"))),
                        );
                    }
                    // Uploaded files and images by id, audio: no text to read (a file's name
                    // is scanned as JSON).
                    "input_image" | "input_file" | "input_audio" => out.other(p, here),
                    kind => {
                        unknown.push(format!("{} ({kind})", pointer_name(&here)));
                        out.other(p, here);
                    }
                }
            }
            Ok(())
        }
        Some(_) => Err(err(format!(
            "`{}` must be a string or a list of content parts",
            pointer_name(at)
        ))),
    }
}

/// One `input` item as a message.
fn parse_item(
    k: usize,
    item: &Value,
    unknown: &mut Vec<String>,
) -> Result<(Message, Vec<Origin>), WireError> {
    let here = format!("/input/{k}");
    let kind = item.get("type").and_then(Value::as_str);
    let mut out = Parts::default();
    let role = match kind {
        None | Some("message") => {
            let name = item
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("`input[{k}].role` is missing")))?;
            let role = role(name).ok_or_else(|| {
                err(format!(
                    "`input[{k}].role` `{name}` is not `user`, `assistant`, `system` or `developer`"
                ))
            })?;
            parse_content(
                item.get("content"),
                &format!("{here}/content"),
                &mut out,
                unknown,
            )?;
            role
        }
        Some("function_call") => {
            out.tool_use(item, &here, FUNCTION_CALL, false);
            Role::Assistant
        }
        Some("function_call_output") => {
            let tool_use_id = item.get("call_id").map(json_text).unwrap_or_default();
            let mut rest = Parts::default();
            parse_content(
                item.get("output"),
                &format!("{here}/output"),
                &mut rest,
                unknown,
            )?;
            // The first text is the tool's output; images and further texts follow.
            let first = rest
                .parts
                .iter()
                .position(|p| matches!(p, ContentPart::Text { .. }));
            let (content, origin) = match first {
                Some(i) => {
                    let origin = rest.origins.remove(i);
                    match rest.parts.remove(i) {
                        ContentPart::Text { text } => (text, origin),
                        _ => (String::new(), Origin::Str(None)),
                    }
                }
                None => (String::new(), Origin::Str(None)),
            };
            out.push(
                ContentPart::ToolOutput {
                    tool_use_id,
                    content,
                    is_error: false,
                },
                origin,
            );
            out.parts.append(&mut rest.parts);
            out.origins.append(&mut rest.origins);
            Role::Tool
        }
        // Earlier output the host passes as it is: reasoning (encrypted), references to stored
        // items.
        Some("reasoning" | "item_reference") => {
            out.other(item, here);
            Role::Assistant
        }
        Some(other) => {
            unknown.push(format!("input[{k}] ({other})"));
            out.other(item, here);
            Role::Assistant
        }
    };
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
    let mut messages = Vec::new();
    let mut origins = Vec::new();
    let mut unknown = Vec::new();
    match original.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            messages.push(Message::text(Role::System, s.clone()));
            origins.push(vec![Origin::Str(Some("/instructions".to_owned()))]);
        }
        Some(_) => return Err(err("`instructions` must be a string")),
    }
    match original.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            messages.push(Message::text(Role::User, s.clone()));
            origins.push(vec![Origin::Str(Some("/input".to_owned()))]);
        }
        Some(Value::Array(items)) => {
            for (k, item) in items.iter().enumerate() {
                let (m, o) = parse_item(k, item, &mut unknown)?;
                messages.push(m);
                origins.push(o);
            }
        }
        Some(_) => return Err(err("`input` must be a string or a list of items")),
    }
    if messages.is_empty() && !original.contains_key("previous_response_id") {
        return Err(err("`input` is missing"));
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

/// A message as input items (the chain changed the structure).
fn render_items(m: &Message, out: &mut Vec<Value>) {
    let mut content = Vec::new();
    let text_kind = if m.role == Role::Assistant {
        "output_text"
    } else {
        "input_text"
    };
    for p in &m.content {
        match p {
            ContentPart::Text { text } => content.push(if m.role == Role::Assistant {
                json!({"type": text_kind, "text": text, "annotations": []})
            } else {
                json!({"type": text_kind, "text": text})
            }),
            ContentPart::Image { url } => {
                content.push(json!({"type": "input_image", "image_url": url, "detail": "auto"}));
            }
            ContentPart::ToolUse(u) => out.push(json!({"type": "function_call",
                "call_id": u.id, "name": u.name, "arguments": u.arguments})),
            ContentPart::ToolOutput {
                tool_use_id,
                content: text,
                ..
            } => out.push(
                json!({"type": "function_call_output", "call_id": tool_use_id, "output": text}),
            ),
            ContentPart::Other { json } => {
                let v = json_value(json);
                if v.get("type").and_then(Value::as_str).is_some_and(|t| {
                    t.starts_with("input_") || t == "output_text" || t == "refusal"
                }) {
                    content.push(v);
                } else {
                    out.push(v);
                }
            }
        }
    }
    if !content.is_empty() {
        let role = match m.role {
            Role::System => "developer",
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        out.push(json!({"type": "message", "role": role, "content": content}));
    }
}

pub(super) fn render_request(parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
    let mut out = extra_map(request);
    out.insert("model".to_owned(), json!(request.model));
    if let Some(mut body) = patch(parsed, request) {
        for key in ["instructions", "input"] {
            if let Some(v) = body.remove(key) {
                out.insert(key.to_owned(), v);
            }
        }
    } else {
        let mut rest = request.messages.as_slice();
        if parsed.original.contains_key("instructions")
            && let Some((first, tail)) = rest.split_first()
            && first.role == Role::System
        {
            out.insert("instructions".to_owned(), json!(first.joined_text()));
            rest = tail;
        }
        let mut items = Vec::new();
        for m in rest {
            render_items(m, &mut items);
        }
        out.insert("input".to_owned(), Value::Array(items));
    }
    render_tools(&mut out, parsed, request, |t| {
        json!({"type": "function", "name": t.name, "description": t.description,
            "parameters": json_value(&t.parameters), "strict": false})
    });
    render_limits(&mut out, parsed, request, "max_output_tokens");
    Value::Object(out).to_string().into_bytes()
}

/// The answer's `output` items as parts, with where each came from (pointers from the
/// answer's root).
fn output_parts(output: &[Value]) -> (Vec<ContentPart>, Vec<Origin>) {
    let mut out = Parts::default();
    for (i, item) in output.iter().enumerate() {
        let here = format!("/output/{i}");
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let mut ignored = Vec::new();
                if parse_content(
                    item.get("content"),
                    &format!("{here}/content"),
                    &mut out,
                    &mut ignored,
                )
                .is_err()
                {
                    out.other(item, here);
                }
            }
            Some("function_call") => out.tool_use(item, &here, FUNCTION_CALL, false),
            _ => out.other(item, here),
        }
    }
    (out.parts, out.origins)
}

fn usage_part(u: &Value) -> UsagePart {
    UsagePart {
        input_tokens: u32_field(u, "/input_tokens"),
        output_tokens: u32_field(u, "/output_tokens"),
        cached_input_tokens: u32_field(u, "/input_tokens_details/cached_tokens"),
        cache_write_input_tokens: None,
    }
}

fn usage_from(u: &Value) -> Option<Usage> {
    let input = u32_field(u, "/input_tokens")?;
    Some(Usage {
        input_tokens: input,
        output_tokens: u32_field(u, "/output_tokens").unwrap_or(0),
        cached_input_tokens: u32_field(u, "/input_tokens_details/cached_tokens").unwrap_or(0),
        cache_write_input_tokens: 0,
    })
}

fn usage_to(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u64::from(u.input_tokens) + u64::from(u.output_tokens),
    })
}

/// The neutral finish reason of an answer object.
fn finish_of(v: &Value, parts: &[ContentPart]) -> String {
    match v.get("status").and_then(Value::as_str) {
        Some("incomplete") => {
            match v
                .pointer("/incomplete_details/reason")
                .and_then(Value::as_str)
            {
                Some("content_filter") => "content-filter".to_owned(),
                _ => "length".to_owned(),
            }
        }
        _ if parts.iter().any(|p| matches!(p, ContentPart::ToolUse(_))) => "tool-use".to_owned(),
        _ => "stop".to_owned(),
    }
}

pub(super) fn parse_response(v: &Value) -> Result<LlmResponse, WireError> {
    let output = v
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| err("the answer has no `output` list"))?;
    let (content, _) = output_parts(output);
    Ok(LlmResponse {
        id: v.get("id").map(json_text).unwrap_or_default(),
        model: v.get("model").map(json_text).unwrap_or_default(),
        finish_reason: finish_of(v, &content),
        message: Message {
            role: Role::Assistant,
            content,
        },
        usage: v.get("usage").and_then(usage_from),
    })
}

/// The id suffix of an answer (`resp_X` → `X`), for the ids of its items.
fn id_stem(id: &str) -> &str {
    id.strip_prefix("resp_").unwrap_or(id)
}

/// The answer's parts as `output` items: consecutive texts in one message item, each tool use
/// a `function_call` item, anything else as it came.
fn output_items(r: &LlmResponse, status: &str) -> Vec<Value> {
    let stem = id_stem(&r.id);
    let mut items = Vec::new();
    let mut texts: Vec<Value> = Vec::new();
    let flush = |texts: &mut Vec<Value>, items: &mut Vec<Value>| {
        if !texts.is_empty() {
            let n = items.len();
            items.push(json!({"id": format!("msg_{stem}{n}"), "type": "message",
                "status": status, "content": std::mem::take(texts), "role": "assistant"}));
        }
    };
    for p in &r.message.content {
        match p {
            ContentPart::Text { text } => texts.push(
                json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text}),
            ),
            ContentPart::ToolUse(u) => {
                flush(&mut texts, &mut items);
                let n = items.len();
                items.push(
                    json!({"id": format!("fc_{stem}{n}"), "type": "function_call",
                    "status": status, "arguments": u.arguments, "call_id": u.id, "name": u.name}),
                );
            }
            ContentPart::Other { json } => {
                flush(&mut texts, &mut items);
                items.push(json_value(json));
            }
            ContentPart::ToolOutput { content, .. } => texts.push(
                json!({"type": "output_text", "annotations": [], "logprobs": [], "text": content}),
            ),
            ContentPart::Image { .. } => {}
        }
    }
    flush(&mut texts, &mut items);
    items
}

/// A complete answer object for `r`, with the request's settings echoed as the API does.
pub(crate) fn answer_object(request: Option<&Map<String, Value>>, r: &LlmResponse) -> Value {
    let asked = |k: &str| request.and_then(|q| q.get(k)).cloned();
    let incomplete = r.finish_reason == "length" || r.finish_reason == "content-filter";
    let reason = if r.finish_reason == "content-filter" {
        "content_filter"
    } else {
        "max_output_tokens"
    };
    json!({
        "id": r.id,
        "object": "response",
        "created_at": unix_now(),
        "status": if incomplete { "incomplete" } else { "completed" },
        "background": false,
        "error": null,
        "incomplete_details": if incomplete { json!({"reason": reason}) } else { Value::Null },
        "instructions": asked("instructions").unwrap_or(Value::Null),
        "max_output_tokens": asked("max_output_tokens").unwrap_or(Value::Null),
        "max_tool_calls": asked("max_tool_calls").unwrap_or(Value::Null),
        "model": r.model,
        "output": output_items(r, if incomplete { "incomplete" } else { "completed" }),
        "parallel_tool_calls": asked("parallel_tool_calls").unwrap_or(json!(true)),
        "previous_response_id": asked("previous_response_id").unwrap_or(Value::Null),
        "prompt_cache_key": asked("prompt_cache_key").unwrap_or(Value::Null),
        "reasoning": asked("reasoning").unwrap_or(json!({"effort": null, "summary": null})),
        "safety_identifier": asked("safety_identifier").unwrap_or(Value::Null),
        "service_tier": "default",
        "store": asked("store").unwrap_or(json!(true)),
        "temperature": asked("temperature").unwrap_or(json!(1.0)),
        "text": asked("text").unwrap_or(json!({"format": {"type": "text"}, "verbosity": "medium"})),
        "tool_choice": asked("tool_choice").unwrap_or(json!("auto")),
        "tools": asked("tools").unwrap_or(json!([])),
        "top_logprobs": asked("top_logprobs").unwrap_or(json!(0)),
        "top_p": asked("top_p").unwrap_or(json!(1.0)),
        "truncation": asked("truncation").unwrap_or(json!("disabled")),
        "usage": r.usage.as_ref().map_or(Value::Null, usage_to),
        "user": asked("user").unwrap_or(Value::Null),
        "metadata": asked("metadata").unwrap_or(json!({})),
    })
}

pub(super) fn render_response(original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
    let Some(original) = original else {
        return answer_object(None, r).to_string().into_bytes();
    };
    let mut body = Value::Object(original);
    let output = body
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (old, origins) = output_parts(&output);
    if patch_parts(&mut body, &old, &r.message.content, &origins).is_none() {
        body["output"] = Value::Array(output_items(r, "completed"));
    }
    if let Some(u) = &r.usage {
        body["usage"] = usage_to(u);
    }
    body.to_string().into_bytes()
}

/// An event of the stream: its `type` names it on the `event:` line too.
fn event(kind: &str, mut data: Value, seq: &mut u64) -> SseEvent {
    if let Value::Object(o) = &mut data {
        o.insert("type".to_owned(), json!(kind));
        o.insert("sequence_number".to_owned(), json!(*seq));
    }
    *seq += 1;
    SseEvent::named(kind, data.to_string())
}

/// A complete answer as the stream the API sends: created, in progress, each output item
/// added, its content and arguments as deltas, each item done, then completed.
pub fn render_stream(request: Option<&Map<String, Value>>, r: &LlmResponse) -> Vec<SseEvent> {
    let mut seq = 0;
    let full = answer_object(request, r);
    let mut start = full.clone();
    start["status"] = json!("in_progress");
    start["output"] = json!([]);
    start["usage"] = Value::Null;
    start["incomplete_details"] = Value::Null;
    let mut events = vec![
        event("response.created", json!({"response": start}), &mut seq),
        event("response.in_progress", json!({"response": start}), &mut seq),
    ];
    let items = full["output"].as_array().cloned().unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                added["content"] = json!([]);
                events.push(event(
                    "response.output_item.added",
                    json!({"output_index": i, "item": added}),
                    &mut seq,
                ));
                let parts = item["content"].as_array().cloned().unwrap_or_default();
                for (c, part) in parts.iter().enumerate() {
                    let text = part.get("text").map(json_text).unwrap_or_default();
                    let mut empty = part.clone();
                    empty["text"] = json!("");
                    events.push(event(
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": i, "content_index": c,
                            "part": empty}),
                        &mut seq,
                    ));
                    for piece in super::openai::pieces(&text) {
                        events.push(event(
                            "response.output_text.delta",
                            json!({"item_id": id, "output_index": i, "content_index": c,
                                "delta": piece, "logprobs": []}),
                            &mut seq,
                        ));
                    }
                    events.push(event(
                        "response.output_text.done",
                        json!({"item_id": id, "output_index": i, "content_index": c,
                            "text": text, "logprobs": []}),
                        &mut seq,
                    ));
                    events.push(event(
                        "response.content_part.done",
                        json!({"item_id": id, "output_index": i, "content_index": c,
                            "part": part}),
                        &mut seq,
                    ));
                }
            }
            Some("function_call") => {
                added["arguments"] = json!("");
                events.push(event(
                    "response.output_item.added",
                    json!({"output_index": i, "item": added}),
                    &mut seq,
                ));
                let args = item.get("arguments").cloned().unwrap_or(json!(""));
                events.push(event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": i, "delta": args}),
                    &mut seq,
                ));
                events.push(event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": i, "arguments": args,
                        "name": item.get("name").cloned().unwrap_or(Value::Null)}),
                    &mut seq,
                ));
            }
            _ => {
                events.push(event(
                    "response.output_item.added",
                    json!({"output_index": i, "item": item}),
                    &mut seq,
                ));
            }
        }
        events.push(event(
            "response.output_item.done",
            json!({"output_index": i, "item": item}),
            &mut seq,
        ));
    }
    let last = if full["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    events.push(event(last, json!({"response": full}), &mut seq));
    events
}

pub(super) fn event_info(ev: &SseEvent) -> EventInfo {
    let mut info = EventInfo::default();
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        return info;
    };
    match v.get("type").and_then(Value::as_str) {
        Some("response.output_text.delta") => {
            info.text = Some(v.get("delta").map(json_text).unwrap_or_default());
        }
        Some("response.output_text.done") => info.block_stop = true,
        Some("response.completed" | "response.incomplete") => {
            let response = v.get("response").cloned().unwrap_or(Value::Null);
            info.usage = response.get("usage").map(usage_part);
            let (parts, _) = output_parts(
                response
                    .get("output")
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice),
            );
            info.finish = Some(finish_of(&response, &parts));
            info.done = true;
        }
        Some("response.failed") => {
            info.error = Some(
                v.pointer("/response/error/message")
                    .map(json_text)
                    .unwrap_or_else(|| "the response failed".to_owned()),
            );
            info.usage = v.pointer("/response/usage").map(usage_part);
            info.done = true;
        }
        Some("error") => {
            info.error = Some(
                v.get("message")
                    .or_else(|| v.pointer("/error/message"))
                    .map(json_text)
                    .unwrap_or_else(|| v.to_string()),
            );
        }
        _ => {}
    }
    info
}

/// Where a text event belongs: `(output_index, content_index)`.
pub(crate) fn text_slot(ev: &SseEvent) -> Option<(u64, u64)> {
    let v: Value = serde_json::from_str(&ev.data).ok()?;
    Some((
        v.get("output_index")?.as_u64()?,
        v.get("content_index")?.as_u64()?,
    ))
}

pub(super) fn with_text(template: &SseEvent, text: &str) -> SseEvent {
    let mut v: Value = serde_json::from_str(&template.data).unwrap_or_else(|_| json!({}));
    v["delta"] = json!(text);
    SseEvent::named("response.output_text.delta", v.to_string())
}

/// `ev` with every complete text it repeats (a text part's `done`, a finished item, the final
/// answer) replaced by what the agent received for that part, and the sequence number `seq`.
/// Parts with nothing in `released` keep their text.
pub(crate) fn rewrite_event(
    ev: &SseEvent,
    released: &std::collections::BTreeMap<(u64, u64), String>,
    seq: u64,
) -> SseEvent {
    let Ok(mut v) = serde_json::from_str::<Value>(&ev.data) else {
        return ev.clone();
    };
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let slot = |v: &Value| -> Option<(u64, u64)> {
        Some((
            v.get("output_index")?.as_u64()?,
            v.get("content_index")?.as_u64()?,
        ))
    };
    let set_item = |item: &mut Value, i: u64| {
        if let Some(parts) = item.get_mut("content").and_then(Value::as_array_mut) {
            for (c, part) in parts.iter_mut().enumerate() {
                if part.get("type").and_then(Value::as_str) == Some("output_text")
                    && let Some(t) = released.get(&(i, c as u64))
                {
                    part["text"] = json!(t);
                }
            }
        }
    };
    match kind.as_str() {
        "response.output_text.done" => {
            if let Some(t) = slot(&v).and_then(|s| released.get(&s)) {
                v["text"] = json!(t);
            }
        }
        "response.content_part.done" => {
            if let Some(t) = slot(&v).and_then(|s| released.get(&s))
                && let Some(part) = v.get_mut("part")
            {
                part["text"] = json!(t);
            }
        }
        "response.output_item.done" => {
            let i = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
            if let Some(item) = v.get_mut("item") {
                set_item(item, i);
            }
        }
        "response.completed" | "response.incomplete" | "response.failed" => {
            if let Some(items) = v
                .pointer_mut("/response/output")
                .and_then(Value::as_array_mut)
            {
                for (i, item) in items.iter_mut().enumerate() {
                    set_item(item, i as u64);
                }
            }
        }
        _ => {}
    }
    if let Value::Object(o) = &mut v {
        o.insert("sequence_number".to_owned(), json!(seq));
    }
    SseEvent {
        event: ev.event.clone(),
        data: v.to_string(),
    }
}

/// OpenAI responses (`POST …/v1/responses`).
#[derive(Debug, Clone, Copy)]
pub struct Responses;

impl WireFormat for Responses {
    fn parse_request(&self, body: Map<String, Value>) -> Result<ParsedRequest, WireError> {
        parse_request(body)
    }
    fn render_request(&self, parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
        render_request(parsed, request)
    }
    fn parse_response(&self, body: &[u8]) -> Result<LlmResponse, WireError> {
        parse_response(&answer_fields(body)?)
    }
    fn render_response(&self, original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
        render_response(original, r)
    }
    fn render_stream(&self, r: &LlmResponse, _include_usage: bool) -> Vec<SseEvent> {
        render_stream(None, r)
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

/// OpenAI token counting for a Responses request (`POST …/v1/responses/input_tokens`).
#[derive(Debug, Clone, Copy)]
pub struct InputTokens;

impl WireFormat for InputTokens {
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
        serde_json::json!({
            "object": "response.input_tokens",
            "input_tokens": r.usage.map_or(0, |u| u.input_tokens)
        })
        .to_string()
        .into_bytes()
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

    const REQUEST: &str = r#"{"model":"gpt-4o-mini","instructions":"Be brief.",
      "input":[{"role":"user","content":[{"type":"input_text","text":"Mail jane@example.com"},
          {"type":"input_image","image_url":"https://x/y.png","detail":"low"}]},
        {"type":"function_call","id":"fc_1","call_id":"call_1","name":"lookup","arguments":"{\"q\":\"jane@example.com\"}"},
        {"type":"function_call_output","call_id":"call_1","output":"{\"ok\":true}"},
        {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"abc"}],
      "tools":[{"type":"function","name":"lookup","description":"d","parameters":{"type":"object"},"strict":true}],
      "max_output_tokens":50,"stream":true,"store":false,"text":{"format":{"type":"text"}}}"#;

    #[test]
    fn requests_parse_into_the_neutral_form_and_patch_back() {
        let p = Api::Responses.parse_request(REQUEST.as_bytes()).unwrap();
        let r = &p.request;
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[0].joined_text(), "Be brief.");
        assert_eq!(r.messages[1].joined_text(), "Mail jane@example.com");
        assert!(
            matches!(&r.messages[1].content[1], ContentPart::Image { url } if url == "https://x/y.png")
        );
        assert!(matches!(&r.messages[2].content[0], ContentPart::ToolUse(u) if u.id == "call_1"));
        assert!(
            matches!(&r.messages[3].content[0], ContentPart::ToolOutput { tool_use_id, content, .. } if tool_use_id == "call_1" && content == "{\"ok\":true}")
        );
        assert!(matches!(
            &r.messages[4].content[0],
            ContentPart::Other { .. }
        ));
        assert!(p.unknown.is_empty());
        assert_eq!(r.tools[0].name, "lookup");
        assert_eq!(r.max_output_tokens, Some(50));
        let mut changed = r.clone();
        changed.messages[1].content[0] = ContentPart::Text {
            text: "Mail [EMAIL]".to_owned(),
        };
        if let ContentPart::ToolUse(u) = &mut changed.messages[2].content[0] {
            u.arguments = "{\"q\":\"[EMAIL]\"}".to_owned();
        }
        let body: Value =
            serde_json::from_slice(&Api::Responses.render_request(&p, &changed)).unwrap();
        assert_eq!(body["input"][0]["content"][0]["text"], "Mail [EMAIL]");
        assert_eq!(body["input"][0]["content"][1]["detail"], "low");
        assert_eq!(body["input"][1]["arguments"], "{\"q\":\"[EMAIL]\"}");
        assert_eq!(body["input"][1]["id"], "fc_1");
        assert_eq!(body["input"][3]["encrypted_content"], "abc");
        assert_eq!(body["tools"][0]["strict"], true);
        assert_eq!(body["instructions"], "Be brief.");
        assert_eq!(body["store"], false);
    }

    #[test]
    fn unknown_items_are_named() {
        let p = Api::Responses
            .parse_request(br#"{"model":"m","input":[{"type":"computer_call_output","call_id":"c","output":{}}]}"#)
            .unwrap();
        assert_eq!(
            p.unknown,
            vec!["input[0] (computer_call_output)".to_owned()]
        );
    }

    #[test]
    fn answers_round_trip_and_streams_carry_text_usage_and_finish() {
        let mut r = LlmResponse::text("gpt-4o-mini", "one two three", Some(Usage::new(9, 3)));
        r.id = "resp_abc".to_owned();
        let body = Api::Responses.render_response(None, &r);
        let back = Api::Responses.parse_response(&body).unwrap();
        assert_eq!(back.message.joined_text(), "one two three");
        assert_eq!(back.usage, Some(Usage::new(9, 3)));
        let mut changed = back.clone();
        changed.message = Message::text(Role::Assistant, "[redacted]");
        let out: Value =
            serde_json::from_slice(&Api::Responses.render_response(Some(&body), &changed)).unwrap();
        assert_eq!(out["output"][0]["content"][0]["text"], "[redacted]");
        assert_eq!(out["output"][0]["id"], "msg_abc0");

        let wire: Vec<u8> = render_stream(None, &r)
            .iter()
            .flat_map(SseEvent::to_bytes)
            .collect();
        let events = SseParser::default().feed(&wire);
        let infos: Vec<EventInfo> = events
            .iter()
            .map(|e| Api::Responses.event_info(e))
            .collect();
        let text: String = infos.iter().filter_map(|i| i.text.clone()).collect();
        assert_eq!(text, "one two three");
        let last = infos.last().unwrap();
        assert!(last.done);
        assert_eq!(last.finish.as_deref(), Some("stop"));
        assert_eq!(last.usage.unwrap().output_tokens, Some(3));
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| {
                serde_json::from_str::<Value>(&e.data).unwrap()["sequence_number"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
        let mut released = std::collections::BTreeMap::new();
        released.insert((0, 0), "X".to_owned());
        let done = events
            .iter()
            .find(|e| e.event.as_deref() == Some("response.completed"))
            .unwrap();
        let rewritten: Value =
            serde_json::from_str(&rewrite_event(done, &released, 99).data).unwrap();
        assert_eq!(
            rewritten["response"]["output"][0]["content"][0]["text"],
            "X"
        );
        assert_eq!(rewritten["sequence_number"], 99);
    }
}
