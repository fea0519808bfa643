//! ironhost: runs AI agents under sandboxed WebAssembly policies.
//!
//! The [`policy`] module is the policy engine: it loads policy components from bundles, admits
//! them, and runs hook chains under deadlines and memory caps. The [`cli`] module is the
//! `ironhost` command line.

pub mod agent;
pub mod cli;
pub mod config;
pub mod llm;
pub mod policy;
