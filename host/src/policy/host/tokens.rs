//! `ironhost:policy/tokens`, and the approximate meter used until a real tokenizer and
//! pricing table are configured.

use std::sync::Arc;

use super::{PolicyCtx, Price, TokenMeter};
use crate::llm::pricing::PricingTable;
use crate::policy::bindings::wit;
use crate::policy::model::{ContentPart, Message};

impl wit::tokens::Host for PolicyCtx {
    fn count_text(&mut self, model: String, text: String) -> u32 {
        self.services.tokens.count_text(&model, &text)
    }

    fn count_messages(&mut self, model: String, messages: Vec<wit::types::Message>) -> u32 {
        let messages: Vec<Message> = messages.into_iter().map(Into::into).collect();
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

/// Counts about four bytes of text per token (it over-counts rather than under-counts English
/// text, the safe side for budget reservations) and prices models from a [`PricingTable`].
#[derive(Debug, Clone)]
pub struct ApproxTokenMeter {
    pub prices: Arc<PricingTable>,
}

impl Default for ApproxTokenMeter {
    fn default() -> Self {
        ApproxTokenMeter {
            prices: Arc::new(PricingTable::embedded()),
        }
    }
}

/// Tokens every message costs beyond its text (role and separators).
const PER_MESSAGE_OVERHEAD: u32 = 4;

impl TokenMeter for ApproxTokenMeter {
    fn count_text(&self, _model: &str, text: &str) -> u32 {
        u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
    }

    fn count_messages(&self, model: &str, messages: &[Message]) -> u32 {
        messages.iter().fold(3u32, |total, m| {
            let text: u32 = m
                .content
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => self.count_text(model, text),
                    ContentPart::ToolUse(u) => self.count_text(model, &u.arguments),
                    ContentPart::ToolOutput { content, .. } => self.count_text(model, content),
                    ContentPart::Image { .. } | ContentPart::Other { .. } => 0,
                })
                .fold(0u32, u32::saturating_add);
            total
                .saturating_add(text)
                .saturating_add(PER_MESSAGE_OVERHEAD)
        })
    }

    fn price(&self, model: &str) -> Option<Price> {
        self.prices.price(model)
    }
}
