//! ironhost: runs AI agents under sandboxed WebAssembly policies.
//!
//! - [`policy`]: the policy engine — loads components from bundles, admits them, runs hook
//!   chains under deadlines and memory caps.
//! - [`llm`]: provider wire formats, the simulator, HTTPS adapters, tokens and prices.
//! - [`agent`]: the embedded CPython agent, the gateway every call goes through, the event bus.
//! - [`store`]: the SQLite store (sqlx): agents, calls, events, audit, policy state.
//! - [`secrets`]: the encrypted secret store and the installation's keys.
//! - [`auth`]: roles, passwords, API tokens, session JWTs.
//! - [`api`]: the control plane (REST + WebSocket, axum).
//! - [`alerts`]: alert webhooks (events POSTed to an operator's endpoint).
//! - [`cli`]: the `ironhost` command line.

pub mod agent;
pub mod alerts;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod core;
pub mod crypto;
pub mod events;
pub mod gateway;
pub mod llm;
pub mod logging;
pub mod model;
pub mod native;
pub mod policy;
pub mod secrets;
pub mod store;
