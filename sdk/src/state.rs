//! Host-owned state (`state` capability): typed access to the keys of this policy.
//!
//! Every key is private to the policy; [`AGENT`] keys are also private to the agent of the
//! current call, [`POLICY`] keys are shared by all agents the policy serves. Values live in the
//! host, so they survive instance recycling (and, with the store, restarts).

use crate::bindings::ironhost::policy::state as wit;

pub use wit::StateError;

/// Keys of one scope.
#[derive(Debug, Clone, Copy)]
pub struct State {
    scope: wit::Scope,
}

/// Keys private to this policy and the current call's agent (a budget, say).
pub const AGENT: State = State {
    scope: wit::Scope::Agent,
};

/// Keys shared by every agent this policy serves (a circuit breaker's state, say).
pub const POLICY: State = State {
    scope: wit::Scope::Policy,
};

impl State {
    /// The value at `key`.
    pub fn get(&self, key: &str) -> Result<Option<String>, StateError> {
        wit::get(self.scope, key)
    }

    /// The counter at `key`; a missing key reads as 0.
    pub fn get_i64(&self, key: &str) -> Result<i64, StateError> {
        match self.get(key)? {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| StateError::NotACounter),
        }
    }

    /// Set `key` to `value`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), StateError> {
        wit::set(self.scope, key, value)
    }

    /// Remove `key` (removing a missing key is fine).
    pub fn remove(&self, key: &str) -> Result<(), StateError> {
        wit::remove(self.scope, key)
    }

    /// Replace the value at `key` with `desired` if it is `expected` (`None`: unset). `desired =
    /// None` removes the key. True if it swapped.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&str>,
        desired: Option<&str>,
    ) -> Result<bool, StateError> {
        wit::compare_and_swap(self.scope, key, expected, desired)
    }

    /// Add `delta` to the counter at `key` and return the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64, StateError> {
        wit::add(self.scope, key, delta, None)
    }

    /// Add `delta` only if the result stays at or below `ceiling`; otherwise change nothing and
    /// return `StateError::CeilingExceeded(current)`. Atomic: the way to reserve a share of a
    /// limit under concurrent calls.
    pub fn add_within(&self, key: &str, delta: i64, ceiling: i64) -> Result<i64, StateError> {
        wit::add(self.scope, key, delta, Some(ceiling))
    }

    /// The JSON value at `key`, decoded.
    #[cfg(feature = "json")]
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key).map_err(|e| format!("state `{key}`: {e:?}"))? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("state `{key}` is not the expected JSON: {e}")),
        }
    }

    /// Store `value` at `key` as JSON.
    #[cfg(feature = "json")]
    pub fn set_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), String> {
        let text = serde_json::to_string(value).map_err(|e| format!("state `{key}`: {e}"))?;
        self.set(key, &text)
            .map_err(|e| format!("state `{key}`: {e:?}"))
    }
}
