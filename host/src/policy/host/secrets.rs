//! `ironhost:policy/secrets`.

use super::PolicyCtx;
use crate::policy::bindings::wit::secrets::Host;

impl Host for PolicyCtx {
    fn get(&mut self, name: String) -> Option<String> {
        if let Some(allowed) = &self.identity.allowed_secrets
            && !allowed.contains(&name)
        {
            tracing::warn!(
                policy = self.identity.name.as_str(),
                secret = name.as_str(),
                "policy asked for a secret its bundle entry does not list"
            );
            return None;
        }
        let value = self.services.secrets.get(&self.call.environment, &name);
        // A value handed to a policy is audited and kept out of what it writes.
        if let Some(v) = &value {
            self.services
                .secrets
                .note_read(&self.identity.name, &self.call.environment, &name);
            self.identity.seen_secrets.note(&name, v);
        }
        // The value never goes into the log; the name and whether it resolved do.
        tracing::debug!(
            policy = self.identity.name.as_str(),
            secret = name.as_str(),
            found = value.is_some(),
            "secret resolved"
        );
        value
    }
}
