//! `ironhost:policy/tokens`: forwards to the host's [`TokenMeter`](crate::model::TokenMeter).

use super::PolicyCtx;
use crate::model::{ContentPart, Message};
use crate::policy::bindings::wit;
use crate::policy::meter;

/// Texts at least this long are counted on the policy's clock from their first byte (see
/// [`meter::anchor_before_costly_work`]); shorter ones cost microseconds.
const COSTLY_BYTES: usize = 16 * 1024;

impl wit::tokens::Host for PolicyCtx {
    fn count_text(&mut self, model: String, text: String) -> u32 {
        if text.len() >= COSTLY_BYTES {
            meter::anchor_before_costly_work();
        }
        self.services.tokens.count_text(&model, &text)
    }

    fn count_messages(&mut self, model: String, messages: Vec<wit::types::Message>) -> u32 {
        let messages: Vec<Message> = messages.into_iter().map(Into::into).collect();
        let bytes: usize = messages
            .iter()
            .flat_map(|m| &m.content)
            .map(|p| match p {
                ContentPart::Text { text } => text.len(),
                ContentPart::ToolUse(u) => u.arguments.len(),
                ContentPart::ToolOutput { content, .. } => content.len(),
                ContentPart::Other { json } => json.len(),
                ContentPart::Image { .. } => 0,
            })
            .sum();
        if bytes >= COSTLY_BYTES {
            meter::anchor_before_costly_work();
        }
        self.services.tokens.count_messages(&model, &messages)
    }

    fn price(&mut self, model: String) -> Option<wit::tokens::ModelPrice> {
        self.services
            .tokens
            .price(&model)
            .map(|p| wit::tokens::ModelPrice {
                input_per_mtok: p.input_per_mtok,
                output_per_mtok: p.output_per_mtok,
                cached_input_per_mtok: p.cached_input_per_mtok,
                cache_write_per_mtok: p.cache_write_per_mtok,
            })
    }
}
