//! Writing to the host's log (`log` capability). Lines are tagged with the policy and agent.

use crate::bindings::ironhost::policy::log::{Level, write};

/// Step-by-step detail.
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Detail for debugging.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Routine information.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Something unexpected that the policy handled.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Something the policy could not handle.
pub fn error(message: &str) {
    write(Level::Error, message);
}
