//! A bundle revision's manifest: the ordered policy list a store keeps for a named bundle, as
//! JSON. It is a bundle.toml with every name resolved and every component named by content:
//!
//! ```json
//! {"version": 1, "policies": [
//!   {"name": "pii-redact", "component": "builtin:pii-redact", "capabilities": ["events", "log"],
//!    "secrets": null, "failure-mode": "fail-closed", "enabled": true, "deadline-ms": 10,
//!    "memory-mib": 32, "verdict-kib": 1024, "config": {"mode": "redact"}},
//!   {"name": "my-guard", "component": "sha256:9f86d0…", …}
//! ]}
//! ```
//!
//! `component` is `builtin:NAME` (built into ironhost) or `sha256:HEX` (the bytes are in the
//! store's `components` table). Two manifests are the same revision content when they are equal
//! as values (JSON objects compare by key, not by order).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bundle::{BUILTIN_PREFIX, FailureMode, PolicyEntry, validate_name};
use crate::model::Capability;

/// The manifest format this host writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Prefix of a content-addressed component reference.
pub const SHA256_PREFIX: &str = "sha256:";

/// The ordered policies of one bundle revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub policies: Vec<ManifestPolicy>,
}

/// One policy of a manifest: a bundle entry with its name resolved and its component named by
/// content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManifestPolicy {
    pub name: String,
    /// `builtin:NAME` or `sha256:HEX`.
    pub component: String,
    pub capabilities: BTreeSet<Capability>,
    pub secrets: Option<BTreeSet<String>>,
    pub failure_mode: FailureMode,
    pub enabled: bool,
    pub deadline_ms: u64,
    pub memory_mib: u64,
    pub verdict_kib: u64,
    pub config: serde_json::Value,
}

/// Where a manifest's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentRef<'a> {
    Builtin(&'a str),
    /// Lower-case hex SHA-256 of the component's bytes.
    Stored(&'a str),
}

/// Why a manifest cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest: {0}")]
    Syntax(String),
    #[error("manifest version {found} is not one this ironhost reads ({MANIFEST_VERSION})")]
    Version { found: u32 },
    #[error("manifest policy #{index} ({name}): {reason}")]
    Policy {
        index: usize,
        name: String,
        reason: String,
    },
}

/// Whether `s` is a lower-case hex SHA-256.
fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ManifestPolicy {
    /// What `component` names.
    pub fn component_ref(&self) -> Option<ComponentRef<'_>> {
        if let Some(name) = self.component.strip_prefix(BUILTIN_PREFIX) {
            return Some(ComponentRef::Builtin(name));
        }
        self.component
            .strip_prefix(SHA256_PREFIX)
            .filter(|h| is_sha256(h))
            .map(ComponentRef::Stored)
    }

    /// The manifest policy of an admitted bundle entry named `name` whose component's bytes
    /// hash to `sha256`.
    pub fn from_entry(entry: &PolicyEntry, name: &str, sha256: &str) -> ManifestPolicy {
        let component = match entry.builtin_name() {
            Some(b) => format!("{BUILTIN_PREFIX}{b}"),
            None => format!("{SHA256_PREFIX}{sha256}"),
        };
        ManifestPolicy {
            name: name.to_owned(),
            component,
            capabilities: entry.capabilities.clone(),
            secrets: entry.secrets.clone(),
            failure_mode: entry.failure_mode,
            enabled: entry.enabled,
            deadline_ms: entry.deadline_ms,
            memory_mib: entry.memory_mib,
            verdict_kib: entry.verdict_kib,
            config: match &entry.config {
                serde_json::Value::Null => serde_json::json!({}),
                c => c.clone(),
            },
        }
    }

    /// The bundle entry to admit, with a stored component read from `components/HEX.wasm`.
    pub fn to_entry(&self, components: &Path) -> PolicyEntry {
        let component = match self.component_ref() {
            Some(ComponentRef::Stored(hex)) => components.join(format!("{hex}.wasm")),
            _ => PathBuf::from(&self.component),
        };
        PolicyEntry {
            name: Some(self.name.clone()),
            component,
            capabilities: self.capabilities.clone(),
            secrets: self.secrets.clone(),
            failure_mode: self.failure_mode,
            enabled: self.enabled,
            deadline_ms: self.deadline_ms,
            memory_mib: self.memory_mib,
            verdict_kib: self.verdict_kib,
            config: self.config.clone(),
        }
    }
}

impl Manifest {
    pub fn new(policies: Vec<ManifestPolicy>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            policies,
        }
    }

    /// Parse and check a stored manifest.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Names valid and unique, components well-formed, settings in range, configs objects.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version {
                found: self.version,
            });
        }
        let mut names = BTreeSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            let bad = |reason: String| ManifestError::Policy {
                index: i + 1,
                name: p.name.clone(),
                reason,
            };
            validate_name(&p.name).map_err(|r| bad(format!("name: {r}")))?;
            if !names.insert(p.name.as_str()) {
                return Err(bad("the name is used by an earlier policy".into()));
            }
            if p.component_ref().is_none() {
                return Err(bad(format!(
                    "component `{}` is neither `{BUILTIN_PREFIX}NAME` nor `{SHA256_PREFIX}` and 64 hex digits",
                    p.component
                )));
            }
            if !p.config.is_object() {
                return Err(bad("config: must be a JSON object".into()));
            }
            p.to_entry(Path::new(""))
                .check()
                .map_err(|(key, reason)| bad(format!("{key}: {reason}")))?;
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The policy named `name`.
    pub fn policy_mut(&mut self, name: &str) -> Option<&mut ManifestPolicy> {
        self.policies.iter_mut().find(|p| p.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.policies.iter().map(|p| p.name.as_str()).collect()
    }

    /// The SHA-256s of the stored components it names.
    pub fn stored_components(&self) -> impl Iterator<Item = &str> {
        self.policies
            .iter()
            .filter_map(|p| match p.component_ref() {
                Some(ComponentRef::Stored(h)) => Some(h),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, component: &str) -> ManifestPolicy {
        ManifestPolicy::from_entry(
            &PolicyEntry::for_component(PathBuf::from(component)),
            name,
            &"ab".repeat(32),
        )
    }

    #[test]
    fn a_manifest_round_trips_and_names_components_by_content() {
        let m = Manifest::new(vec![
            policy("budget", "builtin:budget"),
            policy("guard", "/tmp/guard.wasm"),
        ]);
        assert_eq!(m.policies[0].component, "builtin:budget");
        assert_eq!(
            m.policies[1].component,
            format!("sha256:{}", "ab".repeat(32))
        );
        let back = Manifest::parse(&m.to_json()).expect("parses");
        assert_eq!(back, m);
        assert_eq!(
            back.stored_components().collect::<Vec<_>>(),
            vec!["ab".repeat(32)]
        );
        let entry = back.policies[1].to_entry(Path::new("/home/components"));
        assert_eq!(
            entry.component,
            PathBuf::from(format!("/home/components/{}.wasm", "ab".repeat(32)))
        );
        assert_eq!(entry.name.as_deref(), Some("guard"));
    }

    #[test]
    fn bad_manifests_name_the_policy_and_the_reason() {
        let mut m = Manifest::new(vec![
            policy("a", "builtin:budget"),
            policy("a", "builtin:x"),
        ]);
        assert_eq!(
            m.check().unwrap_err().to_string(),
            "manifest policy #2 (a): the name is used by an earlier policy"
        );
        m.policies[1].name = "b".into();
        m.policies[1].component = "sha256:xyz".into();
        assert!(m.check().unwrap_err().to_string().contains("is neither"));
        m.policies[1].component = "builtin:x".into();
        m.policies[1].deadline_ms = 0;
        assert!(m.check().unwrap_err().to_string().contains("deadline-ms"));
        m.policies[1].deadline_ms = 10;
        m.policies[1].config = serde_json::json!([1]);
        assert!(m.check().unwrap_err().to_string().contains("config"));
        m.policies[1].config = serde_json::json!({});
        m.check().expect("valid now");
        m.version = 9;
        assert!(matches!(
            m.check(),
            Err(ManifestError::Version { found: 9 })
        ));
        assert!(Manifest::parse("{").is_err());
    }
}
