//! Secrets (`secrets` capability). Every access is audited by the host.
//!
//! A value read here must never be logged, put in an event or a denial. To have the host use a
//! provider key at egress without the value passing through any policy, set
//! `LlmRequest::credential` to the secret's name instead of reading it.

use crate::bindings::ironhost::policy::secrets as wit;

/// The value of secret `name` in the call's environment, if the policy may read it.
pub fn get(name: &str) -> Option<String> {
    wit::get(name)
}
