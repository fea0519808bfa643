//! `ironhost:policy/events`.

use super::{MAX_EVENTS_PER_CALL, PolicyCtx, PolicyEvent};
use crate::policy::bindings::wit::events::Host;
use crate::policy::bindings::wit::types::Severity;

/// Longest event kind accepted.
const MAX_KIND_BYTES: usize = 128;
/// Largest event detail accepted.
const MAX_DETAIL_BYTES: usize = 16 * 1024;

impl Host for PolicyCtx {
    fn fingerprint(&mut self, value: String) -> String {
        let fp = self.services.fingerprints.fingerprint(&value);
        if self.call.fingerprinted.len() < MAX_EVENTS_PER_CALL {
            self.call
                .fingerprinted
                .push((fp.clone(), super::SensitiveValue::new(value)));
        }
        fp
    }

    fn emit(&mut self, kind: String, severity: Severity, detail: String) {
        let policy = self.identity.name.as_str();
        if self.call.events.len() >= MAX_EVENTS_PER_CALL {
            self.call.dropped_events += 1;
            return;
        }
        let refused = |why: &str| {
            if self.identity.log_lines.admit() {
                let kind = crate::model::plain_text(&kind, MAX_KIND_BYTES);
                tracing::warn!(policy, kind, "event refused: {why}");
            }
        };
        if kind.is_empty() || kind.len() > MAX_KIND_BYTES {
            refused(&format!("kind must be 1-{MAX_KIND_BYTES} bytes"));
            return;
        }
        if detail.len() > MAX_DETAIL_BYTES {
            refused(&format!("detail is over {MAX_DETAIL_BYTES} bytes"));
            return;
        }
        let mut detail = match serde_json::from_str::<serde_json::Value>(&detail) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                refused("detail is not a JSON object");
                return;
            }
        };
        // PII findings are audit records: bounded per call only. Other events are held to the
        // policy's allowance a second, so one policy cannot flood the store and the live feed.
        if kind != "pii.finding" && !self.identity.events.admit() {
            return;
        }
        self.identity.seen_secrets.scrub_json(&mut detail);
        let original = detail
            .get("fingerprint")
            .and_then(|f| f.as_str())
            .and_then(|fp| self.call.fingerprinted.iter().find(|(k, _)| k == fp))
            .map(|(_, v)| v.clone());
        self.call.events.push(PolicyEvent {
            policy: policy.to_owned(),
            kind,
            severity: severity.into(),
            detail,
            original,
        });
    }
}
