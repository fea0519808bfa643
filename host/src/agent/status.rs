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

/// Longest `fallback` or `unit` name `ironhost.unit_done` takes, in characters.
pub const UNIT_NAME_MAX: usize = 64;

/// The event for `ironhost.unit_done(ok, seconds=, fallback=, unit=)`, or what is wrong with
/// its arguments (naming the argument and the reason). Checked here for both ways an agent
/// reports (in-process and over the worker's socket), since a worker is not trusted to have
/// checked.
pub fn unit_done(
    ok: bool,
    seconds: Option<f64>,
    fallback: Option<String>,
    unit: Option<String>,
) -> Result<crate::events::EventKind, String> {
    if let Some(s) = seconds
        && !(s.is_finite() && s >= 0.0)
    {
        return Err(format!(
            "unit_done: seconds must be a finite number >= 0, not {s}"
        ));
    }
    let name = |what: &str, v: Option<String>| -> Result<Option<String>, String> {
        match v {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(format!(
                "unit_done: {what} must be a non-empty name, not {v:?}"
            )),
            Some(v) if v.chars().count() > UNIT_NAME_MAX => Err(format!(
                "unit_done: {what} must be at most {UNIT_NAME_MAX} characters, not {}",
                v.chars().count()
            )),
            Some(v) if v.chars().any(char::is_control) => Err(format!(
                "unit_done: {what} must not contain control characters: {v:?}"
            )),
            Some(v) => Ok(Some(v)),
        }
    };
    Ok(crate::events::EventKind::UnitDone {
        ok,
        seconds,
        fallback: name("fallback", fallback)?,
        unit: name("unit", unit)?,
    })
}

/// Record `ironhost.unit_done(...)` for the agent `gw` runs: checked ([`unit_done`]), counted
/// in its live figures (`ironhost.current()`) and published (the store and the dashboard).
pub fn record_unit(
    gw: &Gateway,
    ok: bool,
    seconds: Option<f64>,
    fallback: Option<String>,
    unit: Option<String>,
) -> Result<(), String> {
    let (served_by_fallback, name) = (fallback.is_some(), unit.clone());
    let kind = unit_done(ok, seconds, fallback, unit)?;
    gw.metrics()
        .unit(ok, seconds, served_by_fallback, name.as_deref());
    gw.bus()
        .publish(&gw.agent().agent_id, crate::model::Severity::Info, kind);
    Ok(())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn unit_done_names_the_bad_argument() {
        let bad = [
            (Some(-1.0), None, None, "seconds"),
            (Some(f64::NAN), None, None, "seconds"),
            (Some(f64::INFINITY), None, None, "seconds"),
            (None, Some(" ".to_owned()), None, "fallback"),
            (None, Some("x".repeat(65)), None, "fallback"),
            (None, None, Some("a\nb".to_owned()), "unit"),
        ];
        for (seconds, fallback, unit, what) in bad {
            let err = unit_done(true, seconds, fallback, unit).expect_err("refused");
            assert!(err.starts_with(&format!("unit_done: {what} ")), "{err}");
        }
        assert!(unit_done(false, Some(0.0), Some("cache".into()), Some("leads".into())).is_ok());
    }
}
