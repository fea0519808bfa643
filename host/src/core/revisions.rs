//! A process's bundle as revisions in the store.
//!
//! Every process that runs a bundle (an agent under `ironhost start`, the Python SDK,
//! `ironhost serve`) runs the **latest revision** of that bundle's name in its store, with its
//! own flags (`--budget`, `--safety-mode`, the SDK's `pii_detection=False`) applied on top.
//!
//! - At start ([`adopt`]), the bundle the process was given (a bundle.toml, or the embedded
//!   default) is compared with the revision last recorded *from a file* for that name: if it
//!   differs (or there is none), it is recorded as a new revision (source `file`), which every
//!   process of that bundle then follows; if it is the same, the process runs the latest
//!   revision, which includes the changes made through the control plane since.
//! - The control plane changes a bundle ([`change`]): upload, config, enable, disable, order,
//!   rollback. The new manifest is admitted in the process that makes the change (a change that
//!   would not load is refused before it is recorded), recorded as the next revision (refused
//!   if another landed meanwhile), and swapped in.
//! - Every other process notices the new revision through the store's change counters
//!   (`core::watch`) and [`follow`]s it: admits it (policies it did not change keep their
//!   instances and figures) and swaps it in; calls in flight finish on the old chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::live::LiveChain;
pub use super::running::{
    BundleRun, Overrides, Running, apply_overrides, manifest_of, policy_named,
};
use crate::events::EventKind;
use crate::model::Severity;
use crate::policy::admission::{admit_policy, component_bytes, own_name};
use crate::policy::bundle::{Bundle, PolicyEntry};
use crate::policy::chain::ChainState;
use crate::policy::engine::PolicyEngine;
use crate::policy::instance::LoadedPolicy;
use crate::policy::manifest::{ComponentRef, Manifest, ManifestPolicy};
use crate::store::Store;
use crate::store::fleet::{AppendError, NewRevision, Revision};

/// Why a change or a revision could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The change names something that is not there (404).
    #[error("{0}")]
    NotFound(String),
    /// The change itself is wrong (422): code and message.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// The new revision does not admit (422).
    #[error("{0}")]
    Admission(String),
    /// Another revision landed first (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

fn failed(what: &str) -> impl FnOnce(crate::store::StoreError) -> ChangeError + '_ {
    move |e| ChangeError::Failed(format!("{what}: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Write `bytes` as `dir/HEX.wasm` if it is not there yet (to a temporary name first, so a
/// reader never sees half a file).
pub fn keep_component(dir: &Path, hex: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let path = dir.join(format!("{hex}.wasm"));
    if path.is_file() {
        return Ok(path);
    }
    crate::policy::engine::private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{hex}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })?;
    Ok(path)
}

/// Make every stored component `manifest` names available in `dir`, checked against its hash.
async fn materialize(store: &Store, dir: &Path, manifest: &Manifest) -> Result<(), String> {
    for hex in manifest.stored_components() {
        if dir.join(format!("{hex}.wasm")).is_file() {
            continue;
        }
        let bytes = store
            .component(hex)
            .await
            .map_err(|e| format!("component sha256:{hex}: {e}"))?
            .ok_or_else(|| format!("component sha256:{hex} is not in the store"))?;
        if sha256_hex(&bytes) != hex {
            return Err(format!(
                "component sha256:{hex} in the store does not match its hash"
            ));
        }
        keep_component(dir, hex, &bytes)?;
    }
    Ok(())
}

/// Whether the running `old` policy can stand for `new` (same component, same settings),
/// whatever its on/off switch.
fn same_policy(old: &LoadedPolicy, new: &PolicyEntry, new_ref: &ComponentRef<'_>) -> bool {
    let same_component = match new_ref {
        ComponentRef::Builtin(b) => old.entry.builtin_name() == Some(*b),
        ComponentRef::Stored(hex) => old.entry.builtin_name().is_none() && old.sha256 == *hex,
    };
    let mut a = old.entry.clone();
    let mut b = new.clone();
    a.enabled = true;
    b.enabled = true;
    a.component = PathBuf::new();
    b.component = PathBuf::new();
    a.name = Some(old.name.clone());
    same_component && a == b
}

/// Admit `manifest` with `overrides` applied, reusing the policies of `current` it did not
/// change. Blocking (compiles and probes components).
fn admit_manifest(
    engine: &PolicyEngine,
    name: &str,
    manifest: &Manifest,
    overrides: &Overrides,
    components: &Path,
    current: &ChainState,
) -> Result<Vec<(Arc<LoadedPolicy>, bool)>, String> {
    let mut bundle = Bundle {
        name: name.to_owned(),
        dir: components.to_path_buf(),
        policies: manifest
            .policies
            .iter()
            .map(|p| p.to_entry(components))
            .collect(),
    };
    apply_overrides(&mut bundle, overrides)?;
    let mut out = Vec::with_capacity(bundle.policies.len());
    for entry in bundle.policies {
        let policy_name = entry.name.clone().unwrap_or_default();
        let reference = manifest
            .policies
            .iter()
            .find(|p| p.name == policy_name)
            .and_then(ManifestPolicy::component_ref)
            .ok_or_else(|| format!("policy `{policy_name}`: no component"))?;
        let enabled = entry.enabled;
        let kept = current
            .members
            .iter()
            .find(|m| m.policy.name == policy_name && same_policy(&m.policy, &entry, &reference))
            .map(|m| m.policy.clone());
        let policy = match kept {
            Some(p) => p,
            None => {
                admit_policy(engine, &entry).map_err(|e| format!("policy `{policy_name}`: {e}"))?
            }
        };
        out.push((policy, enabled));
    }
    Ok(out)
}

/// Admit `manifest` in `live`'s process (its stored components fetched first, its flags
/// applied), without swapping it in.
async fn admit_here(
    live: &LiveChain,
    store: &Store,
    manifest: &Manifest,
) -> Result<Vec<(Arc<LoadedPolicy>, bool)>, ChangeError> {
    let run = live.bundle.clone();
    materialize(store, &run.components, manifest)
        .await
        .map_err(ChangeError::Failed)?;
    let engine = live.engine.clone();
    let current = live.chain.snapshot();
    let overrides = run.overrides.lock().clone();
    let (name, components) = (run.name.clone(), run.components.clone());
    let m = manifest.clone();
    tokio::task::spawn_blocking(move || {
        admit_manifest(&engine, &name, &m, &overrides, &components, &current)
    })
    .await
    .map_err(|e| ChangeError::Failed(format!("admission: {e}")))?
    .map_err(ChangeError::Admission)
}

/// Admit `manifest` in `live`'s process and swap it in as revision `revision`. Returns the
/// chain's generation.
async fn install(
    live: &LiveChain,
    store: &Store,
    manifest: Manifest,
    revision: i64,
) -> Result<u64, ChangeError> {
    let run = live.bundle.clone();
    let policies = admit_here(live, store, &manifest).await?;
    let generation = live.chain.swap_members(run.name.clone(), policies);
    *run.running.lock() = Running { revision, manifest };
    Ok(generation)
}

fn announce(live: &LiveChain, revision: &Revision, generation: u64) {
    live.bus.publish(
        live.agent_id.as_deref().unwrap_or_default(),
        Severity::Info,
        EventKind::PolicyChanged {
            action: revision.action.clone(),
            policy: if revision.policy.is_empty() {
                revision.bundle.clone()
            } else {
                revision.policy.clone()
            },
            actor: revision.actor.clone(),
            generation,
            revision: Some(revision.revision),
        },
    );
}

/// What a change did, for its revision and its event.
#[derive(Debug, Clone)]
pub struct Edit {
    /// `added`, `replaced`, `enabled`, `disabled`, `reordered`, `configured`, `rolled-back`.
    pub action: &'static str,
    /// The policy it concerns ('' for the whole bundle).
    pub policy: String,
    /// In words.
    pub detail: String,
}

/// Run `revision` (of this process's bundle) if it is newer than the one running.
pub async fn follow(live: &LiveChain, store: &Store, revision: &Revision) -> Result<bool, String> {
    let run = live.bundle.clone();
    let _changing = run.changing.lock().await;
    if revision.revision <= run.running().revision {
        return Ok(false);
    }
    let manifest = Manifest::parse(&revision.manifest)
        .map_err(|e| format!("bundle `{}` revision {}: {e}", run.name, revision.revision))?;
    let generation = install(live, store, manifest, revision.revision)
        .await
        .map_err(|e| format!("bundle `{}` revision {}: {e}", run.name, revision.revision))?;
    tracing::info!(
        "bundle `{}`: now on revision {} ({} by {})",
        run.name,
        revision.revision,
        revision.detail,
        revision.actor
    );
    announce(live, revision, generation);
    Ok(true)
}

/// Run the latest revision of this process's bundle if it is not the one running.
pub async fn catch_up(live: &LiveChain, store: &Store) -> Result<bool, String> {
    match store
        .latest_revision(&live.bundle.name)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(latest) => follow(live, store, &latest).await,
        None => Ok(false),
    }
}

/// Change this process's bundle through the control plane: `edit` changes a copy of the
/// running manifest; the result is admitted here, recorded as the next revision (by `actor`,
/// described by `action`) and swapped in.
pub async fn change(
    live: &LiveChain,
    store: &Store,
    source: &str,
    actor: &str,
    edit: impl FnOnce(&mut Manifest) -> Result<Edit, ChangeError>,
) -> Result<Revision, ChangeError> {
    catch_up(live, store).await.map_err(ChangeError::Failed)?;
    let run = live.bundle.clone();
    let _changing = run.changing.lock().await;
    let base = run.running();
    let mut manifest = base.manifest.clone();
    let done = edit(&mut manifest)?;
    manifest
        .check()
        .map_err(|e| ChangeError::Invalid("invalid_change", e.to_string()))?;
    // Admitted before it is recorded: a revision that would not load is never recorded.
    let policies = admit_here(live, store, &manifest).await?;
    let json = manifest.to_json();
    let revision = store
        .append_revision(
            &NewRevision {
                bundle: &run.name,
                manifest: &json,
                source,
                action: done.action,
                policy: &done.policy,
                detail: &done.detail,
                actor,
            },
            base.revision,
        )
        .await
        .map_err(|e| match e {
            AppendError::Conflict { .. } => ChangeError::Conflict(format!("{e}; try again")),
            AppendError::Store(e) => ChangeError::Failed(format!("recording the revision: {e}")),
        })?;
    let generation = live.chain.swap_members(run.name.clone(), policies);
    *run.running.lock() = Running {
        revision: revision.revision,
        manifest,
    };
    announce(live, &revision, generation);
    Ok(revision)
}

/// Store an uploaded component's bytes (in the store and on disk); its `sha256:` reference.
pub async fn store_component(
    live: &LiveChain,
    store: &Store,
    bytes: &[u8],
) -> Result<String, ChangeError> {
    let hex = sha256_hex(bytes);
    store
        .put_component(&hex, bytes)
        .await
        .map_err(failed("storing the component"))?;
    keep_component(&live.bundle.components, &hex, bytes).map_err(ChangeError::Failed)?;
    Ok(hex)
}

/// Where a process's bundle came from, for the revision it records.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `the embedded default bundle`, `bundle.toml in DIR`.
    pub what: String,
    /// `ironhost start on HOST (pid N)`.
    pub actor: String,
}

/// At start: record the bundle this process was given if the store does not have it as its
/// latest file revision, else run the latest revision (see the module docs). `base` is the
/// bundle without this process's overrides; `live.chain` was admitted from it with them.
pub async fn adopt(
    live: &LiveChain,
    store: &Store,
    base: &Bundle,
    origin: &Origin,
) -> Result<(), String> {
    let manifest = base_manifest(live, store, base).await?;
    for _ in 0..20 {
        let latest_file = store
            .latest_file_revision(&base.name)
            .await
            .map_err(|e| e.to_string())?;
        let latest = store
            .latest_revision(&base.name)
            .await
            .map_err(|e| e.to_string())?;
        let recorded = latest_file
            .as_ref()
            .and_then(|r| Manifest::parse(&r.manifest).ok());
        match (latest_file, latest) {
            (Some(file), Some(latest)) if recorded.as_ref() == Some(&manifest) => {
                if latest.revision == file.revision {
                    *live.bundle.running.lock() = Running {
                        revision: latest.revision,
                        manifest,
                    };
                } else {
                    follow(live, store, &latest).await?;
                }
                return Ok(());
            }
            (_, latest) => {
                let json = manifest.to_json();
                let new = NewRevision {
                    bundle: &base.name,
                    manifest: &json,
                    source: "file",
                    action: "loaded",
                    policy: "",
                    detail: &format!("loaded {}", origin.what),
                    actor: &origin.actor,
                };
                match store
                    .append_revision(&new, latest.map_or(0, |r| r.revision))
                    .await
                {
                    Ok(rev) => {
                        tracing::info!(
                            "bundle `{}`: recorded revision {} from {}",
                            base.name,
                            rev.revision,
                            origin.what
                        );
                        *live.bundle.running.lock() = Running {
                            revision: rev.revision,
                            manifest,
                        };
                        return Ok(());
                    }
                    // Another process recorded one meanwhile: look again.
                    Err(AppendError::Conflict { .. }) => continue,
                    Err(AppendError::Store(e)) => return Err(e.to_string()),
                }
            }
        }
    }
    Err(format!(
        "bundle `{}`: the store's revisions kept changing while this process started",
        base.name
    ))
}

/// The manifest of `base` (no overrides): names from the admitted chain where it has the
/// policy, file components stored by content.
async fn base_manifest(live: &LiveChain, store: &Store, base: &Bundle) -> Result<Manifest, String> {
    let snap = live.chain.snapshot();
    let mut policies = Vec::with_capacity(base.policies.len());
    for entry in &base.policies {
        let admitted = snap
            .members
            .iter()
            .find(|m| m.policy.entry.component == entry.component);
        let (name, hex) = match (admitted, entry.builtin_name()) {
            (Some(m), _) => (m.policy.name.clone(), m.policy.sha256.clone()),
            (None, Some(b)) => (
                entry.name.clone().unwrap_or_else(|| b.to_owned()),
                String::new(),
            ),
            (None, None) => {
                let bytes = component_bytes(entry).map_err(|e| e.to_string())?;
                let name = match &entry.name {
                    Some(n) => n.clone(),
                    None => {
                        let engine = live.engine.clone();
                        let (path, b) = (entry.component.clone(), bytes.to_vec());
                        tokio::task::spawn_blocking(move || own_name(&engine, &path, &b))
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())?
                    }
                };
                (name, sha256_hex(&bytes))
            }
        };
        if entry.builtin_name().is_none() {
            let bytes = component_bytes(entry).map_err(|e| e.to_string())?;
            store
                .put_component(&hex, &bytes)
                .await
                .map_err(|e| format!("storing {}: {e}", entry.component.display()))?;
            keep_component(&live.bundle.components, &hex, &bytes)?;
        }
        policies.push(ManifestPolicy::from_entry(entry, &name, &hex));
    }
    let manifest = Manifest::new(policies);
    manifest.check().map_err(|e| e.to_string())?;
    Ok(manifest)
}
