//! The bundle a process runs: its name, the revision running, and the flags the process
//! applies on top of every revision ([`Overrides`]). Shared by the control plane
//! (`core::live`), the watcher and the revision logic (`core::revisions`).

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Settings;
use crate::policy::bundle::{Bundle, PolicyEntry};
use crate::policy::chain::{Chain, ChainState};
use crate::policy::manifest::{Manifest, ManifestPolicy};

/// What this process applies on top of every revision it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Policies left out, by name.
    pub without: Vec<String>,
    /// The `budget` policy's `limit-usd`.
    pub budget: Option<f64>,
    /// The `pii-redact` policy's `mode`.
    pub safety_mode: Option<String>,
}

impl Overrides {
    pub fn from_settings(settings: &Settings) -> Overrides {
        Overrides {
            without: settings.without.clone(),
            budget: settings.budget,
            safety_mode: settings.safety_mode.clone(),
        }
    }
}

/// Whether a bundle entry is the policy `name` (its given name, built-in name or file stem).
fn is_named(p: &PolicyEntry, name: &str) -> bool {
    p.name.as_deref() == Some(name)
        || p.builtin_name() == Some(name)
        || p.component.file_stem().and_then(|s| s.to_str()) == Some(name)
}

/// The bundle's policy `name`.
pub fn policy_named<'a>(bundle: &'a mut Bundle, name: &str) -> Option<&'a mut PolicyEntry> {
    bundle.policies.iter_mut().find(|p| is_named(p, name))
}

fn set_config(entry: &mut PolicyEntry, key: &str, value: serde_json::Value) {
    if !entry.config.is_object() {
        entry.config = serde_json::json!({});
    }
    if let Some(o) = entry.config.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

/// Apply `overrides` to `bundle`'s policies. The error names the flag and the reason.
pub fn apply_overrides(bundle: &mut Bundle, overrides: &Overrides) -> Result<(), String> {
    let bundle_name = bundle.name.clone();
    for name in &overrides.without {
        bundle.policies.retain(|p| !is_named(p, name));
    }
    if let Some(budget) = overrides.budget {
        let entry = policy_named(bundle, "budget").ok_or_else(|| {
            format!("budget: bundle `{bundle_name}` has no `budget` policy to apply a budget to")
        })?;
        set_config(entry, "limit-usd", serde_json::json!(budget));
    }
    if let Some(mode) = &overrides.safety_mode {
        let entry = policy_named(bundle, "pii-redact").ok_or_else(|| {
            format!(
                "safety-mode: bundle `{bundle_name}` has no `pii-redact` policy to set a mode on"
            )
        })?;
        set_config(entry, "mode", serde_json::json!(mode));
    }
    Ok(())
}

/// The revision a process runs.
#[derive(Debug, Clone)]
pub struct Running {
    /// 0 before the bundle is recorded in the store.
    pub revision: i64,
    pub manifest: Manifest,
}

/// The bundle a process runs: its name, the revision, the overrides, where stored components
/// are kept on disk. Shared by the control plane and the watcher.
#[derive(Debug)]
pub struct BundleRun {
    pub name: String,
    /// `<home>/components`: stored components as `HEX.wasm`, for admission.
    pub components: PathBuf,
    pub(super) running: Mutex<Running>,
    pub overrides: Mutex<Overrides>,
    /// Held while the chain is being changed to another revision: one change at a time.
    pub(super) changing: tokio::sync::Mutex<()>,
}

impl BundleRun {
    pub fn new(
        name: &str,
        components: PathBuf,
        running: Running,
        overrides: Overrides,
    ) -> Arc<BundleRun> {
        Arc::new(BundleRun {
            name: name.to_owned(),
            components,
            running: Mutex::new(running),
            overrides: Mutex::new(overrides),
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// A bundle not recorded in the store yet (revision 0), described by `chain`.
    pub fn unrecorded(chain: &Chain, components: PathBuf) -> Arc<BundleRun> {
        let snap = chain.snapshot();
        let manifest = manifest_of(&snap);
        BundleRun::new(
            &snap.bundle,
            components,
            Running {
                revision: 0,
                manifest,
            },
            Overrides::default(),
        )
    }

    /// The revision running now.
    pub fn running(&self) -> Running {
        self.running.lock().clone()
    }
}

/// The manifest of a chain as it runs (its entries as admitted, on/off as they are).
pub fn manifest_of(snap: &ChainState) -> Manifest {
    Manifest::new(
        snap.members
            .iter()
            .map(|m| {
                let mut p =
                    ManifestPolicy::from_entry(&m.policy.entry, &m.policy.name, &m.policy.sha256);
                p.enabled = m.enabled;
                p
            })
            .collect(),
    )
}
