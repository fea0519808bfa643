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
