//! `ironhost:policy/log`.

use super::{MAX_LOG_BYTES, PolicyCtx};
use crate::policy::bindings::wit::log::{Host, Level};

impl Host for PolicyCtx {
    fn write(&mut self, level: Level, mut message: String) {
        if !self.identity.log_lines.admit() {
            return;
        }
        self.identity.seen_secrets.scrub(&mut message);
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("…[truncated]");
        }
        let policy = self.identity.name.as_str();
        let agent = self.call.agent_id.as_deref().unwrap_or("-");
        match level {
            Level::Trace => tracing::trace!(target: "ironhost::policy", policy, agent, "{message}"),
            Level::Debug => tracing::debug!(target: "ironhost::policy", policy, agent, "{message}"),
            Level::Info => tracing::info!(target: "ironhost::policy", policy, agent, "{message}"),
            Level::Warn => tracing::warn!(target: "ironhost::policy", policy, agent, "{message}"),
            Level::Error => tracing::error!(target: "ironhost::policy", policy, agent, "{message}"),
        }
    }
}
