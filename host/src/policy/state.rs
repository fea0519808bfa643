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

/// Why `add` changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("the value is not a decimal i64 counter")]
    NotACounter,
    #[error("the add would pass the ceiling; the counter is {0}")]
    CeilingExceeded(i64),
    #[error("the counter would overflow")]
    Overflow,
}

/// Storage of policy state. Every operation on one key must be linearizable.
pub trait StateBackend: Send + Sync {
    fn get(&self, key: &StateKey) -> Option<String>;
    fn set(&self, key: &StateKey, value: String);
    fn remove(&self, key: &StateKey);
    /// Replace the value if it equals `expected` (`None` = unset); `desired = None` removes.
    fn compare_and_swap(
        &self,
        key: &StateKey,
        expected: Option<&str>,
        desired: Option<String>,
    ) -> bool;
    /// Add to a counter (unset = 0), refusing to pass `ceiling`. Returns the new value.
    fn add(&self, key: &StateKey, delta: i64, ceiling: Option<i64>) -> Result<i64, AddError>;
}

/// State in memory, lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryState {
    map: Mutex<HashMap<StateKey, String>>,
}

impl MemoryState {
    /// Every key and value, sorted: for inspection and tests.
    pub fn snapshot(&self) -> Vec<(StateKey, String)> {
        let mut all: Vec<_> = self
            .map
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort();
        all
    }
}

impl StateBackend for MemoryState {
    fn get(&self, key: &StateKey) -> Option<String> {
        self.map.lock().get(key).cloned()
    }

    fn set(&self, key: &StateKey, value: String) {
        self.map.lock().insert(key.clone(), value);
    }

    fn remove(&self, key: &StateKey) {
        self.map.lock().remove(key);
    }

    fn compare_and_swap(
        &self,
        key: &StateKey,
        expected: Option<&str>,
        desired: Option<String>,
    ) -> bool {
        let mut map = self.map.lock();
        if map.get(key).map(String::as_str) != expected {
            return false;
        }
        match desired {
            Some(v) => map.insert(key.clone(), v),
            None => map.remove(key),
        };
        true
    }

    fn add(&self, key: &StateKey, delta: i64, ceiling: Option<i64>) -> Result<i64, AddError> {
        let mut map = self.map.lock();
        let current = match map.get(key) {
            None => 0,
            Some(v) => v.parse::<i64>().map_err(|_| AddError::NotACounter)?,
        };
        let next = current.checked_add(delta).ok_or(AddError::Overflow)?;
        if ceiling.is_some_and(|c| next > c) {
            return Err(AddError::CeilingExceeded(current));
        }
        map.insert(key.clone(), next.to_string());
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
        s.set(&key("t"), "hello".into());
        assert_eq!(s.add(&key("t"), 1, None), Err(AddError::NotACounter));
        s.set(&key("m"), i64::MAX.to_string());
        assert_eq!(s.add(&key("m"), 1, None), Err(AddError::Overflow));
    }

    #[test]
    fn compare_and_swap_only_replaces_expected_value() {
        let s = MemoryState::default();
        assert!(s.compare_and_swap(&key("k"), None, Some("1".into())));
        assert!(!s.compare_and_swap(&key("k"), None, Some("2".into())));
        assert!(s.compare_and_swap(&key("k"), Some("1"), None));
        assert_eq!(s.get(&key("k")), None);
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
