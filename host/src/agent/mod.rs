//! The agent runtime under `ironhost start`: the supervisor that runs an agent's life
//! ([`runtime`]), the worker process the agent's Python runs in, seen from the host
//! ([`worker`]) and from inside ([`remote`]), the messages between them ([`ipc`]), the
//! isolation ([`sandbox`]) and governed egress ([`egress`]) of that process, and the
//! process-wide run status and stop signals ([`status`]). The Python side (the embedded
//! interpreter and `ironhost._native`) is `crate::native`.

pub mod egress;
pub mod ipc;
pub mod remote;
pub mod runtime;
pub mod sandbox;
pub mod status;
pub mod worker;
