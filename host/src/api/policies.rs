//! `policies`: the active chain in order, with each policy's figures; enable, disable,
//! reorder, and upload a component to add or replace a policy (after the same admission
//! checks as a bundle). Changes are atomic: calls in flight finish on the chain they started.

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Caller, Reader};
use super::error::JsonBody;
use super::{ApiError, AppState};
use crate::core::live::LiveChain;
use crate::core::revisions::{self, ChangeError, Edit};
use crate::model::Capability;
use crate::policy::admission::own_name;
use crate::policy::bundle::{FailureMode, PolicyEntry, validate_name};
use crate::policy::manifest::{Manifest, ManifestPolicy, SHA256_PREFIX};
use crate::store::fleet::Revision;

/// One policy of the chain as the API shows it.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    pub order: usize,
    pub name: String,
    pub version: String,
    pub description: String,
    pub wit_version: Option<String>,
    pub sdk: Option<String>,
    pub hooks: Vec<String>,
    pub capabilities: Vec<Capability>,
    pub failure_mode: FailureMode,
    pub enabled: bool,
    pub status: &'static str,
    pub builtin: bool,
    pub sha256: String,
    pub deadline_ms: u64,
    pub memory_mib: u64,
    pub verdict_kib: u64,
    pub calls: u64,
    pub denials: u64,
    pub failures: u64,
    pub mean_latency_us: f64,
    /// `builtin:NAME` or `sha256:HEX`.
    pub component: String,
    /// The config as this process runs it (its flags, such as `--budget`, applied).
    pub config: serde_json::Value,
    /// The config as the bundle's revision has it.
    pub revision_config: serde_json::Value,
}

fn live(state: &AppState) -> Result<&LiveChain, ApiError> {
    state
        .live
        .as_ref()
        .ok_or_else(|| ApiError::conflict("this control plane runs no policy chain"))
}

fn views(live: &LiveChain) -> Vec<PolicyView> {
    let snap = live.chain.snapshot();
    snap.members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = &m.policy;
            let stats = p.stats.snapshot();
            PolicyView {
                order: i + 1,
                name: p.name.clone(),
                version: p.info.version.clone(),
                description: p.info.description.clone(),
                wit_version: p.summary.wit_version.clone(),
                sdk: p.summary.sdk.clone(),
                hooks: p.info.hooks.iter().map(|h| h.as_str().to_owned()).collect(),
                capabilities: p.entry.capabilities.iter().copied().collect(),
                failure_mode: p.entry.failure_mode,
                enabled: m.enabled,
                status: match (m.enabled, p.entry.failure_mode) {
                    (false, _) => "disabled",
                    (true, FailureMode::Monitor) => "monitoring",
                    (true, _) => "active",
                },
                builtin: p.entry.builtin_name().is_some(),
                sha256: p.sha256.clone(),
                deadline_ms: p.entry.deadline_ms,
                memory_mib: p.entry.memory_mib,
                verdict_kib: p.entry.verdict_kib,
                calls: stats.calls,
                denials: stats.denials,
                failures: stats.failures,
                mean_latency_us: stats.mean_latency_ns as f64 / 1000.0,
                component: String::new(),
                config: p.entry.config.clone(),
                revision_config: serde_json::Value::Null,
            }
        })
        .collect()
}

fn chain_body(live: &LiveChain) -> serde_json::Value {
    let snap = live.chain.snapshot();
    let running = live.bundle.running();
    let mut policies = views(live);
    // The settings as the revision has them (this process's flags apply on top, see config).
    for view in &mut policies {
        if let Some(p) = running
            .manifest
            .policies
            .iter()
            .find(|p| p.name == view.name)
        {
            view.component = p.component.clone();
            view.revision_config = p.config.clone();
        }
    }
    serde_json::json!({
        "bundle": snap.bundle,
        "revision": running.revision,
        "generation": snap.generation,
        "agent_id": live.agent_id,
        "policies": policies,
    })
}

/// The API error of a refused change.
fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::NotFound(m) => ApiError::not_found(m),
        ChangeError::Invalid(code, m) => ApiError::unprocessable(code, m),
        ChangeError::Admission(m) => ApiError::unprocessable("admission_failed", m),
        ChangeError::Conflict(m) => ApiError::conflict(m),
        ChangeError::Failed(m) => ApiError::internal("changing the bundle", m),
    }
}

/// Make a change as a new revision of the bundle; answer the chain as it is then.
async fn revise(
    state: &AppState,
    caller: &Caller,
    source: &str,
    edit: impl FnOnce(&mut Manifest) -> Result<Edit, ChangeError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let live = live(state)?;
    let revision = revisions::change(live, &state.store, source, &caller.name, edit)
        .await
        .map_err(change_error)?;
    tracing::info!(
        "bundle `{}` revision {}: {} by {}",
        revision.bundle,
        revision.revision,
        revision.detail,
        caller.name
    );
    Ok(Json(chain_body(live)))
}

fn unknown(name: &str) -> ChangeError {
    ChangeError::NotFound(format!("no policy named `{name}` in the chain"))
}

/// `GET /api/policies`: the chain in order.
pub async fn list(State(state): State<AppState>, _: Reader) -> Result<impl IntoResponse, ApiError> {
    match &state.live {
        Some(live) => Ok(Json(chain_body(live))),
        None => Ok(Json(
            serde_json::json!({"bundle": null, "revision": 0, "generation": 0, "agent_id": null, "policies": []}),
        )),
    }
}

async fn set_enabled(
    state: AppState,
    caller: Caller,
    name: String,
    enabled: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    revise(&state, &caller, "api", |m| {
        let p = m.policy_mut(&name).ok_or_else(|| unknown(&name))?;
        p.enabled = enabled;
        let action = if enabled { "enabled" } else { "disabled" };
        Ok(Edit {
            action,
            detail: format!("{action} {name}"),
            policy: name,
        })
    })
    .await
}

/// `POST /api/policies/{name}/enable` (admin).
pub async fn enable(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    set_enabled(state, caller, name, true).await
}

/// `POST /api/policies/{name}/disable` (admin).
pub async fn disable(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    set_enabled(state, caller, name, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub order: Vec<String>,
}

/// `PUT /api/policies/order` (admin): `{"order": [every policy name, in the new order]}`.
pub async fn reorder(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<Order>,
) -> Result<impl IntoResponse, ApiError> {
    revise(&state, &caller, "api", |m| {
        let mut wanted: Vec<&str> = req.order.iter().map(String::as_str).collect();
        let mut have = m.names();
        let chain = have.join(", ");
        wanted.sort_unstable();
        have.sort_unstable();
        if wanted != have {
            return Err(ChangeError::Invalid(
                "bad_order",
                format!("the new order must name every policy exactly once (chain: {chain})"),
            ));
        }
        let mut policies = std::mem::take(&mut m.policies);
        for name in &req.order {
            if let Some(i) = policies.iter().position(|p| &p.name == name) {
                m.policies.push(policies.remove(i));
            }
        }
        Ok(Edit {
            action: "reordered",
            policy: String::new(),
            detail: format!("reordered: {}", req.order.join(", ")),
        })
    })
    .await
}

/// `PUT /api/policies/{name}/config` (admin): the policy's whole `config` object, as JSON.
/// Admitted with the new config before it is recorded; the component stays.
pub async fn set_config(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    JsonBody(config): JsonBody<serde_json::Value>,
) -> Result<impl IntoResponse, ApiError> {
    if !config.is_object() {
        return Err(invalid("config", "must be a JSON object"));
    }
    revise(&state, &caller, "api", |m| {
        let p = m.policy_mut(&name).ok_or_else(|| unknown(&name))?;
        p.config = config;
        Ok(Edit {
            action: "configured",
            detail: format!("set the config of {name}"),
            policy: name,
        })
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct RevisionsQuery {
    pub limit: Option<i64>,
}

fn revision_body(r: &Revision) -> serde_json::Value {
    let manifest = Manifest::parse(&r.manifest).ok();
    serde_json::json!({
        "revision": r.revision,
        "source": r.source,
        "action": r.action,
        "policy": r.policy,
        "detail": r.detail,
        "actor": r.actor,
        "created_ms": r.created_ms,
        "policies": manifest.as_ref().map(|m| {
            m.policies.iter().map(|p| serde_json::json!({
                "name": p.name, "component": p.component, "enabled": p.enabled,
            })).collect::<Vec<_>>()
        }),
    })
}

/// `GET /api/policies/revisions?limit=N`: the bundle's revisions, newest first (50 unless
/// `limit` says otherwise, at most 500).
pub async fn revisions_list(
    State(state): State<AppState>,
    _: Reader,
    Query(q): Query<RevisionsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let live = live(&state)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is out of range 1..=500"
        )));
    }
    let list = state
        .store
        .revisions(&live.bundle.name, limit)
        .await
        .map_err(|e| ApiError::internal("reading revisions", e))?;
    Ok(Json(serde_json::json!({
        "bundle": live.bundle.name,
        "running": live.bundle.running().revision,
        "revisions": list.iter().map(revision_body).collect::<Vec<_>>(),
    })))
}

async fn stored_revision(state: &AppState, n: i64) -> Result<(Revision, Manifest), ApiError> {
    let live = live(state)?;
    let r = state
        .store
        .revision(&live.bundle.name, n)
        .await
        .map_err(|e| ApiError::internal("reading the revision", e))?
        .ok_or_else(|| {
            ApiError::not_found(format!("bundle `{}` has no revision {n}", live.bundle.name))
        })?;
    let m = Manifest::parse(&r.manifest)
        .map_err(|e| ApiError::internal(&format!("revision {n}"), e))?;
    Ok((r, m))
}

/// `GET /api/policies/revisions/{n}`: one revision with its whole manifest.
pub async fn revision_show(
    State(state): State<AppState>,
    _: Reader,
    Path(n): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let (r, m) = stored_revision(&state, n).await?;
    let mut body = revision_body(&r);
    body["bundle"] = r.bundle.clone().into();
    body["manifest"] = serde_json::to_value(&m).unwrap_or_default();
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub revision: i64,
}

/// `POST /api/policies/rollback` (admin): `{"revision": N}` records revision N's policies again
/// as the newest revision (history is never rewritten).
pub async fn rollback(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<Rollback>,
) -> Result<impl IntoResponse, ApiError> {
    let (_, old) = stored_revision(&state, req.revision).await?;
    revise(&state, &caller, "rollback", move |m| {
        *m = old;
        Ok(Edit {
            action: "rolled-back",
            policy: String::new(),
            detail: format!("rolled back to revision {}", req.revision),
        })
    })
    .await
}

/// The settings of an uploaded policy: the keys of a bundle's `[[policy]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UploadSettings {
    pub name: Option<String>,
    pub capabilities: Option<Vec<Capability>>,
    pub secrets: Option<Vec<String>>,
    pub failure_mode: Option<FailureMode>,
    pub enabled: Option<bool>,
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<u64>,
    pub verdict_kib: Option<u64>,
    pub config: Option<serde_json::Value>,
}

fn invalid(key: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable("invalid_settings", format!("settings.{key}: {message}"))
}

/// The manifest policy to record: the settings given, over those of the policy being replaced
/// (same name), over the bundle defaults.
fn policy_for(
    settings: UploadSettings,
    existing: Option<&ManifestPolicy>,
    name: &str,
    hex: &str,
) -> Result<ManifestPolicy, ApiError> {
    let mut p = existing.cloned().unwrap_or_else(|| {
        ManifestPolicy::from_entry(
            &PolicyEntry::for_component(std::path::PathBuf::from("upload.wasm")),
            name,
            hex,
        )
    });
    p.name = name.to_owned();
    p.component = format!("{SHA256_PREFIX}{hex}");
    if let Some(c) = settings.capabilities {
        p.capabilities = c.into_iter().collect();
    }
    if let Some(s) = settings.secrets {
        p.secrets = Some(s.into_iter().collect());
    }
    if let Some(f) = settings.failure_mode {
        p.failure_mode = f;
    }
    if let Some(e) = settings.enabled {
        p.enabled = e;
    }
    if let Some(d) = settings.deadline_ms {
        p.deadline_ms = d;
    }
    if let Some(m) = settings.memory_mib {
        p.memory_mib = m;
    }
    if let Some(v) = settings.verdict_kib {
        p.verdict_kib = v;
    }
    p.to_entry(std::path::Path::new(""))
        .check()
        .map_err(|(key, m)| invalid(key, m))?;
    if let Some(c) = settings.config {
        if !c.is_object() {
            return Err(invalid("config", "must be a JSON object"));
        }
        p.config = c;
    }
    Ok(p)
}

/// `POST /api/policies` (admin), multipart: `component` (the `.wasm` file) and optionally
/// `settings` (JSON with the keys of a bundle entry). The policy it replaces is the one named
/// `settings.name`, else the one with the component's own name (what its `describe` says; the
/// file's name plays no part): it keeps that policy's place and settings, except those given.
/// Otherwise it is appended with the settings given and defaults for the rest. The component is
/// stored by its SHA-256 and the change is a new revision of the bundle. Admission errors come
/// back verbatim with 422.
pub async fn upload(
    State(state): State<AppState>,
    Admin(caller): Admin,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<impl IntoResponse, ApiError> {
    // Not a multipart body: the error shape every other route answers with.
    let mut form = form.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "bad_request",
            format!("request body: {}", rejection.body_text()),
        )
    })?;
    let live = live(&state)?.clone();
    let mut component: Option<(String, Vec<u8>)> = None;
    let mut settings = UploadSettings::default();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?
    {
        match field.name().unwrap_or("") {
            "component" => {
                let file = field.file_name().unwrap_or("component.wasm").to_owned();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| ApiError::bad_request(format!("component: {e}")))?;
                component = Some((file, bytes.to_vec()));
            }
            "settings" => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| ApiError::bad_request(format!("settings: {e}")))?;
                let de = &mut serde_json::Deserializer::from_str(&text);
                settings = serde_path_to_error::deserialize(de).map_err(|e| {
                    let path = e.path().to_string();
                    invalid(if path == "." { "" } else { &path }, e.into_inner())
                })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field `{other}` (use `component` and `settings`)"
                )));
            }
        }
    }
    let (file, bytes) =
        component.ok_or_else(|| ApiError::bad_request("the form has no `component` file"))?;
    if let Some(name) = &settings.name {
        validate_name(name).map_err(|m| invalid("name", m))?;
    }
    // The policy it is: the name given, else the component's own.
    let name = match settings.name.clone() {
        Some(n) => n,
        None => {
            let engine = live.engine.clone();
            let b = bytes.clone();
            tokio::task::spawn_blocking(move || own_name(&engine, std::path::Path::new(&file), &b))
                .await
                .map_err(|e| ApiError::internal("admission", e))?
                .map_err(|e| ApiError::unprocessable("admission_failed", e.to_string()))?
        }
    };
    let hex = revisions::store_component(&live, &state.store, &bytes)
        .await
        .map_err(change_error)?;
    revise(&state, &caller, "api", move |m| {
        let existing = m.policies.iter().position(|p| p.name == name);
        let policy = policy_for(settings, existing.map(|i| &m.policies[i]), &name, &hex)
            .map_err(|e| ChangeError::Invalid("invalid_settings", e.message))?;
        let action = match existing {
            Some(i) => {
                m.policies[i] = policy;
                "replaced"
            }
            None => {
                m.policies.push(policy);
                "added"
            }
        };
        Ok(Edit {
            action,
            detail: format!("{action} {name} (sha256:{})", &hex[..12]),
            policy: name,
        })
    })
    .await
}
