//! LLM providers, token counting and pricing. Today: the pricing table behind the `tokens`
//! capability; the provider adapters and the simulator come with the agent runtime.

pub mod pricing;
pub mod tokens;
