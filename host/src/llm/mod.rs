//! LLM providers: the wire formats of the OpenAI and Anthropic APIs, the built-in simulator,
//! the HTTPS adapter for the real providers, token counting and pricing.

pub mod anthropic;
pub mod completions;
pub mod http;
pub mod inputs;
pub mod openai;
pub mod responses;
pub mod schema;
pub mod simulator;
pub mod sse;
pub mod upstream;
pub mod upstreams;
pub mod wire;

use serde::Deserialize;

use crate::model::{ProviderError, ProviderErrorKind};

/// Where LLM calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LlmMode {
    /// The real provider when a key is available, else the simulator.
    Auto,
    /// Always the simulator.
    Simulator,
    /// Always the real provider; a call without a key fails.
    Live,
}

/// FNV-1a over `parts` (each ended by a separator): stable across runs and builds, for the
/// simulator's seeded choices and ids that must not change between releases.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for p in parts {
        for b in *p {
            h = (h ^ u64::from(*b)).wrapping_mul(0x1000_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x1000_0000_01b3);
    }
    h
}

/// The class of a failed call with this HTTP status.
pub fn error_kind(status: u16) -> ProviderErrorKind {
    match status {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Authentication,
        408 | 504 => ProviderErrorKind::Timeout,
        400..=499 => ProviderErrorKind::InvalidRequest,
        500..=599 => ProviderErrorKind::ServerError,
        _ => ProviderErrorKind::Other,
    }
}

/// The HTTP status that reports `error` to an agent.
pub fn error_status(error: &ProviderError) -> u16 {
    if let Some(s) = error.status {
        return s;
    }
    match error.kind {
        ProviderErrorKind::RateLimited => 429,
        ProviderErrorKind::ServerError => 500,
        ProviderErrorKind::Timeout => 504,
        ProviderErrorKind::Connection => 502,
        ProviderErrorKind::InvalidRequest => 400,
        ProviderErrorKind::Authentication => 401,
        ProviderErrorKind::Other => 500,
    }
}

/// Whether a failed call may succeed when tried again.
pub fn retryable(error: &ProviderError) -> bool {
    matches!(
        error.kind,
        ProviderErrorKind::RateLimited
            | ProviderErrorKind::ServerError
            | ProviderErrorKind::Timeout
            | ProviderErrorKind::Connection
    )
}

/// The wait a provider asked for: `retry-after-ms` (OpenAI) or `retry-after` in seconds.
pub fn retry_after_ms<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<u64> {
    let mut secs = None;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("retry-after-ms") {
            if let Ok(ms) = v.trim().parse::<f64>() {
                return Some(ms.max(0.0) as u64);
            }
        } else if k.eq_ignore_ascii_case("retry-after")
            && let Ok(s) = v.trim().parse::<f64>()
        {
            secs = Some((s.max(0.0) * 1000.0) as u64);
        }
    }
    secs
}
