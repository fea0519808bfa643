//! Token counting behind the `tokens` capability: tiktoken (the real BPE vocabularies, embedded)
//! for OpenAI models; for Anthropic models, which have no public tokenizer, an approximation
//! of 3.5 characters per token; 4 bytes per token for anything else.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

use super::pricing::PricingTable;
use super::{ContentPart, Message, readable_json_text};

/// Counts tokens and knows model prices: the `tokens` capability.
pub trait TokenMeter: Send + Sync {
    /// Tokens `text` takes for `model`.
    fn count_text(&self, model: &str, text: &str) -> u32;
    /// Input tokens of `messages` for `model`, including per-message overhead.
    fn count_messages(&self, model: &str, messages: &[Message]) -> u32;
    /// Prices of `model` in USD per million tokens, if known.
    fn price(&self, model: &str) -> Option<Price>;
    /// The models with a price, by name.
    fn models(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Prices of one model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: f64,
    pub cache_write_per_mtok: f64,
}

impl Price {
    /// What `usage` costs in USD: cache reads and writes at their own rates, the rest of the
    /// input at the input rate.
    pub fn usd(&self, usage: &super::Usage) -> f64 {
        let cached = f64::from(usage.cached_input_tokens);
        let written = f64::from(usage.cache_write_input_tokens);
        let plain = (f64::from(usage.input_tokens) - cached - written).max(0.0);
        (plain * self.input_per_mtok
            + cached * self.cached_input_per_mtok
            + written * self.cache_write_per_mtok
            + f64::from(usage.output_tokens) * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// OpenAI's chat format adds this many tokens per message, and this many to prime the reply.
const OPENAI_PER_MESSAGE: u32 = 3;
const OPENAI_REPLY_PRIMING: u32 = 3;
/// Characters per token for Anthropic models (an approximation; there is no public tokenizer).
const ANTHROPIC_CHARS_PER_TOKEN: f64 = 3.5;

/// Counts tokens per model family and prices models from a [`PricingTable`].
#[derive(Clone)]
pub struct ModelTokenMeter {
    prices: Arc<PricingTable>,
    /// Counts of recent long texts: one call counts its prompt several times (the budget's
    /// estimate, the simulator's usage), and BPE is the costly part of a call's overhead.
    recent: Arc<Mutex<Vec<(u64, u32)>>>,
}

/// Slots of the recent-count cache (direct-mapped by hash).
const RECENT_SLOTS: usize = 256;
/// Shorter texts are counted directly: hashing them costs about as much.
const RECENT_MIN_LEN: usize = 256;

impl std::fmt::Debug for ModelTokenMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTokenMeter").finish_non_exhaustive()
    }
}

enum Family {
    OpenAi(&'static CoreBPE),
    Anthropic,
    Other,
}

fn bpe(tokenizer: Tokenizer) -> Option<&'static CoreBPE> {
    tiktoken_rs::bpe_for_tokenizer(tokenizer).ok()
}

fn family(model: &str) -> Family {
    if model.starts_with("claude") {
        return Family::Anthropic;
    }
    match get_tokenizer(model).and_then(bpe) {
        Some(b) => Family::OpenAi(b),
        None => Family::Other,
    }
}

/// Longest piece of text tiktoken is given at once. Its pre-tokenizing regex backtracks, and a
/// long enough run of whitespace overflows the regex engine's stack (a panic, not an error).
const BPE_PIECE: usize = 4096;

/// Tokens of `text` by `bpe`, counted in pieces of at most [`BPE_PIECE`] bytes. Pieces are cut
/// before a space that follows a non-space (where tiktoken's pre-tokenizer cuts anyway, so the
/// count is the same), or, in a text with no such place, at a character boundary.
fn bpe_count(bpe: &CoreBPE, mut text: &str) -> usize {
    let mut n = 0;
    while text.len() > BPE_PIECE {
        let window = &text.as_bytes()[..=BPE_PIECE];
        let cut = (1..=BPE_PIECE)
            .rev()
            .find(|&i| window[i] == b' ' && !window[i - 1].is_ascii_whitespace())
            .or_else(|| (1..=BPE_PIECE).rev().find(|&i| text.is_char_boundary(i)))
            .unwrap_or(text.len());
        let (piece, rest) = text.split_at(cut);
        n += bpe.encode_ordinary(piece).len();
        text = rest;
    }
    n + bpe.encode_ordinary(text).len()
}

/// The text of OpenAI token ids (`cl100k_base`, the vocabulary of the embedding models), for
/// inputs a client sends as ids (LangChain's `OpenAIEmbeddings` does); `None` for ids outside
/// the vocabulary.
pub fn decode_cl100k(ids: &[u32]) -> Option<String> {
    bpe(Tokenizer::Cl100kBase)?.decode(ids).ok()
}

impl ModelTokenMeter {
    /// A meter over `prices`. Loads the tiktoken vocabularies now (a few hundred ms once per
    /// process), so no policy call ever pays for it under its deadline.
    pub fn new(prices: Arc<PricingTable>) -> ModelTokenMeter {
        for t in [Tokenizer::O200kBase, Tokenizer::Cl100kBase] {
            let _ = bpe(t);
        }
        ModelTokenMeter {
            prices,
            recent: Arc::new(Mutex::new(vec![(0, 0); RECENT_SLOTS])),
        }
    }

    /// A meter over the embedded pricing table.
    pub fn embedded() -> ModelTokenMeter {
        ModelTokenMeter::new(Arc::new(PricingTable::embedded()))
    }

    fn text_tokens(&self, family: &Family, text: &str) -> u32 {
        let n = match family {
            Family::OpenAi(bpe) if text.len() >= RECENT_MIN_LEN => {
                let mut h = std::hash::DefaultHasher::new();
                (std::ptr::from_ref::<CoreBPE>(bpe) as usize).hash(&mut h);
                text.hash(&mut h);
                // 0 marks an empty slot.
                let key = h.finish() | 1;
                let slot = (key as usize >> 1) % RECENT_SLOTS;
                if let Some(&(k, n)) = self.recent.lock().get(slot)
                    && k == key
                {
                    return n;
                }
                let n = u32::try_from(bpe_count(bpe, text)).unwrap_or(u32::MAX);
                if let Some(s) = self.recent.lock().get_mut(slot) {
                    *s = (key, n);
                }
                return n;
            }
            Family::OpenAi(bpe) => bpe_count(bpe, text),
            Family::Anthropic => {
                (text.chars().count() as f64 / ANTHROPIC_CHARS_PER_TOKEN).ceil() as usize
            }
            Family::Other => text.len().div_ceil(4),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

impl TokenMeter for ModelTokenMeter {
    fn count_text(&self, model: &str, text: &str) -> u32 {
        self.text_tokens(&family(model), text)
    }

    fn count_messages(&self, model: &str, messages: &[Message]) -> u32 {
        let family = family(model);
        let (per_message, priming) = match family {
            Family::OpenAi(_) => (OPENAI_PER_MESSAGE, OPENAI_REPLY_PRIMING),
            Family::Anthropic | Family::Other => (4, 3),
        };
        messages.iter().fold(priming, |total, m| {
            let text: u32 = m
                .content
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => self.text_tokens(&family, text),
                    ContentPart::ToolUse(u) => self.text_tokens(&family, &u.arguments),
                    ContentPart::ToolOutput { content, .. } => self.text_tokens(&family, content),
                    ContentPart::Other { json } => {
                        self.text_tokens(&family, &readable_json_text(json))
                    }
                    ContentPart::Image { .. } => 0,
                })
                .fold(0u32, u32::saturating_add);
            total.saturating_add(text).saturating_add(per_message)
        })
    }

    fn price(&self, model: &str) -> Option<Price> {
        self.prices.price(model)
    }

    fn models(&self) -> Vec<String> {
        self.prices.models().map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    #[test]
    fn openai_models_use_their_real_vocabulary() {
        let m = ModelTokenMeter::embedded();
        // "hello world" is two tokens in both cl100k_base and o200k_base.
        assert_eq!(m.count_text("gpt-4o-mini", "hello world"), 2);
        assert_eq!(m.count_text("gpt-4", "hello world"), 2);
        // o200k_base encodes this sentence in fewer tokens than 4-bytes-per-token would guess.
        let sentence = "The quick brown fox jumps over the lazy dog.";
        assert_eq!(m.count_text("gpt-4o", sentence), 10);
    }

    #[test]
    fn long_texts_are_counted_in_pieces_with_the_same_result() {
        let m = ModelTokenMeter::embedded();
        let bpe = bpe(Tokenizer::O200kBase).expect("o200k");
        let text =
            "Dana Ruiz (CTO, 12 years) said: we'll buy 1,200 seats\n\tif  the price is right. "
                .repeat(400);
        assert!(text.len() > 4 * BPE_PIECE);
        assert_eq!(bpe_count(bpe, &text), bpe.encode_ordinary(&text).len());
        assert_eq!(
            m.count_text("gpt-4o", &text) as usize,
            bpe.encode_ordinary(&text).len()
        );
        // Multi-byte characters with no spaces are cut at a character boundary.
        let dense = "日本語のテキスト".repeat(2000);
        assert!(bpe_count(bpe, &dense) > 0);
    }

    #[test]
    fn a_megabyte_of_whitespace_is_counted_without_a_panic() {
        let m = ModelTokenMeter::embedded();
        for text in [
            " ".repeat(1 << 20),
            "\n".repeat(1 << 20),
            " \t".repeat(1 << 19),
        ] {
            let n = m.count_text("gpt-4o-mini", &text);
            assert!(n > 0 && n as usize <= text.len(), "{n}");
            assert!(m.count_text("gpt-4", &text) > 0);
        }
    }

    #[test]
    fn chat_messages_add_the_documented_overhead() {
        let m = ModelTokenMeter::embedded();
        let messages = [
            Message::text(Role::System, "hello world"),
            Message::text(Role::User, "hello world"),
        ];
        // 2 + 2 text tokens, 3 per message, 3 to prime the reply.
        assert_eq!(
            m.count_messages("gpt-4o-mini", &messages),
            2 + 2 + 3 + 3 + 3
        );
    }

    #[test]
    fn anthropic_and_unknown_models_are_approximated() {
        let m = ModelTokenMeter::embedded();
        assert_eq!(m.count_text("claude-sonnet-4-5", "abcdefg"), 2);
        assert_eq!(m.count_text("my-local-model", "abcdefgh"), 2);
    }
}
