//! The agent runtime: the call path every LLM and tool call takes ([`gateway`]), the event bus
//! ([`events`]), live figures ([`metrics`]), and the embedded Python interpreter that runs the
//! agent ([`python`]) under a lifecycle ([`runtime`]).

pub mod egress;
pub mod ipc;
pub mod python;
pub mod remote;
pub mod runtime;
pub mod sandbox;
pub mod worker;
