//! `ironhost:policy/tokens`: forwards to the host's [`TokenMeter`](super::TokenMeter) (see `crate::llm::tokens`).

use super::PolicyCtx;
use crate::policy::bindings::wit;
use crate::policy::model::Message;

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
