//! Where the agent of this process is in its life, and the stop signals it got: process-wide,
//! because a signal is. The supervisor (`runtime`) sets the state; the worker's answers to
//! `ironhost.current()` read it ([`status_json`]); waits in native code look at
//! [`shutting_down`] to end when a stop signal came.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use parking_lot::Mutex;

use crate::events::AgentState;
use crate::gateway::Gateway;

static STATUS: Mutex<(AgentState, u32)> = Mutex::new((AgentState::Starting, 0));
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Record where the agent is in its life, for `ironhost.current()`.
pub fn set_status(state: AgentState, run: u32) {
    *STATUS.lock() = (state, run);
}

/// The agent's state and run number now.
pub fn status() -> (AgentState, u32) {
    *STATUS.lock()
}

/// The first stop signal received, if any.
pub fn signal_received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Record a stop signal: waits in other threads end, and the exit code says which signal.
/// True for the first one.
pub fn note_signal_number(signum: i32) -> bool {
    let first = SIGNAL
        .compare_exchange(0, signum, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    SHUTDOWN.store(true, Ordering::SeqCst);
    first
}

/// Whether a stop signal came: waits outside Python's main thread end.
pub fn shutting_down() -> bool {
    SHUTDOWN.load(Ordering::SeqCst)
}

/// What `ironhost.current()` reads: the agent, its state and its live figures, as JSON.
pub fn status_json(gw: &Gateway, state: AgentState, run: u32) -> String {
    let agent = gw.agent();
    serde_json::json!({
        "agent_id": agent.agent_id,
        "name": agent.name,
        "environment": agent.environment,
        "state": state.as_str(),
        "run": run,
        "budget_usd": gw.budget_usd(),
        "metrics": gw.metrics().snapshot(),
    })
    .to_string()
}
