//! ironhost: runs AI agents under sandboxed WebAssembly policies.
//!
//! The modules form layers, each importing only those below it (docs/ARCHITECTURE.md;
//! `tests/architecture.rs` checks it):
//!
//! - entry points: [`cli`] (the `ironhost` command line) and [`native`] (the Python side:
//!   `ironhost._native`, the embedded interpreter, the worker process's entry);
//! - front ends: [`agent`] (the agent runtime under `ironhost start`: supervisor, worker
//!   process, isolation, egress) and [`api`] (the control plane: REST, WebSocket, dashboard),
//!   which never import each other;
//! - [`core`]: a host assembled once, for `start`, `serve` and the SDK;
//! - [`gateway`]: the call path every LLM and tool call takes;
//! - services: [`store`] (SQLite; all SQL is there), [`secrets`], [`auth`], [`config`],
//!   [`alerts`];
//! - foundations: [`policy`] (the policy engine), [`llm`] (wire formats, simulator, HTTPS),
//!   [`events`] (the event bus);
//! - base: [`model`] (the neutral call model, token counts, prices), [`crypto`], [`logging`].

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
