//! LLM providers: which API a request is and its wire format (`api.rs`, one `WireFormat`
//! per API over the shared types of `wire.rs`), where a call goes (`upstream.rs`: the
//! `Upstream` trait the built-in simulator and the HTTPS client implement; `upstreams.rs`: the
//! configured upstreams), the one mapping of provider errors (`errors.rs`).

pub mod anthropic;
pub mod api;
pub mod completions;
pub mod errors;
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
