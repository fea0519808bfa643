//! The agents running inside this process (Python SDK agents), by id, with the flag that
//! stops each. A control plane served from this process stops them by flag: the SIGTERM it
//! sends an `ironhost start` agent would end the whole Python program.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

static IN_PROCESS: Mutex<BTreeMap<String, Arc<AtomicBool>>> =
    parking_lot::const_mutex(BTreeMap::new());

/// Register an agent opened in this process; its stop flag is returned. It stays registered
/// until [`remove`].
pub fn register(agent_id: &str) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    IN_PROCESS.lock().insert(agent_id.to_owned(), stop.clone());
    stop
}

/// Forget an agent that closed.
pub fn remove(agent_id: &str) {
    IN_PROCESS.lock().remove(agent_id);
}

/// Stop an agent open in this process; false when no such agent is open.
pub fn stop_in_process(agent_id: &str) -> bool {
    match IN_PROCESS.lock().get(agent_id) {
        Some(stop) => {
            stop.store(true, Ordering::SeqCst);
            true
        }
        None => false,
    }
}

/// Whether SDK agents are open in this process. Each has its own host and secret store, so a
/// change made through one of them reaches the others by SIGUSR1 to this process, as it
/// reaches agents in other processes.
pub fn any_in_process() -> bool {
    !IN_PROCESS.lock().is_empty()
}
