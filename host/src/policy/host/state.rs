//! `ironhost:policy/state`: keys are scoped to the calling policy and, for `scope::agent`, to
//! the agent of the current call.

use super::PolicyCtx;
use crate::policy::bindings::wit::state::{Host, Scope, StateError};
use crate::policy::state::{AddError, MAX_KEY_BYTES, MAX_VALUE_BYTES, StateKey};

impl PolicyCtx {
    fn state_key(&self, scope: Scope, key: String) -> Result<StateKey, StateError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(StateError::TooLarge);
        }
        let agent = match scope {
            Scope::Policy => None,
            Scope::Agent => Some(self.call.agent_id.clone().ok_or(StateError::NoAgent)?),
        };
        Ok(StateKey {
            policy: self.identity.name.clone(),
            agent,
            key,
        })
    }
}

impl Host for PolicyCtx {
    fn get(&mut self, scope: Scope, key: String) -> Result<Option<String>, StateError> {
        let key = self.state_key(scope, key)?;
        Ok(self.state_backend().get(&key))
    }

    fn set(&mut self, scope: Scope, key: String, mut value: String) -> Result<(), StateError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(StateError::TooLarge);
        }
        // State is stored: a secret the policy read never goes into it.
        self.identity.seen_secrets.scrub(&mut value);
        let key = self.state_key(scope, key)?;
        self.state_backend()
            .set(&key, value)
            .map_err(|_| StateError::TooLarge)
    }

    fn remove(&mut self, scope: Scope, key: String) -> Result<(), StateError> {
        let key = self.state_key(scope, key)?;
        self.state_backend().remove(&key);
        Ok(())
    }

    fn compare_and_swap(
        &mut self,
        scope: Scope,
        key: String,
        mut expected: Option<String>,
        mut desired: Option<String>,
    ) -> Result<bool, StateError> {
        if desired.as_ref().is_some_and(|d| d.len() > MAX_VALUE_BYTES) {
            return Err(StateError::TooLarge);
        }
        // Compared as stored: scrubbed (see `set`).
        for v in expected.iter_mut().chain(desired.iter_mut()) {
            self.identity.seen_secrets.scrub(v);
        }
        let key = self.state_key(scope, key)?;
        self.state_backend()
            .compare_and_swap(&key, expected.as_deref(), desired)
            .map_err(|_| StateError::TooLarge)
    }

    fn add(
        &mut self,
        scope: Scope,
        key: String,
        delta: i64,
        ceiling: Option<i64>,
    ) -> Result<i64, StateError> {
        let key = self.state_key(scope, key)?;
        self.state_backend()
            .add(&key, delta, ceiling)
            .map_err(|e| match e {
                AddError::NotACounter => StateError::NotACounter,
                AddError::CeilingExceeded(current) => StateError::CeilingExceeded(current),
                AddError::Overflow => StateError::Overflow,
                AddError::Quota(_) => StateError::TooLarge,
            })
    }
}
