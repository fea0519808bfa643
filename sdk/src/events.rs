//! Publishing events (`events` capability).

use crate::bindings::ironhost::policy::events as wit;

pub use crate::bindings::ironhost::policy::types::Severity;

/// Publish an event. `detail` must be a JSON object text; events must never carry sensitive
/// values (use [`fingerprint`]).
pub fn emit_raw(kind: &str, severity: Severity, detail: &str) {
    wit::emit(kind, severity, detail);
}

/// Publish an event; `detail` should be a JSON object (`serde_json::json!({...})`).
///
/// Uses only the `events` capability (nothing here logs, so a policy needs no `log` grant).
#[cfg(feature = "json")]
pub fn emit(kind: &str, severity: Severity, detail: &serde_json::Value) {
    wit::emit(kind, severity, &detail.to_string());
}

/// A keyed fingerprint of a sensitive value (HMAC-SHA-256 under a host-held key, 64 hex
/// digits): what a finding event carries instead of the value.
pub fn fingerprint(value: &str) -> String {
    wit::fingerprint(value)
}
