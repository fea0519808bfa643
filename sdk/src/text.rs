//! Walking the text a policy may want to read or rewrite.

use crate::types::{ContentPart, LlmRequest, Message};

/// Every text part of `message`, mutably (tool outputs included).
pub fn message_texts_mut(message: &mut Message) -> impl Iterator<Item = &mut String> {
    message.content.iter_mut().filter_map(|part| match part {
        ContentPart::Text(text) => Some(text),
        ContentPart::ToolOutput(output) => Some(&mut output.content),
        _ => None,
    })
}

/// Every text part of every message of `request`, mutably.
pub fn request_texts_mut(request: &mut LlmRequest) -> impl Iterator<Item = &mut String> {
    request.messages.iter_mut().flat_map(message_texts_mut)
}

/// Every text part of every message of `request`.
pub fn request_texts(request: &LlmRequest) -> impl Iterator<Item = &str> {
    request
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|part| match part {
            ContentPart::Text(text) => Some(text.as_str()),
            ContentPart::ToolOutput(output) => Some(output.content.as_str()),
            _ => None,
        })
}

/// Keys whose string values are not text a model reads: kinds, ids, signatures, media types
/// and base64 payloads (a rewrite there would corrupt the value, not protect anyone).
#[cfg(feature = "json")]
fn opaque_key(key: &str) -> bool {
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

/// Blocks signed by the provider (Anthropic's thinking): a changed byte and it refuses them.
#[cfg(feature = "json")]
fn signed_block(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    matches!(
        map.get("type").and_then(serde_json::Value::as_str),
        Some("thinking" | "redacted_thinking")
    )
}

/// Call `f` on every string a model reads inside `value`; true if any changed.
#[cfg(feature = "json")]
fn visit_json(value: &mut serde_json::Value, f: &mut dyn FnMut(&mut String) -> bool) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => {
            let mut changed = false;
            for v in items {
                changed |= visit_json(v, f);
            }
            changed
        }
        Value::Object(map) if signed_block(map) => false,
        Value::Object(map) => {
            let mut changed = false;
            for (k, v) in map.iter_mut() {
                if !opaque_key(k) {
                    changed |= visit_json(v, f);
                }
            }
            changed
        }
        _ => false,
    }
}

/// Call `f` on the strings inside a JSON text and write it back if one changed; a text that
/// is not JSON is treated as one string.
#[cfg(feature = "json")]
fn visit_json_text(json: &mut String, f: &mut dyn FnMut(&mut String) -> bool) -> bool {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(mut value) => {
            if !visit_json(&mut value, f) {
                return false;
            }
            *json = value.to_string();
            true
        }
        Err(_) => f(json),
    }
}

/// Call `f` on every text the model reads in `message`: its texts and tool outputs, the
/// string values of tool-use arguments, and the string values of parts the host does not
/// model (`other`, as JSON; kinds, ids, signatures and base64 payloads aside). `f` returns
/// true when it changed the string; the result is true if anything changed.
///
/// Use this rather than [`message_texts_mut`] in a policy that must see everything a model
/// reads (redaction, secrets): a tool call in the history or a block the host does not model
/// carries text too.
#[cfg(feature = "json")]
pub fn visit_message_texts(message: &mut Message, f: &mut dyn FnMut(&mut String) -> bool) -> bool {
    let mut changed = false;
    for part in &mut message.content {
        changed |= match part {
            ContentPart::Text(text) => f(text),
            ContentPart::ToolOutput(output) => f(&mut output.content),
            ContentPart::ToolUse(call) => visit_json_text(&mut call.arguments, f),
            ContentPart::Other(json) => visit_json_text(json, f),
            ContentPart::Image(_) => false,
        };
    }
    changed
}

/// [`visit_message_texts`] over every message of `request`.
#[cfg(feature = "json")]
pub fn visit_request_texts(
    request: &mut LlmRequest,
    f: &mut dyn FnMut(&mut String) -> bool,
) -> bool {
    let mut changed = false;
    for m in &mut request.messages {
        changed |= visit_message_texts(m, f);
    }
    changed
}

#[cfg(all(test, feature = "json"))]
mod tests {
    use super::*;
    use crate::types::{Role, ToolUse};

    fn upper(s: &mut String) -> bool {
        if s.contains("secret") {
            *s = s.replace("secret", "[X]");
            true
        } else {
            false
        }
    }

    #[test]
    fn tool_arguments_and_unmodelled_parts_are_visited_but_not_their_ids_or_payloads() {
        let mut m = Message {
            role: Role::Assistant,
            content: vec![
                ContentPart::ToolUse(ToolUse {
                    id: "secret-id".to_owned(),
                    name: "lookup".to_owned(),
                    arguments: r#"{"q":"my secret","n":1}"#.to_owned(),
                }),
                ContentPart::Other(
                    r#"{"type":"search_result","id":"secret","title":"a secret","source":{"data":"secret"}}"#
                        .to_owned(),
                ),
                ContentPart::Other(r#"{"type":"thinking","thinking":"secret","signature":"s"}"#.to_owned()),
                ContentPart::ToolUse(ToolUse {
                    id: "t".to_owned(),
                    name: "raw".to_owned(),
                    arguments: "not json, a secret".to_owned(),
                }),
            ],
        };
        assert!(visit_message_texts(&mut m, &mut upper));
        let ContentPart::ToolUse(u) = &m.content[0] else {
            panic!()
        };
        let args: serde_json::Value = serde_json::from_str(&u.arguments).unwrap();
        assert_eq!(args, serde_json::json!({"q": "my [X]", "n": 1}));
        assert_eq!(u.id, "secret-id");
        let ContentPart::Other(o) = &m.content[1] else {
            panic!()
        };
        assert!(
            o.contains(r#""title":"a [X]""#)
                && o.contains(r#""id":"secret""#)
                && o.contains(r#""data":"secret""#),
            "{o}"
        );
        let ContentPart::Other(t) = &m.content[2] else {
            panic!()
        };
        assert!(t.contains(r#""thinking":"secret""#));
        let ContentPart::ToolUse(raw) = &m.content[3] else {
            panic!()
        };
        assert_eq!(raw.arguments, "not json, a [X]");
    }
}
