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

use super::ledger::{self, CounterKey, LeaseRequest, Settle};
use super::{Store, StoreError, now_ms};
use crate::policy::state::{AddError, MemoryState, QuotaExceeded, StateBackend, StateKey};

/// How often dirty keys are written.
pub const WRITE_EVERY: Duration = Duration::from_millis(100);
/// How many leases one add may ask for when other calls keep taking the headroom.
const LEASE_ATTEMPTS: usize = 8;
/// The longest an add waits for a lease from the store.
pub const LEASE_WAIT: Duration = Duration::from_millis(800);

/// The persistent [`StateBackend`].
#[derive(Debug)]
pub struct StoredState {
    mem: MemoryState,
    dirty: Mutex<BTreeSet<StateKey>>,
    flushes: Mutex<Vec<oneshot::Sender<()>>>,
    wake: Notify,
    journal: Mutex<Option<Journal>>,
    /// The agent whose counters are shared through leases (`super::ledger`).
    ledger: Mutex<Option<Ledger>>,
    /// Held while a settle or a lease is in the database: one at a time, so each works on
    /// what the other left.
    ledger_db: tokio::sync::Mutex<()>,
    store: Store,
}

/// The counters of the agent this process runs: what it added since its last settle and the
/// headroom its lease leaves it.
#[derive(Debug)]
struct Ledger {
    agent: String,
    /// This process's name on its leases.
    holder: String,
    /// How long a lease lives without renewal.
    ttl: Duration,
    runtime: tokio::runtime::Handle,
    counters: std::collections::BTreeMap<StateKey, Counter>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    /// Added since the last settle.
    local: i64,
    /// What this process may still add under a ceiling.
    headroom: i64,
    /// It holds a lease on the counter.
    leased: bool,
    /// When the lease wants renewing (ms since the epoch).
    renew_at_ms: i64,
}

/// The holder of the leases and the settles of one round.
type Settles = (String, Duration, Vec<(StateKey, Settle)>);

/// Why a shared add could not be made as it stands.
enum Shared {
    Done(i64),
    /// The add needs more headroom than this process holds.
    Short,
    Failed(AddError),
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
    /// For a shared counter: what was added (its value is the settled value plus these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delta: Option<i64>,
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
            ledger: Mutex::new(None),
            ledger_db: tokio::sync::Mutex::new(()),
            store: store.clone(),
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
                match (e.delta, e.value) {
                    (Some(d), _) => {
                        let _ = self.mem.add(&key, d, None);
                        let mut ledger = self.ledger.lock();
                        match ledger.as_mut().filter(|l| l.agent == agent) {
                            Some(l) => l.counters.entry(key.clone()).or_default().local += d,
                            None => self.dirty(&key),
                        }
                    }
                    (None, Some(v)) => {
                        let _ = self.mem.set(&key, v);
                        self.dirty(&key);
                    }
                    (None, None) => {
                        self.mem.remove(&key);
                        self.dirty(&key);
                    }
                }
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

    /// Share `agent`'s counters with the other processes that run it, through leases
    /// (`super::ledger`); `holder` names this process on its leases, `runtime` runs the lease
    /// requests; a lease lives `ttl` without renewal (`ledger::LEASE_TTL`). Attach before
    /// [`StoredState::attach_journal`], so a replay knows.
    pub fn attach_ledger(
        &self,
        agent: &str,
        holder: &str,
        ttl: Duration,
        runtime: tokio::runtime::Handle,
    ) {
        *self.ledger.lock() = Some(Ledger {
            agent: agent.to_owned(),
            holder: holder.to_owned(),
            ttl,
            runtime,
            counters: Default::default(),
        });
    }

    fn is_shared(&self, key: &StateKey) -> bool {
        key.agent.is_some()
            && self
                .ledger
                .lock()
                .as_ref()
                .is_some_and(|l| key.agent.as_deref() == Some(l.agent.as_str()))
    }

    /// An add to a shared counter within the headroom held; journaled as a delta.
    fn shared_add(&self, key: &StateKey, delta: i64, ceiling: Option<i64>) -> Shared {
        let mut journal = self.journal.lock();
        let mut ledger = self.ledger.lock();
        let Some(l) = ledger.as_mut() else {
            return Shared::Failed(AddError::Overflow);
        };
        let current = match self.mem.get(key) {
            None => 0,
            Some(v) => match v.parse::<i64>() {
                Ok(n) => n,
                Err(_) => return Shared::Failed(AddError::NotACounter),
            },
        };
        let Some(next) = current.checked_add(delta) else {
            return Shared::Failed(AddError::Overflow);
        };
        let counter = l.counters.entry(key.clone()).or_default();
        if let Some(c) = ceiling {
            // What this process sees is at most what the fleet holds: past the ceiling here
            // is past it everywhere.
            if next > c {
                return Shared::Failed(AddError::CeilingExceeded(current));
            }
            if delta > 0 && delta > counter.headroom {
                return Shared::Short;
            }
        }
        if let Err(e) = self.mem.set(key, next.to_string()) {
            return Shared::Failed(AddError::Quota(e));
        }
        if ceiling.is_some() && delta > 0 {
            counter.headroom -= delta;
        }
        counter.local += delta;
        drop(ledger);
        if let Some(j) = journal.as_mut() {
            let entry = Entry {
                policy: key.policy.clone(),
                key: key.key.clone(),
                value: None,
                delta: Some(delta),
            };
            let mut line = serde_json::to_vec(&entry).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = j.file.write_all(&line) {
                tracing::error!("cannot journal policy state to {}: {e}", j.path.display());
            }
        }
        Shared::Done(next)
    }

    /// Lease more headroom on a shared counter for an add of `need` under `ceiling`. Waits
    /// for the database (at most [`LEASE_WAIT`]); a call waiting here is not charged for it.
    fn lease_more(&self, key: &StateKey, need: i64, ceiling: i64) -> Result<bool, String> {
        let (runtime, holder, agent, ttl) = match self.ledger.lock().as_ref() {
            Some(l) => (l.runtime.clone(), l.holder.clone(), l.agent.clone(), l.ttl),
            None => return Err("no ledger".to_owned()),
        };
        let counter_key = CounterKey {
            policy: key.policy.clone(),
            agent,
            key: key.key.clone(),
        };
        let request = async {
            let _db = self.ledger_db.lock().await;
            let before = self.counter(key);
            let grant = ledger::lease(
                &self.store,
                &LeaseRequest {
                    key: &counter_key,
                    holder: &holder,
                    ttl,
                    local: before.local,
                    headroom: before.headroom,
                    need,
                    ceiling,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut ledger = self.ledger.lock();
            if let Some(l) = ledger.as_mut() {
                let c = l.counters.entry(key.clone()).or_default();
                // Adds made while the lease was requested used headroom held before it.
                let used = before.headroom - c.headroom;
                c.headroom = (grant.headroom - used).max(0);
                c.leased = true;
                c.renew_at_ms = now_ms() + (ttl / 2).as_millis() as i64;
                // What the fleet has settled, and what this process added since.
                let _ = self.mem.set(key, (grant.settled + c.local).to_string());
            }
            Ok::<bool, String>(grant.headroom >= need)
        };
        let bounded = async {
            tokio::time::timeout(LEASE_WAIT, request)
                .await
                .map_err(|_| format!("no answer from the store in {LEASE_WAIT:?}"))?
        };
        crate::policy::meter::uncharged(|| match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| runtime.block_on(bounded))
            }
            Ok(_) => Err("a lease cannot be waited for on a single-threaded runtime".to_owned()),
            Err(_) => runtime.block_on(bounded),
        })
    }

    fn counter(&self, key: &StateKey) -> Counter {
        self.ledger
            .lock()
            .as_ref()
            .and_then(|l| l.counters.get(key).copied())
            .unwrap_or_default()
    }

    /// The settles a write round makes: every shared counter with something added, or whose
    /// lease wants renewing.
    fn settles(&self) -> Settles {
        let ledger = self.ledger.lock();
        let Some(l) = ledger.as_ref() else {
            return (String::new(), Duration::ZERO, Vec::new());
        };
        let now = now_ms();
        let settles = l
            .counters
            .iter()
            .filter(|(_, c)| c.local != 0 || (c.leased && now >= c.renew_at_ms))
            .map(|(k, c)| {
                (
                    k.clone(),
                    Settle {
                        key: CounterKey {
                            policy: k.policy.clone(),
                            agent: l.agent.clone(),
                            key: k.key.clone(),
                        },
                        local: c.local,
                        headroom: c.leased.then_some(c.headroom),
                    },
                )
            })
            .collect();
        (l.holder.clone(), l.ttl, settles)
    }

    /// A round settled these counters; the stored values are now `values`.
    fn settled(&self, settles: &[(StateKey, Settle)], values: &[i64]) {
        let mut ledger = self.ledger.lock();
        let Some(l) = ledger.as_mut() else { return };
        let renew_at = now_ms() + (l.ttl / 2).as_millis() as i64;
        for ((key, s), value) in settles.iter().zip(values) {
            if let Some(c) = l.counters.get_mut(key) {
                c.local -= s.local;
                if c.leased {
                    c.renew_at_ms = renew_at;
                }
                let _ = self.mem.set(key, (value + c.local).to_string());
            }
        }
    }

    /// The process ends: settle what it added and give back its leases.
    pub async fn release_leases(&self) -> Result<(), StoreError> {
        let _db = self.ledger_db.lock().await;
        let (holder, ttl, mut settles) = self.settles();
        if holder.is_empty() {
            return Ok(());
        }
        for (_, s) in &mut settles {
            s.headroom = None;
        }
        let mut tx = self.store.pool().begin().await?;
        let only: Vec<Settle> = settles.iter().map(|(_, s)| s.clone()).collect();
        let values = ledger::settle(&mut tx, &holder, ttl, &only).await?;
        tx.commit().await?;
        self.settled(&settles, &values);
        ledger::release(&self.store, &holder).await?;
        if let Some(l) = self.ledger.lock().as_mut() {
            for c in l.counters.values_mut() {
                c.leased = false;
                c.headroom = 0;
            }
        }
        Ok(())
    }

    /// Apply `op` to memory and, for the journaled agent's keys, append the key's new value;
    /// under the journal's lock, so the journal's order is memory's.
    fn change<T>(&self, key: &StateKey, op: impl FnOnce(&MemoryState) -> T) -> T {
        let mut journal = self.journal.lock();
        let out = op(&self.mem);
        self.dirty(key);
        // Written whole now: no longer a shared counter (its value is this one, stored as is).
        if let Some(l) = self.ledger.lock().as_mut() {
            l.counters.remove(key);
        }
        if let Some(j) = journal.as_mut()
            && key.agent.as_deref() == Some(j.agent.as_str())
        {
            let entry = Entry {
                policy: key.policy.clone(),
                key: key.key.clone(),
                value: self.mem.get(key),
                delta: None,
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
    fn take_round(&self) -> (BTreeSet<StateKey>, Settles) {
        let mut journal = self.journal.lock();
        let keys = std::mem::take(&mut *self.dirty.lock());
        // The counters' deltas journaled so far are in these settles.
        let settles = self.settles();
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
        (keys, settles)
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
        if !s.round(&store).await {
            drop(s);
            tokio::time::sleep(WRITE_EVERY).await;
        }
    }
}

impl StoredState {
    /// One write round: the dirty keys as they are now, and the shared counters' settles.
    /// False if the database refused it (everything stays to be written).
    async fn round(&self, store: &Store) -> bool {
        let _db = self.ledger_db.lock().await;
        let waiters = std::mem::take(&mut *self.flushes.lock());
        let (keys, (holder, ttl, settles)) = self.take_round();
        let values: Vec<(StateKey, Option<String>)> = keys
            .into_iter()
            .map(|k| {
                let v = self.mem.get(&k);
                (k, v)
            })
            .collect();
        if !values.is_empty() || !settles.is_empty() {
            let only: Vec<Settle> = settles.iter().map(|(_, s)| s.clone()).collect();
            match write(store, &values, &holder, ttl, &only).await {
                Ok(stored) => self.settled(&settles, &stored),
                Err(e) => {
                    tracing::error!(
                        "cannot persist policy state ({} keys, {} shared counters): {e}; will retry",
                        values.len(),
                        settles.len()
                    );
                    // Dirty again (the next round writes whatever they hold then); the settles
                    // stay in the counters; flush waiters wait for that round.
                    self.dirty.lock().extend(values.into_iter().map(|(k, _)| k));
                    self.flushes.lock().extend(waiters);
                    return false;
                }
            }
        }
        self.round_stored();
        for w in waiters {
            let _ = w.send(());
        }
        true
    }
}

async fn write(
    store: &Store,
    values: &[(StateKey, Option<String>)],
    holder: &str,
    ttl: Duration,
    settles: &[Settle],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    for (k, v) in values {
        let agent = k.agent.as_deref().unwrap_or("");
        match v {
            Some(v) => {
                sqlx::query(
                    "INSERT INTO policy_state (policy, agent, key, value) VALUES ($1, $2, $3, $4)
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
                sqlx::query(
                    "DELETE FROM policy_state WHERE policy = $1 AND agent = $2 AND key = $3",
                )
                .bind(&k.policy)
                .bind(agent)
                .bind(&k.key)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    let stored = ledger::settle(&mut tx, holder, ttl, settles).await?;
    tx.commit().await?;
    Ok(stored)
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
        if !self.is_shared(key) {
            return self.change(key, |m| m.add(key, delta, ceiling));
        }
        // Other calls of this process may take the headroom a lease brought before this one
        // uses it: lease again while the store still has room for it.
        for _ in 0..LEASE_ATTEMPTS {
            match self.shared_add(key, delta, ceiling) {
                Shared::Done(v) => return Ok(v),
                Shared::Failed(e) => return Err(e),
                Shared::Short => {}
            }
            match self.lease_more(key, delta, ceiling.unwrap_or(i64::MAX)) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(
                        policy = key.policy.as_str(),
                        "cannot lease headroom on `{}` from the store: {e}; the add is refused",
                        key.key
                    );
                    break;
                }
            }
        }
        Err(AddError::CeilingExceeded(
            self.mem
                .get(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use super::*;

    #[test]
    fn state_survives_a_reopen() {
        let key = |agent: Option<&str>, k: &str| StateKey {
            policy: "budget".into(),
            agent: agent.map(str::to_owned),
            key: k.into(),
        };
        for backend in super::super::testing::BACKENDS {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async {
                let db = super::super::testing::TestDb::new(backend).await;
                let store = db.store().await;
                let state = StoredState::load(&store).await.expect("load");
                state
                    .add(&key(Some("lg-1"), "spent"), 250, None)
                    .expect("add");
                state
                    .add(&key(Some("lg-1"), "spent"), 50, None)
                    .expect("add");
                state
                    .set(&key(Some("lg-1"), "gone"), "x".into())
                    .expect("set");
                state.remove(&key(Some("lg-1"), "gone"));
                // A policy-wide key (agent '') beside the agent's.
                state
                    .set(&key(None, "spent"), "it's 1".into())
                    .expect("set");
                state.flush().await;
                // Written again: the row is updated, not duplicated.
                state
                    .add(&key(Some("lg-1"), "spent"), 1, None)
                    .expect("add");
                state.flush().await;
                store.pool().close().await;
                let store = db.store().await;
                let again = StoredState::load(&store).await.expect("reload");
                assert_eq!(
                    again.get(&key(Some("lg-1"), "spent")).as_deref(),
                    Some("301"),
                    "{backend:?}"
                );
                assert_eq!(again.get(&key(Some("lg-1"), "gone")), None, "{backend:?}");
                assert_eq!(
                    again.get(&key(None, "spent")).as_deref(),
                    Some("it's 1"),
                    "{backend:?}"
                );
                let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM policy_state")
                    .fetch_one(store.pool())
                    .await
                    .expect("count");
                assert_eq!(rows, 2, "{backend:?}");
            });
        }
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

    #[test]
    fn two_processes_share_a_counter_under_its_ceiling_through_leases() {
        for backend in super::super::testing::BACKENDS {
            two_processes_share_a_counter(backend);
        }
    }

    /// Two processes: two stores (each its own connections) on one database.
    fn two_processes_share_a_counter(backend: super::super::Backend) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        let key = StateKey {
            policy: "budget".into(),
            agent: Some("lg-1".into()),
            key: "committed".into(),
        };
        const CEILING: i64 = 10_000;
        const STEP: i64 = 70;
        let (a, b, store, _db) = rt.block_on(async {
            let db = super::super::testing::TestDb::new(backend).await;
            let store = db.store().await;
            let a = StoredState::load(&store).await.expect("a");
            let b = StoredState::load(&db.store().await).await.expect("b");
            let ttl = Duration::from_millis(400);
            a.attach_ledger("lg-1", "lg-1.a", ttl, tokio::runtime::Handle::current());
            b.attach_ledger("lg-1", "lg-1.b", ttl, tokio::runtime::Handle::current());
            (a, b, store, db)
        });
        // Four threads per "process" reserve until refused; some give back half of what they
        // reserved (a call that cost less), without a ceiling.
        let granted = std::sync::atomic::AtomicI64::new(0);
        std::thread::scope(|scope| {
            for (i, state) in [&a, &b, &a, &b, &a, &b, &a, &b].into_iter().enumerate() {
                let (key, granted) = (&key, &granted);
                scope.spawn(move || {
                    loop {
                        match state.add(key, STEP, Some(CEILING)) {
                            Ok(_) => {
                                granted.fetch_add(STEP, Ordering::SeqCst);
                                if i % 3 == 0 {
                                    state.add(key, -STEP / 2, None).expect("give back");
                                    granted.fetch_sub(STEP / 2, Ordering::SeqCst);
                                }
                            }
                            Err(AddError::CeilingExceeded(_)) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                });
            }
        });
        let total = granted.load(Ordering::SeqCst);
        assert!(
            total <= CEILING,
            "{backend:?}: {total} reserved under a ceiling of {CEILING}"
        );
        // Nothing was refused while room was left: at most a step short per process.
        assert!(
            total > CEILING - 2 * STEP,
            "{backend:?}: only {total} reserved of {CEILING}"
        );
        rt.block_on(async {
            a.flush().await;
            b.flush().await;
            let stored = StoredState::load(&store).await.expect("reload");
            assert_eq!(stored.get(&key), Some(total.to_string()));
            // Both hold leases until they end; a process that ends gives its lease back.
            let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM budget_leases")
                .fetch_one(store.pool())
                .await
                .expect("count");
            assert_eq!(leases, 2);
            a.release_leases().await.expect("release");
            let holders: Vec<String> = sqlx::query_scalar("SELECT holder FROM budget_leases")
                .fetch_all(store.pool())
                .await
                .expect("holders");
            assert_eq!(holders, ["lg-1.b"]);
        });
    }

    #[test]
    fn a_lease_not_renewed_expires_and_its_room_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        let key = StateKey {
            policy: "budget".into(),
            agent: Some("lg-1".into()),
            key: "committed".into(),
        };
        let ttl = Duration::from_millis(500);
        let alive = rt.block_on(async {
            let store = Store::open(dir.path()).await.expect("open");
            // Another process leased 600 of 1000 and was killed: it never renews.
            let counter = CounterKey {
                policy: "budget".into(),
                agent: "lg-1".into(),
                key: "committed".into(),
            };
            let grant = ledger::lease(
                &store,
                &LeaseRequest {
                    key: &counter,
                    holder: "lg-1.dead",
                    ttl,
                    local: 0,
                    headroom: 0,
                    need: 600,
                    ceiling: 1000,
                },
            )
            .await
            .expect("lease");
            assert_eq!(grant.headroom, 600);
            let alive = StoredState::load(&store).await.expect("alive");
            alive.attach_ledger("lg-1", "lg-1.alive", ttl, tokio::runtime::Handle::current());
            alive
        });
        let stopped = Instant::now();
        assert!(matches!(
            alive.add(&key, 500, Some(1000)),
            Err(AddError::CeilingExceeded(_))
        ));
        alive
            .add(&key, 400, Some(1000))
            .expect("the room the lease left");
        alive.add(&key, -400, None).expect("given back");
        // Once the lease expired, its grant is room again (what it added and never settled is
        // lost to the count: the bound of one lease per process).
        std::thread::sleep(ttl.saturating_sub(stopped.elapsed()) + Duration::from_millis(100));
        alive
            .add(&key, 500, Some(1000))
            .expect("room after the expiry");
    }
}
