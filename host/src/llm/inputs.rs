//! APIs that read text and answer without generating any: OpenAI embeddings
//! (`POST /v1/embeddings`) and moderations (`POST /v1/moderations`), Anthropic token counting
//! (`POST /v1/messages/count_tokens`, parsed as a messages request).
//!
//! Their input is governed like a prompt: each text is a part of one user message, so the
//! chain's `on-llm-request` reads (and may redact) it; the answer reaches the chain as an empty
//! message with the provider's usage, so the call is priced and settled like any other.

use serde_json::{Map, Value, json};

use super::wire::{
    ParsedRequest, Parts, Shape, WireError, extra_map, neutral_request, patch, str_field, u32_field,
};
use super::wire::{WireFormat, answer_fields};
use crate::model::{ContentPart, LlmRequest, LlmResponse, Message, ProviderError, Role, Usage};

const SHAPE: Shape = Shape {
    provider: "openai",
    modelled: &["model", "input"],
    max_keys: &[],
    tool: |_| None,
};

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

/// The texts of an `input` (a string, a list of strings, token lists, or moderation parts) as
/// parts of one user message.
fn input_parts(input: Option<&Value>, out: &mut Parts) -> Result<(), WireError> {
    match input {
        Some(Value::String(s)) => out.text(s, "/input".to_owned()),
        Some(Value::Array(ids)) if !ids.is_empty() && ids.iter().all(Value::is_number) => {
            token_part(input, "/input".to_owned(), out);
        }
        Some(Value::Array(items)) => {
            for (k, item) in items.iter().enumerate() {
                let here = format!("/input/{k}");
                match item {
                    Value::String(s) => out.text(s, here),
                    // Moderation parts: `{"type": "text", "text"}`, `{"type": "image_url", …}`.
                    Value::Object(o) if str_field(o, "type") == Some("text") => {
                        let text = str_field(o, "text").unwrap_or_default();
                        out.text(text, format!("{here}/text"));
                    }
                    Value::Object(o)
                        if o.get("image_url")
                            .and_then(|i| i.get("url"))
                            .is_some_and(Value::is_string) =>
                    {
                        out.push(
                            ContentPart::Image {
                                url: o["image_url"]["url"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                            },
                            super::wire::Origin::Str(Some(format!("{here}/image_url/url"))),
                        );
                    }
                    Value::Array(_) => token_part(Some(item), here, out),
                    other => out.other(other, here),
                }
            }
        }
        None | Some(Value::Null) => return Err(err("`input` is missing")),
        Some(_) => return Err(err("`input` must be a string or a list")),
    }
    Ok(())
}

/// A list of token ids: the text they spell, so the chain reads it (a changed text is sent as
/// text, which the API takes as well); ids the vocabulary does not know pass as they are.
fn token_part(ids: Option<&Value>, at: String, out: &mut Parts) {
    let Some(Value::Array(list)) = ids else {
        return;
    };
    let numbers: Option<Vec<u32>> = list
        .iter()
        .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect();
    match numbers.and_then(|n| crate::model::tokens::decode_cl100k(&n)) {
        Some(text) => out.text(&text, at),
        None => out.other(&Value::Array(list.clone()), at),
    }
}

/// Parse an embeddings or moderations request.
pub(super) fn parse_request(
    original: Map<String, Value>,
    needs_model: bool,
) -> Result<ParsedRequest, WireError> {
    let model = match str_field(&original, "model") {
        Some(m) => m.to_owned(),
        None if !needs_model => "omni-moderation-latest".to_owned(),
        None => return Err(err("`model` is missing or not a string")),
    };
    let mut parts = Parts::default();
    input_parts(original.get("input"), &mut parts)?;
    let mut request = neutral_request(
        &SHAPE,
        &original,
        model,
        vec![Message {
            role: Role::User,
            content: parts.parts,
        }],
    );
    // Nothing is generated: only the input is billed.
    request.max_output_tokens = Some(0);
    let mut parsed = ParsedRequest::new(request, original);
    parsed.origins = vec![parts.origins];
    Ok(parsed)
}

pub(super) fn render_request(parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
    let mut out = extra_map(request);
    if parsed.original.contains_key("model") || request.model != parsed.request.model {
        out.insert("model".to_owned(), json!(request.model));
    }
    let input = match patch(parsed, request) {
        Some(mut body) => body.remove("input").unwrap_or(Value::Null),
        None => Value::Array(
            request
                .messages
                .iter()
                .flat_map(|m| &m.content)
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(json!(text)),
                    ContentPart::Other { json } => Some(super::wire::json_value(json)),
                    _ => None,
                })
                .collect(),
        ),
    };
    out.insert("input".to_owned(), input);
    Value::Object(out).to_string().into_bytes()
}

/// An answer that generates nothing: no message, the usage it reports (`prompt_tokens`,
/// Anthropic's `input_tokens` for a count is not billed: usage 0).
pub(super) fn parse_response(v: &Value, billed_input: Option<&str>) -> LlmResponse {
    let input = billed_input.and_then(|p| u32_field(v, p)).unwrap_or(0);
    LlmResponse {
        id: v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        message: Message {
            role: Role::Assistant,
            content: Vec::new(),
        },
        finish_reason: "stop".to_owned(),
        usage: Some(Usage::new(input, 0)),
    }
}

/// The category names of OpenAI's moderation models.
pub(crate) const MODERATION_CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// A moderation answer with nothing flagged, for each input (the simulator's, and a policy's
/// answer), in OpenAI's shape.
pub(crate) fn moderation_body(id: &str, model: &str, inputs: &[ContentPart]) -> Value {
    let results: Vec<Value> = inputs
        .iter()
        .map(|p| {
            let kind = if matches!(p, ContentPart::Image { .. }) {
                "image"
            } else {
                "text"
            };
            let mut categories = Map::new();
            let mut scores = Map::new();
            let mut applied = Map::new();
            for (i, c) in MODERATION_CATEGORIES.iter().enumerate() {
                categories.insert((*c).to_owned(), json!(false));
                scores.insert((*c).to_owned(), json!(1e-6 * (i as f64 + 1.0)));
                applied.insert((*c).to_owned(), json!([kind]));
            }
            json!({"flagged": false, "categories": categories, "category_scores": scores,
                "category_applied_input_types": applied})
        })
        .collect();
    json!({"id": id, "model": model, "results": results})
}

/// OpenAI embeddings (`POST …/v1/embeddings`).
#[derive(Debug, Clone, Copy)]
pub struct Embeddings;

impl WireFormat for Embeddings {
    fn parse_request(&self, body: Map<String, Value>) -> Result<ParsedRequest, WireError> {
        parse_request(body, true)
    }
    fn render_request(&self, parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
        render_request(parsed, request)
    }
    fn parse_response(&self, body: &[u8]) -> Result<LlmResponse, WireError> {
        Ok(parse_response(
            &answer_fields(body)?,
            Some("/usage/prompt_tokens"),
        ))
    }
    fn render_response(&self, _original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
        let tokens = r.usage.map_or(0, |u| u.input_tokens);
        serde_json::json!({"object": "list", "data": [], "model": r.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        .to_string()
        .into_bytes()
    }
    fn error_body(&self, e: &ProviderError) -> Vec<u8> {
        super::openai::error_body(e)
    }
}

/// OpenAI moderations (`POST …/v1/moderations`).
#[derive(Debug, Clone, Copy)]
pub struct Moderations;

impl WireFormat for Moderations {
    fn parse_request(&self, body: Map<String, Value>) -> Result<ParsedRequest, WireError> {
        parse_request(body, false)
    }
    fn render_request(&self, parsed: &ParsedRequest, request: &LlmRequest) -> Vec<u8> {
        render_request(parsed, request)
    }
    fn parse_response(&self, body: &[u8]) -> Result<LlmResponse, WireError> {
        Ok(parse_response(&answer_fields(body)?, None))
    }
    fn render_response(&self, _original: Option<Map<String, Value>>, r: &LlmResponse) -> Vec<u8> {
        moderation_body(&r.id, &r.model, &[])
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

    #[test]
    fn embedding_inputs_are_texts_of_one_user_message_and_patch_back() {
        let p = Api::Embeddings
            .parse_request(
                br#"{"model":"text-embedding-3-small","input":["a jane@example.com","b",[1,2]],"encoding_format":"base64"}"#,
            )
            .unwrap();
        let m = &p.request.messages[0];
        assert_eq!(m.role, Role::User);
        assert_eq!(m.content.len(), 3);
        let mut changed = p.request.clone();
        changed.messages[0].content[0] = ContentPart::Text {
            text: "a [EMAIL]".to_owned(),
        };
        let body: Value =
            serde_json::from_slice(&Api::Embeddings.render_request(&p, &changed)).unwrap();
        assert_eq!(
            body["input"],
            json!(["a [EMAIL]", "b", [1, 2]]),
            "unchanged ids stay ids"
        );
        assert_eq!(body["encoding_format"], "base64");
        assert!(
            Api::Embeddings
                .parse_request(br#"{"model":"m"}"#)
                .unwrap_err()
                .0
                .contains("`input` is missing")
        );
    }

    #[test]
    fn token_ids_are_read_as_the_text_they_spell() {
        // cl100k_base: "hello world".
        let p = Api::Embeddings
            .parse_request(br#"{"model":"text-embedding-3-small","input":[[15339,1917]]}"#)
            .unwrap();
        assert!(
            matches!(&p.request.messages[0].content[0], ContentPart::Text { text } if text == "hello world")
        );
        let mut changed = p.request.clone();
        changed.messages[0].content[0] = ContentPart::Text {
            text: "hello [X]".to_owned(),
        };
        let body: Value =
            serde_json::from_slice(&Api::Embeddings.render_request(&p, &changed)).unwrap();
        assert_eq!(body["input"], json!(["hello [X]"]));
    }

    #[test]
    fn moderation_parts_and_default_model() {
        let p = Api::Moderations
            .parse_request(br#"{"input":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"https://x"}}]}"#)
            .unwrap();
        assert_eq!(p.request.model, "omni-moderation-latest");
        assert!(matches!(
            &p.request.messages[0].content[1],
            ContentPart::Image { .. }
        ));
        let body: Value =
            serde_json::from_slice(&Api::Moderations.render_request(&p, &p.request)).unwrap();
        assert!(
            body.get("model").is_none(),
            "the model was not sent and is not added"
        );
    }
}
