//! Host-owned policy state: the backend behind the `state` capability.
//!
//! Values are strings; counters are decimal i64 strings so `get` shows them as they are.
//! [`MemoryState`] keeps everything in memory; the store persists state through the same
//! [`StateBackend`] trait.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A fully scoped state key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    /// The policy's name in the chain.
    pub policy: String,
    /// The agent, for agent-scoped keys.
    pub agent: Option<String>,
    /// The policy's own key.
    pub key: String,
}

/// Most keys one policy may hold, across all agents.
pub const MAX_KEYS_PER_POLICY: usize = 100_000;
/// Most bytes (keys and values) one policy may hold, across all agents.
pub const MAX_BYTES_PER_POLICY: usize = 16 << 20;

/// The policy's state is over its quota; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the policy's state is over its quota ({MAX_KEYS_PER_POLICY} keys, {} MiB)", MAX_BYTES_PER_POLICY >> 20)]
pub struct QuotaExceeded;

/// Why `add` changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("the value is not a decimal i64 counter")]
    NotACounter,
    #[error("the add would pass the ceiling; the counter is {0}")]
    CeilingExceeded(i64),
    #[error("the counter would overflow")]
    Overflow,
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
}

/// Storage of policy state. Every operation on one key must be linearizable, and a write
/// that would take a policy over its quota must change nothing.
pub trait StateBackend: Send + Sync {
    fn get(&self, key: &StateKey) -> Option<String>;
    fn set(&self, key: &StateKey, value: String) -> Result<(), QuotaExceeded>;
    fn remove(&self, key: &StateKey);
    /// Replace the value if it equals `expected` (`None` = unset); `desired = None` removes.
    fn compare_and_swap(
        &self,
        key: &StateKey,
        expected: Option<&str>,
        desired: Option<String>,
    ) -> Result<bool, QuotaExceeded>;
    /// Add to a counter (unset = 0), refusing to pass `ceiling`. Returns the new value.
    fn add(&self, key: &StateKey, delta: i64, ceiling: Option<i64>) -> Result<i64, AddError>;
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    keys: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<StateKey, String>,
    usage: HashMap<String, Usage>,
}

impl Inner {
    /// Store `value` at `key` if the policy stays within its quota.
    fn put(&mut self, key: &StateKey, value: String) -> Result<(), QuotaExceeded> {
        let key_bytes = key.key.len() + key.agent.as_ref().map_or(0, String::len);
        let old = self.map.get(key).map(String::len);
        let usage = self.usage.get(&key.policy).copied().unwrap_or_default();
        let next = Usage {
            keys: usage.keys + usize::from(old.is_none()),
            bytes: usage.bytes + value.len() + if old.is_none() { key_bytes } else { 0 }
                - old.unwrap_or(0),
        };
        if next.keys > MAX_KEYS_PER_POLICY || next.bytes > MAX_BYTES_PER_POLICY {
            return Err(QuotaExceeded);
        }
        self.usage.insert(key.policy.clone(), next);
        self.map.insert(key.clone(), value);
        Ok(())
    }

    fn delete(&mut self, key: &StateKey) {
        if let Some(old) = self.map.remove(key)
            && let Some(u) = self.usage.get_mut(&key.policy)
        {
            let key_bytes = key.key.len() + key.agent.as_ref().map_or(0, String::len);
            u.keys = u.keys.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(old.len() + key_bytes);
        }
    }
}

/// State in memory, lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryState {
    inner: Mutex<Inner>,
}

impl MemoryState {
    /// Every key and value, sorted: for inspection and tests.
    pub fn snapshot(&self) -> Vec<(StateKey, String)> {
        let mut all: Vec<_> = self
            .inner
            .lock()
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort();
        all
    }
}

impl StateBackend for MemoryState {
    fn get(&self, key: &StateKey) -> Option<String> {
        self.inner.lock().map.get(key).cloned()
    }

    fn set(&self, key: &StateKey, value: String) -> Result<(), QuotaExceeded> {
        self.inner.lock().put(key, value)
    }

    fn remove(&self, key: &StateKey) {
        self.inner.lock().delete(key);
    }

    fn compare_and_swap(
        &self,
        key: &StateKey,
        expected: Option<&str>,
        desired: Option<String>,
    ) -> Result<bool, QuotaExceeded> {
        let mut inner = self.inner.lock();
        if inner.map.get(key).map(String::as_str) != expected {
            return Ok(false);
        }
        match desired {
            Some(v) => inner.put(key, v)?,
            None => inner.delete(key),
        }
        Ok(true)
    }

    fn add(&self, key: &StateKey, delta: i64, ceiling: Option<i64>) -> Result<i64, AddError> {
        let mut inner = self.inner.lock();
        let current = match inner.map.get(key) {
            None => 0,
            Some(v) => v.parse::<i64>().map_err(|_| AddError::NotACounter)?,
        };
        let next = current.checked_add(delta).ok_or(AddError::Overflow)?;
        if ceiling.is_some_and(|c| next > c) {
            return Err(AddError::CeilingExceeded(current));
        }
        inner.put(key, next.to_string())?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(k: &str) -> StateKey {
        StateKey {
            policy: "p".into(),
            agent: Some("a".into()),
            key: k.into(),
        }
    }

    #[test]
    fn add_respects_ceiling_and_rejects_text() {
        let s = MemoryState::default();
        assert_eq!(s.add(&key("c"), 5, Some(10)), Ok(5));
        assert_eq!(
            s.add(&key("c"), 6, Some(10)),
            Err(AddError::CeilingExceeded(5))
        );
        assert_eq!(s.add(&key("c"), 5, Some(10)), Ok(10));
        s.set(&key("t"), "hello".into()).expect("within quota");
        assert_eq!(s.add(&key("t"), 1, None), Err(AddError::NotACounter));
        s.set(&key("m"), i64::MAX.to_string())
            .expect("within quota");
        assert_eq!(s.add(&key("m"), 1, None), Err(AddError::Overflow));
    }

    #[test]
    fn compare_and_swap_only_replaces_expected_value() {
        let s = MemoryState::default();
        assert_eq!(
            s.compare_and_swap(&key("k"), None, Some("1".into())),
            Ok(true)
        );
        assert_eq!(
            s.compare_and_swap(&key("k"), None, Some("2".into())),
            Ok(false)
        );
        assert_eq!(s.compare_and_swap(&key("k"), Some("1"), None), Ok(true));
        assert_eq!(s.get(&key("k")), None);
    }

    #[test]
    fn a_policy_cannot_grow_its_state_past_the_quota() {
        let s = MemoryState::default();
        let big = "x".repeat(60 * 1024);
        let mut stored = 0;
        for i in 0..1000 {
            match s.set(&key(&format!("k{i}")), big.clone()) {
                Ok(()) => stored += 1,
                Err(QuotaExceeded) => break,
            }
        }
        assert!(
            stored > 200 && stored < 300,
            "stored {stored} values of 60 KiB under 16 MiB"
        );
        // Nothing changed on refusal; removing frees room again; other policies are unaffected.
        assert_eq!(s.get(&key(&format!("k{stored}"))), None);
        s.remove(&key("k0"));
        assert_eq!(s.set(&key("again"), big.clone()), Ok(()));
        let other = StateKey {
            policy: "q".into(),
            agent: None,
            key: "k".into(),
        };
        assert_eq!(s.set(&other, big), Ok(()));
    }

    #[test]
    fn counters_count_against_the_key_quota() {
        let s = MemoryState::default();
        for i in 0..MAX_KEYS_PER_POLICY {
            s.add(&key(&i.to_string()), 1, None).expect("within quota");
        }
        assert_eq!(
            s.add(&key("one-more"), 1, None),
            Err(AddError::Quota(QuotaExceeded))
        );
        // Updating an existing key adds no key.
        assert_eq!(s.add(&key("7"), 1, None), Ok(2));
    }

    #[test]
    fn concurrent_adds_under_a_ceiling_never_pass_it() {
        let s = Arc::new(MemoryState::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| s.add(&key("budget"), 3, Some(1000)).is_ok())
                        .count()
                })
            })
            .collect();
        let ok: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(ok, 333);
        assert_eq!(s.get(&key("budget")).as_deref(), Some("999"));
    }
}
