//! One process at a time per agent id on a machine. Two processes under one id would each keep
//! their own running spend and the budget would hold for neither, so the host takes an
//! exclusive lock on `<home>/agents/<id>.lock` before it runs an agent and holds it until the
//! host is dropped. The operating system releases the lock when the process ends, however it
//! ends (a crash or `kill -9` leaves no stale lock). The file holds the holder's process id, for
//! the message the next process gets.
//!
//! This covers processes sharing one ironhost home. Processes on other homes or machines may run
//! the same agent id on one store: its budget is then shared through leases in the store
//! (`store::ledger`), and each process shows in the fleet view (`store::fleet`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock on one agent id, held while it lives.
#[derive(Debug)]
pub struct AgentLease {
    _file: File,
}

impl AgentLease {
    /// Take the lock on `id` under `home`, or say who holds it.
    pub fn take(home: &Path, id: &str) -> Result<AgentLease, LeaseError> {
        let dir = home.join("agents");
        let failed = |what: &str, e: std::io::Error| LeaseError::Failed(format!("{what}: {e}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| failed(&format!("cannot create {}", dir.display()), e))?;
        let path = dir.join(format!("{id}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| failed(&format!("cannot open {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LeaseError::Running {
                    id: id.to_owned(),
                    pid: holder.parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(failed(&format!("cannot lock {}", path.display()), e));
            }
        }
        // Ours now: say who holds it (a reader may see it empty for a moment; that is only the
        // message's process id).
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(AgentLease { _file: file })
    }
}

/// Why an agent id could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// Another process runs an agent under this id.
    Running { id: String, pid: Option<u32> },
    /// The lock file could not be made or locked.
    Failed(String),
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Running { id, pid } => {
                write!(f, "agent `{id}` is already running")?;
                if let Some(pid) = pid {
                    write!(f, " (process {pid})")?;
                }
                write!(
                    f,
                    ": two processes under one agent id would each keep their own spend; stop \
                     it first or use another agent id"
                )
            }
            LeaseError::Failed(m) => write!(f, "cannot lock the agent id: {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_id_is_held_by_one_lease_at_a_time() {
        let home = tempfile::tempdir().expect("tempdir");
        let first = AgentLease::take(home.path(), "lg-00000001").expect("free");
        // A second lease, even from the same process, is refused and names the holder.
        let err = AgentLease::take(home.path(), "lg-00000001").expect_err("held");
        assert_eq!(
            err,
            LeaseError::Running {
                id: "lg-00000001".into(),
                pid: Some(std::process::id())
            }
        );
        assert!(
            err.to_string()
                .starts_with("agent `lg-00000001` is already running (process ")
        );
        // Other ids are free.
        let _other = AgentLease::take(home.path(), "lg-00000002").expect("another id");
        drop(first);
        AgentLease::take(home.path(), "lg-00000001").expect("free again once dropped");
    }
}
