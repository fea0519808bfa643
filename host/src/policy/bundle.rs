//! The bundle manifest: `bundle.toml` in a bundle directory.
//!
//! ```toml
//! [bundle]
//! name = "default"                 # optional; defaults to the directory name
//!
//! [[policy]]                       # one table per policy, in chain order
//! component = "pii_redact.wasm"    # path relative to the bundle directory, or
//!                                  # "builtin:pii-redact" for a component built into ironhost
//! name = "pii-redact"              # optional; defaults to the component's own name
//! capabilities = ["log", "events"] # grants; anything else the component imports is refused
//! secrets = ["OPENAI_API_KEY"]     # optional, with the `secrets` capability: the names allowed
//! failure-mode = "fail-closed"     # fail-closed (default) | fail-open | monitor
//! enabled = true                   # optional, default true
//! deadline-ms = 10                 # optional, default 10
//! memory-mib = 32                  # optional, default 32
//! [policy.config]                  # passed to the policy as a JSON object
//! mode = "redact"
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Prefix of a built-in component reference in bundle.toml (`component = "builtin:budget"`).
pub const BUILTIN_PREFIX: &str = "builtin:";

use serde::{Deserialize, Serialize};

use crate::model::Capability;

/// The name of the manifest file inside a bundle directory.
pub const MANIFEST: &str = "bundle.toml";

/// Default per-call deadline of a hook, in milliseconds.
pub const DEFAULT_DEADLINE_MS: u64 = 10;
/// Default memory cap of one policy instance, in MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 32;
/// Largest deadline a bundle may set, in milliseconds.
pub const MAX_DEADLINE_MS: u64 = 10_000;
/// Largest memory cap a bundle may set, in MiB.
pub const MAX_MEMORY_MIB: u64 = 512;
/// Default verdict limit of a policy, in KiB: the most a verdict may add (see
/// [`PolicyEntry::verdict_kib`]).
pub const DEFAULT_VERDICT_KIB: u64 = 1024;
/// Largest verdict limit a bundle may set, in KiB.
pub const MAX_VERDICT_KIB: u64 = 64 * 1024;

/// What a policy failure (trap, missed deadline, memory limit) means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// The call is denied. The default: a broken safety policy must not let data through.
    #[default]
    FailClosed,
    /// The call goes on as if the policy had passed it.
    FailOpen,
    /// The policy is evaluated and reported but never enforced: its denials and rewrites are
    /// recorded, not applied, and its failures let the call go on.
    Monitor,
}

impl FailureMode {
    /// The kebab-case name used in bundle.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::FailClosed => "fail-closed",
            FailureMode::FailOpen => "fail-open",
            FailureMode::Monitor => "monitor",
        }
    }
}

/// One `[[policy]]` entry of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyEntry {
    /// Name in the chain: `name` from the manifest, else filled from the component at admission.
    pub name: Option<String>,
    /// Absolute or bundle-relative path resolved against the bundle directory, or
    /// `builtin:NAME` for a component built into the binary.
    pub component: PathBuf,
    /// Capabilities granted.
    pub capabilities: BTreeSet<Capability>,
    /// With the `secrets` capability: the secret names the policy may read (`None`: all).
    pub secrets: Option<BTreeSet<String>>,
    pub failure_mode: FailureMode,
    pub enabled: bool,
    pub deadline_ms: u64,
    pub memory_mib: u64,
    /// The most a verdict may add, in KiB: a fallback or tool result it answers with, or the
    /// growth of a request, response or tool arguments it rewrites. Checked before the host
    /// parses or keeps anything bigger.
    pub verdict_kib: u64,
    /// The `config` table as JSON.
    pub config: serde_json::Value,
}

impl PolicyEntry {
    /// The built-in component this entry names (`builtin:NAME`), if it names one.
    pub fn builtin_name(&self) -> Option<&str> {
        self.component
            .to_str()
            .and_then(|c| c.strip_prefix(BUILTIN_PREFIX))
    }

    /// Check the settings every entry must satisfy, wherever it comes from (a manifest, an
    /// upload): limits in range, secrets named only with the `secrets` capability and never
    /// blank. The error
    /// is (key, reason).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.deadline_ms == 0 || self.deadline_ms > MAX_DEADLINE_MS {
            return Err((
                "deadline-ms",
                format!("{} is out of range 1..={MAX_DEADLINE_MS}", self.deadline_ms),
            ));
        }
        if self.memory_mib == 0 || self.memory_mib > MAX_MEMORY_MIB {
            return Err((
                "memory-mib",
                format!("{} is out of range 1..={MAX_MEMORY_MIB}", self.memory_mib),
            ));
        }
        if self.verdict_kib == 0 || self.verdict_kib > MAX_VERDICT_KIB {
            return Err((
                "verdict-kib",
                format!("{} is out of range 1..={MAX_VERDICT_KIB}", self.verdict_kib),
            ));
        }
        if self.secrets.is_some() && !self.capabilities.contains(&Capability::Secrets) {
            return Err((
                "secrets",
                "names secrets, but the `secrets` capability is not granted".into(),
            ));
        }
        if let Some(bad) = self.secrets.iter().flatten().find(|n| n.trim().is_empty()) {
            return Err(("secrets", format!("{bad:?} is not a secret name")));
        }
        Ok(())
    }

    /// An entry for a single component file with defaults: used by `ironhost policy run FILE`.
    pub fn for_component(component: PathBuf) -> PolicyEntry {
        PolicyEntry {
            name: None,
            component,
            capabilities: BTreeSet::new(),
            secrets: None,
            failure_mode: FailureMode::default(),
            enabled: true,
            deadline_ms: DEFAULT_DEADLINE_MS,
            memory_mib: DEFAULT_MEMORY_MIB,
            verdict_kib: DEFAULT_VERDICT_KIB,
            config: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

/// A parsed bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub name: String,
    /// The bundle directory.
    pub dir: PathBuf,
    /// Policies in chain order.
    pub policies: Vec<PolicyEntry>,
}

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: cannot read bundle manifest: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: policy #{index} ({key}): {message}", path.display())]
    Invalid {
        path: PathBuf,
        index: usize,
        key: &'static str,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    bundle: RawBundle,
    #[serde(default)]
    policy: Vec<RawPolicy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    component: String,
    name: Option<String>,
    #[serde(default)]
    capabilities: Vec<Capability>,
    secrets: Option<Vec<String>>,
    #[serde(default)]
    failure_mode: FailureMode,
    #[serde(default = "yes")]
    enabled: bool,
    deadline_ms: Option<u64>,
    memory_mib: Option<u64>,
    verdict_kib: Option<u64>,
    #[serde(default)]
    config: toml::Table,
}

fn yes() -> bool {
    true
}

impl Bundle {
    /// Read `DIR/bundle.toml`. Component paths are resolved against `DIR`; the components
    /// themselves are read at admission.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        Bundle::parse(&text, dir, &path)
    }

    /// Parse manifest text. `path` is only used in error messages.
    pub fn parse(text: &str, dir: &Path, path: &Path) -> Result<Bundle, BundleError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            BundleError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let invalid = |index: usize, key: &'static str, message: String| BundleError::Invalid {
            path: path.to_path_buf(),
            index,
            key,
            message,
        };
        let mut names = BTreeSet::new();
        let mut policies = Vec::with_capacity(raw.policy.len());
        for (i, p) in raw.policy.into_iter().enumerate() {
            let index = i + 1;
            if p.component.trim().is_empty() {
                return Err(invalid(index, "component", "must not be empty".into()));
            }
            if let Some(name) = &p.name {
                validate_name(name).map_err(|m| invalid(index, "name", m))?;
                if !names.insert(name.clone()) {
                    return Err(invalid(
                        index,
                        "name",
                        format!("`{name}` is used by an earlier policy; names must be unique"),
                    ));
                }
            }
            let component = if p.component.starts_with(BUILTIN_PREFIX) {
                PathBuf::from(&p.component)
            } else {
                dir.join(&p.component)
            };
            let entry = PolicyEntry {
                name: p.name,
                component,
                capabilities: p.capabilities.into_iter().collect(),
                secrets: p.secrets.map(|names| names.into_iter().collect()),
                failure_mode: p.failure_mode,
                enabled: p.enabled,
                deadline_ms: p.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS),
                memory_mib: p.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
                verdict_kib: p.verdict_kib.unwrap_or(DEFAULT_VERDICT_KIB),
                config: serde_json::Value::Null,
            };
            entry.check().map_err(|(key, m)| invalid(index, key, m))?;
            let config = serde_json::to_value(&p.config)
                .map_err(|e| invalid(index, "config", e.to_string()))?;
            policies.push(PolicyEntry { config, ..entry });
        }
        let name = raw.bundle.name.unwrap_or_else(|| {
            dir.canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "bundle".to_owned())
        });
        Ok(Bundle {
            name,
            dir: dir.to_path_buf(),
            policies,
        })
    }
}

/// Policy names are identifiers in events, state keys and URLs: keep them simple.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid policy name: use 1-64 lower-case letters, digits, `-` or `_`, starting with a letter"
        ))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Bundle, BundleError> {
        Bundle::parse(text, Path::new("/b"), Path::new("/b/bundle.toml"))
    }

    #[test]
    fn full_entry_parses_with_config_and_defaults() {
        let b = parse(
            r#"
[bundle]
name = "demo"

[[policy]]
component = "a.wasm"
capabilities = ["log", "state"]
failure-mode = "monitor"
[policy.config]
limit = 5
words = ["x"]

[[policy]]
component = "/abs/b.wasm"
name = "b"
"#,
        )
        .expect("valid bundle");
        assert_eq!(b.name, "demo");
        assert_eq!(b.policies.len(), 2);
        let a = &b.policies[0];
        assert_eq!(a.component, PathBuf::from("/b/a.wasm"));
        assert_eq!(a.failure_mode, FailureMode::Monitor);
        assert_eq!(a.deadline_ms, DEFAULT_DEADLINE_MS);
        assert_eq!(a.memory_mib, DEFAULT_MEMORY_MIB);
        assert!(a.capabilities.contains(&Capability::State));
        assert_eq!(a.config["limit"], 5);
        let b2 = &b.policies[1];
        assert_eq!(b2.component, PathBuf::from("/abs/b.wasm"));
        assert_eq!(b2.failure_mode, FailureMode::FailClosed);
        assert!(b2.enabled);
    }

    #[test]
    fn unknown_key_reports_file_line_and_key() {
        let err = parse("[[policy]]\ncomponent = \"a.wasm\"\nfailure_mode = \"fail-open\"\n")
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(
            msg.starts_with("/b/bundle.toml:3:1: unknown field `failure_mode`"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_capability_and_mode_are_named() {
        let msg = parse("[[policy]]\ncomponent = \"a.wasm\"\ncapabilities = [\"network\"]\n")
            .expect_err("bad capability")
            .to_string();
        assert!(
            msg.contains("/b/bundle.toml:3:") && msg.contains("network"),
            "{msg}"
        );
        let msg = parse("[[policy]]\ncomponent = \"a.wasm\"\nfailure-mode = \"sometimes\"\n")
            .expect_err("bad mode")
            .to_string();
        assert!(msg.contains(":3:") && msg.contains("sometimes"), "{msg}");
    }

    #[test]
    fn duplicate_names_and_bad_limits_are_refused() {
        let msg = parse(
            "[[policy]]\ncomponent = \"a.wasm\"\nname = \"x\"\n[[policy]]\ncomponent = \"b.wasm\"\nname = \"x\"\n",
        )
        .expect_err("duplicate")
        .to_string();
        assert!(
            msg.contains("policy #2 (name)") && msg.contains("unique"),
            "{msg}"
        );
        let msg = parse("[[policy]]\ncomponent = \"a.wasm\"\ndeadline-ms = 0\n")
            .expect_err("zero deadline")
            .to_string();
        assert!(
            msg.contains("deadline-ms") && msg.contains("out of range"),
            "{msg}"
        );
        let msg = parse("[[policy]]\ncomponent = \"a.wasm\"\nname = \"Bad Name\"\n")
            .expect_err("bad name")
            .to_string();
        assert!(msg.contains("not a valid policy name"), "{msg}");
    }

    #[test]
    fn missing_component_is_reported() {
        let msg = parse("[[policy]]\nname = \"x\"\n")
            .expect_err("no component")
            .to_string();
        assert!(msg.contains("missing field `component`"), "{msg}");
    }
}
