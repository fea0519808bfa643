//! Token counts and model prices (`tokens` capability), and cost arithmetic.

use crate::bindings::ironhost::policy::tokens as wit;
use crate::types::{Message, Usage};

pub use wit::ModelPrice;

/// Tokens `text` takes for `model`.
pub fn count_text(model: &str, text: &str) -> u32 {
    wit::count_text(model, text)
}

/// Input tokens of `messages` for `model`, per-message overhead included.
pub fn count_messages(model: &str, messages: &[Message]) -> u32 {
    wit::count_messages(model, messages)
}

/// The price of `model`, if the host knows it.
pub fn price(model: &str) -> Option<ModelPrice> {
    wit::price(model)
}

/// What `usage` cost at `price`, in US dollars. Cached and cache-write input tokens are part
/// of `input_tokens` and are charged at their own rates.
pub fn cost_usd(price: &ModelPrice, usage: &Usage) -> f64 {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let written = usage
        .cache_write_input_tokens
        .min(usage.input_tokens - cached);
    let plain = usage.input_tokens - cached - written;
    (f64::from(plain) * price.input_per_mtok
        + f64::from(cached) * price.cached_input_per_mtok
        + f64::from(written) * price.cache_write_per_mtok
        + f64::from(usage.output_tokens) * price.output_per_mtok)
        / 1_000_000.0
}

/// The most a request can cost: its input tokens plus `max_output_tokens` of output, all at
/// the full input and output prices. What a budget reserves before the call.
pub fn worst_case_usd(price: &ModelPrice, input_tokens: u32, max_output_tokens: u32) -> f64 {
    (f64::from(input_tokens) * price.input_per_mtok
        + f64::from(max_output_tokens) * price.output_per_mtok)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: ModelPrice = ModelPrice {
        input_per_mtok: 3.0,
        output_per_mtok: 15.0,
        cached_input_per_mtok: 0.3,
        cache_write_per_mtok: 3.75,
    };

    #[test]
    fn cost_charges_each_kind_of_token_at_its_rate() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cached_input_tokens: 400_000,
            cache_write_input_tokens: 100_000,
        };
        // 500k plain × $3 + 400k cached × $0.30 + 100k written × $3.75 + 100k out × $15
        let expected = 1.5 + 0.12 + 0.375 + 1.5;
        assert!((cost_usd(&PRICE, &usage) - expected).abs() < 1e-9);
    }

    #[test]
    fn inconsistent_usage_never_goes_negative() {
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 0,
            cached_input_tokens: 50,
            cache_write_input_tokens: 50,
        };
        assert!((cost_usd(&PRICE, &usage) - 10.0 * 0.3 / 1e6).abs() < 1e-12);
    }

    #[test]
    fn worst_case_uses_full_prices() {
        assert!((worst_case_usd(&PRICE, 1000, 500) - (0.003 + 0.0075)).abs() < 1e-12);
    }
}
