//! Policy state that outlives the process: kept in memory for the hook chain (every operation
//! stays a map lookup), loaded from `policy_state` at start and written behind.
//!
//! A write marks its key dirty (a set insert under a mutex: no channel, no wake-up); the writer
//! task stores whatever each dirty key holds *then*, every [`WRITE_EVERY`], so racing writers
//! can never leave an older value in the database than in memory.
//!
//! The agent's own keys (its spend, its reservations) are also journaled
//! ([`StoredState::attach_journal`]): each change is appended to `<home>/agents/<id>.state` with
//! one `write` before the call that made it answers, so a process killed outright (`kill -9`)
//! between two write-behind rounds loses nothing: the next start under the id replays the
//! journal. A round that reaches the database retires the journal written before it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::Row;
use tokio::sync::{Notify, oneshot};

use super::{Store, StoreError};
use crate::policy::state::{AddError, MemoryState, QuotaExceeded, StateBackend, StateKey};

/// How often dirty keys are written.
pub const WRITE_EVERY: Duration = Duration::from_millis(100);

/// The persistent [`StateBackend`].
#[derive(Debug)]
pub struct StoredState {
    mem: MemoryState,
    dirty: Mutex<BTreeSet<StateKey>>,
    flushes: Mutex<Vec<oneshot::Sender<()>>>,
    wake: Notify,
    journal: Mutex<Option<Journal>>,
}

/// The journal of one agent's keys: `PATH` is appended to; `PATH.old` holds what the write
/// round in progress is storing.
#[derive(Debug)]
struct Journal {
    agent: String,
    path: PathBuf,
    file: File,
}

impl Journal {
    fn retired(&self) -> PathBuf {
        self.path.with_extension("state.old")
    }
}

/// One journal line: the key's value after a change (`null`: removed).
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    policy: String,
    key: String,
    value: Option<String>,
}

impl StoredState {
    /// Load every stored key and start the writer on the current Tokio runtime.
    pub async fn load(store: &Store) -> Result<Arc<StoredState>, StoreError> {
        let mem = MemoryState::default();
        let rows = sqlx::query("SELECT policy, agent, key, value FROM policy_state")
            .fetch_all(store.pool())
            .await?;
        for row in rows {
            let agent: String = row.get(1);
            let key = StateKey {
                policy: row.get(0),
                agent: (!agent.is_empty()).then_some(agent),
                key: row.get(2),
            };
            // Rows were within quota when written; a quota change could refuse some.
            if mem.set(&key, row.get(3)).is_err() {
                tracing::warn!(
                    policy = key.policy.as_str(),
                    "stored policy state over quota; key skipped"
                );
            }
        }
        let state = Arc::new(StoredState {
            mem,
            dirty: Mutex::new(BTreeSet::new()),
            flushes: Mutex::new(Vec::new()),
            wake: Notify::new(),
            journal: Mutex::new(None),
        });
        tokio::spawn(writer(store.clone(), Arc::downgrade(&state)));
        Ok(state)
    }

    /// Wait until every write made so far is in the database.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.flushes.lock().push(tx);
        self.wake.notify_one();
        let _ = rx.await;
    }

    /// Journal the changes to `agent`'s keys in `dir` (`<home>/agents`), first replaying what
    /// an earlier process under the same id journaled and did not get into the database.
    /// Returns how many entries were replayed. The caller holds the agent's lease.
    pub fn attach_journal(&self, dir: &Path, agent: &str) -> std::io::Result<usize> {
        let path = dir.join(format!("{agent}.state"));
        let mut journal = self.journal.lock();
        let mut replayed = 0;
        let retired = path.with_extension("state.old");
        for file in [&retired, &path] {
            let Ok(f) = File::open(file) else { continue };
            for line in std::io::BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                // A line cut short by the kill is the last one: what it held was not answered.
                let Ok(e) = serde_json::from_str::<Entry>(&line) else {
                    continue;
                };
                let key = StateKey {
                    policy: e.policy,
                    agent: Some(agent.to_owned()),
                    key: e.key,
                };
                match e.value {
                    Some(v) => {
                        let _ = self.mem.set(&key, v);
                    }
                    None => self.mem.remove(&key),
                }
                self.dirty(&key);
                replayed += 1;
            }
        }
        // Everything replayed is dirty now and goes to the database with the next round; until
        // then it stays in the retired journal.
        if path.exists() {
            let old = std::fs::read(&path)?;
            let mut r = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&retired)?;
            r.write_all(&old)?;
            std::fs::remove_file(&path)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        *journal = Some(Journal {
            agent: agent.to_owned(),
            path,
            file,
        });
        Ok(replayed)
    }

    /// Apply `op` to memory and, for the journaled agent's keys, append the key's new value;
    /// under the journal's lock, so the journal's order is memory's.
    fn change<T>(&self, key: &StateKey, op: impl FnOnce(&MemoryState) -> T) -> T {
        let mut journal = self.journal.lock();
        let out = op(&self.mem);
        self.dirty(key);
        if let Some(j) = journal.as_mut()
            && key.agent.as_deref() == Some(j.agent.as_str())
        {
            let entry = Entry {
                policy: key.policy.clone(),
                key: key.key.clone(),
                value: self.mem.get(key),
            };
            let mut line = serde_json::to_vec(&entry).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = j.file.write_all(&line) {
                tracing::error!("cannot journal policy state to {}: {e}", j.path.display());
            }
        }
        out
    }

    /// Start a write round: take the dirty keys and, with them, retire the journal written so
    /// far (unless an earlier round's is still retired: it was not stored yet).
    fn take_round(&self) -> BTreeSet<StateKey> {
        let mut journal = self.journal.lock();
        let keys = std::mem::take(&mut *self.dirty.lock());
        if let Some(j) = journal.as_mut()
            && !j.retired().exists()
        {
            let retired = j.retired();
            let fresh = std::fs::rename(&j.path, &retired)
                .and_then(|()| OpenOptions::new().create(true).append(true).open(&j.path));
            match fresh {
                Ok(f) => j.file = f,
                Err(e) => tracing::error!("cannot rotate {}: {e}", j.path.display()),
            }
        }
        keys
    }

    /// A round reached the database: the retired journal is stored.
    fn round_stored(&self) {
        if let Some(j) = self.journal.lock().as_ref() {
            let _ = std::fs::remove_file(j.retired());
        }
    }

    fn dirty(&self, key: &StateKey) {
        let mut dirty = self.dirty.lock();
        if !dirty.contains(key) {
            dirty.insert(key.clone());
        }
    }
}

async fn writer(store: Store, state: std::sync::Weak<StoredState>) {
    loop {
        {
            let Some(s) = state.upgrade() else { return };
            let _ = tokio::time::timeout(WRITE_EVERY, s.wake.notified()).await;
        }
        let Some(s) = state.upgrade() else { return };
        let waiters = std::mem::take(&mut *s.flushes.lock());
        let keys = s.take_round();
        let values: Vec<(StateKey, Option<String>)> = keys
            .into_iter()
            .map(|k| {
                let v = s.mem.get(&k);
                (k, v)
            })
            .collect();
        drop(s);
        if !values.is_empty()
            && let Err(e) = write(&store, &values).await
        {
            tracing::error!(
                "cannot persist policy state ({} keys): {e}; will retry",
                values.len()
            );
            // Dirty again (the next round writes whatever they hold then); flush waiters wait
            // for that round.
            if let Some(s) = state.upgrade() {
                s.dirty.lock().extend(values.into_iter().map(|(k, _)| k));
                s.flushes.lock().extend(waiters);
            }
            tokio::time::sleep(WRITE_EVERY).await;
            continue;
        }
        if let Some(s) = state.upgrade() {
            s.round_stored();
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

async fn write(store: &Store, values: &[(StateKey, Option<String>)]) -> Result<(), sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    for (k, v) in values {
        let agent = k.agent.as_deref().unwrap_or("");
        match v {
            Some(v) => {
                sqlx::query(
                    "INSERT INTO policy_state (policy, agent, key, value) VALUES (?, ?, ?, ?)
                     ON CONFLICT (policy, agent, key) DO UPDATE SET value = excluded.value",
                )
                .bind(&k.policy)
                .bind(agent)
                .bind(&k.key)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM policy_state WHERE policy = ? AND agent = ? AND key = ?")
                    .bind(&k.policy)
                    .bind(agent)
                    .bind(&k.key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await
}

impl StateBackend for StoredState {
    fn get(&self, key: &StateKey) -> Option<String> {
        self.mem.get(key)
    }

    fn set(&self, key: &StateKey, value: String) -> Result<(), QuotaExceeded> {
        self.change(key, |m| m.set(key, value))
    }

    fn remove(&self, key: &StateKey) {
        self.change(key, |m| m.remove(key));
    }

    fn compare_and_swap(
        &self,
        key: &StateKey,
        expected: Option<&str>,
        desired: Option<String>,
    ) -> Result<bool, QuotaExceeded> {
        self.change(key, |m| m.compare_and_swap(key, expected, desired))
    }

    fn add(&self, key: &StateKey, delta: i64, ceiling: Option<i64>) -> Result<i64, AddError> {
        self.change(key, |m| m.add(key, delta, ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        let key = |k: &str| StateKey {
            policy: "budget".into(),
            agent: Some("lg-1".into()),
            key: k.into(),
        };
        rt.block_on(async {
            let store = Store::open(dir.path()).await.expect("open");
            let state = StoredState::load(&store).await.expect("load");
            state.add(&key("spent"), 250, None).expect("add");
            state.add(&key("spent"), 50, None).expect("add");
            state.set(&key("gone"), "x".into()).expect("set");
            state.remove(&key("gone"));
            state.flush().await;
            let again = StoredState::load(&store).await.expect("reload");
            assert_eq!(again.get(&key("spent")).as_deref(), Some("300"));
            assert_eq!(again.get(&key("gone")), None);
        });
    }

    #[test]
    fn the_agents_changes_survive_a_kill_between_write_rounds_through_the_journal() {
        // One thread: the write-behind task runs only where this test awaits, so the "kill" below
        // lands between two rounds for certain.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let key = |agent: &str, k: &str| StateKey {
            policy: "budget".into(),
            agent: Some(agent.into()),
            key: k.into(),
        };
        let first = tempfile::tempdir().expect("tempdir");
        let agents = first.path().join("agents");
        std::fs::create_dir_all(&agents).expect("dir");
        rt.block_on(async {
            let store = Store::open(first.path()).await.expect("open");
            let state = StoredState::load(&store).await.expect("load");
            assert_eq!(state.attach_journal(&agents, "lg-1").expect("attach"), 0);
            state.add(&key("lg-1", "spent"), 250, None).expect("add");
            state.add(&key("lg-1", "spent"), 50, None).expect("add");
            state.set(&key("lg-1", "gone"), "x".into()).expect("set");
            state.remove(&key("lg-1", "gone"));
            // Another agent's keys are not this journal's.
            state.set(&key("lg-2", "spent"), "7".into()).expect("set");
            // What a kill -9 now would leave: the journals as they are, whatever the database
            // holds. Replayed into a store that never saw the writes:
            let second = tempfile::tempdir().expect("tempdir");
            let copy = second.path().join("agents");
            std::fs::create_dir_all(&copy).expect("dir");
            for name in ["lg-1.state", "lg-1.state.old"] {
                if agents.join(name).exists() {
                    std::fs::copy(agents.join(name), copy.join(name)).expect("copy");
                }
            }
            let other = Store::open(second.path()).await.expect("open");
            let replayed = StoredState::load(&other).await.expect("load");
            assert_eq!(replayed.attach_journal(&copy, "lg-1").expect("attach"), 4);
            assert_eq!(replayed.get(&key("lg-1", "spent")).as_deref(), Some("300"));
            assert_eq!(replayed.get(&key("lg-1", "gone")), None);
            assert_eq!(replayed.get(&key("lg-2", "spent")), None);
            // ... and the replayed values reach that store's database.
            replayed.flush().await;
            let again = StoredState::load(&other).await.expect("reload");
            assert_eq!(again.get(&key("lg-1", "spent")).as_deref(), Some("300"));

            // Once a round has stored the values, the journal written before it is retired:
            // only what came after is replayed.
            state.flush().await;
            assert!(!agents.join("lg-1.state.old").exists());
            state.add(&key("lg-1", "spent"), 1, None).expect("add");
            let journal = std::fs::read_to_string(agents.join("lg-1.state")).expect("journal");
            assert_eq!(journal.lines().count(), 1, "{journal}");
            assert!(journal.contains(r#""value":"301""#), "{journal}");
        });
    }
}
