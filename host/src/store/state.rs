//! Policy state that outlives the process: kept in memory for the hook chain (every operation
//! stays a map lookup), loaded from `policy_state` at start and written behind.
//!
//! A write marks its key dirty (a set insert under a mutex: no channel, no wake-up); the writer
//! task stores whatever each dirty key holds *then*, every [`WRITE_EVERY`], so racing writers
//! can never leave an older value in the database than in memory.

use std::collections::BTreeSet;
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
        let keys = std::mem::take(&mut *s.dirty.lock());
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
        self.mem.set(key, value)?;
        self.dirty(key);
        Ok(())
    }

    fn remove(&self, key: &StateKey) {
        self.mem.remove(key);
        self.dirty(key);
    }

    fn compare_and_swap(
        &self,
        key: &StateKey,
        expected: Option<&str>,
        desired: Option<String>,
    ) -> Result<bool, QuotaExceeded> {
        let swapped = self.mem.compare_and_swap(key, expected, desired)?;
        if swapped {
            self.dirty(key);
        }
        Ok(swapped)
    }

    fn add(&self, key: &StateKey, delta: i64, ceiling: Option<i64>) -> Result<i64, AddError> {
        let v = self.mem.add(key, delta, ceiling)?;
        self.dirty(key);
        Ok(v)
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
}
