//! `policies`: the active chain in order, with each policy's figures; enable, disable,
//! reorder, and upload a component to add or replace a policy (after the same admission
//! checks as a bundle). Changes are atomic: calls in flight finish on the chain they started.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Caller, Reader};
use super::error::JsonBody;
use super::{ApiError, AppState};
use crate::core::live::LiveChain;
use crate::events::EventKind;
use crate::model::{Capability, Severity};
use crate::policy::admission::admit_bytes;
use crate::policy::bundle::{FailureMode, PolicyEntry, validate_name};

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
            }
        })
        .collect()
}

fn chain_body(live: &LiveChain) -> serde_json::Value {
    let snap = live.chain.snapshot();
    serde_json::json!({
        "bundle": snap.bundle,
        "generation": snap.generation,
        "agent_id": live.agent_id,
        "policies": views(live),
    })
}

fn announce(live: &LiveChain, caller: &Caller, action: &str, policy: &str, generation: u64) {
    tracing::info!(
        "policy {policy}: {action} by {} (chain generation {generation})",
        caller.name
    );
    live.bus.publish(
        live.agent_id.as_deref().unwrap_or(""),
        Severity::Info,
        EventKind::PolicyChanged {
            action: action.to_owned(),
            policy: policy.to_owned(),
            actor: caller.name.clone(),
            generation,
        },
    );
}

/// `GET /api/policies`: the chain in order.
pub async fn list(State(state): State<AppState>, _: Reader) -> Result<impl IntoResponse, ApiError> {
    match &state.live {
        Some(live) => Ok(Json(chain_body(live))),
        None => Ok(Json(
            serde_json::json!({"bundle": null, "generation": 0, "agent_id": null, "policies": []}),
        )),
    }
}

async fn set_enabled(
    state: AppState,
    caller: Caller,
    name: String,
    enabled: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let live = live(&state)?;
    let generation = live
        .chain
        .set_enabled(&name, enabled)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    announce(
        live,
        &caller,
        if enabled { "enabled" } else { "disabled" },
        &name,
        generation,
    );
    Ok(Json(chain_body(live)))
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
    let live = live(&state)?;
    let names: Vec<&str> = req.order.iter().map(String::as_str).collect();
    let generation = live
        .chain
        .reorder(&names)
        .map_err(|e| ApiError::unprocessable("bad_order", e.to_string()))?;
    announce(live, &caller, "reordered", &names.join(","), generation);
    Ok(Json(chain_body(live)))
}

/// The bundle entry the chain's policy `name` was admitted with, named.
fn entry_of(live: &LiveChain, name: &str) -> Option<PolicyEntry> {
    live.chain
        .snapshot()
        .members
        .iter()
        .find(|m| m.policy.name == name)
        .map(|m| {
            let mut e = m.policy.entry.clone();
            e.name = Some(m.policy.name.clone());
            e
        })
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

/// The entry to admit: the settings given, over those of the policy being replaced (same
/// name), over the bundle defaults.
fn entry_for(
    settings: UploadSettings,
    existing: Option<&PolicyEntry>,
    file_name: &str,
) -> Result<PolicyEntry, ApiError> {
    let mut entry = existing
        .cloned()
        .unwrap_or_else(|| PolicyEntry::for_component(file_name.into()));
    entry.component = format!("upload:{file_name}").into();
    if let Some(name) = settings.name {
        validate_name(&name).map_err(|m| invalid("name", m))?;
        entry.name = Some(name);
    }
    if let Some(c) = settings.capabilities {
        entry.capabilities = c.into_iter().collect();
    }
    if let Some(s) = settings.secrets {
        entry.secrets = Some(s.into_iter().collect());
    }
    if let Some(f) = settings.failure_mode {
        entry.failure_mode = f;
    }
    if let Some(e) = settings.enabled {
        entry.enabled = e;
    }
    if let Some(d) = settings.deadline_ms {
        entry.deadline_ms = d;
    }
    if let Some(m) = settings.memory_mib {
        entry.memory_mib = m;
    }
    if let Some(v) = settings.verdict_kib {
        entry.verdict_kib = v;
    }
    entry.check().map_err(|(key, m)| invalid(key, m))?;
    if let Some(c) = settings.config {
        if !c.is_object() {
            return Err(invalid("config", "must be a JSON object"));
        }
        entry.config = c;
    }
    Ok(entry)
}

/// `POST /api/policies` (admin), multipart: `component` (the `.wasm` file) and optionally
/// `settings` (JSON with the keys of a bundle entry). A policy named in `settings.name`, or
/// whose name the file carries, is replaced in place, keeping its settings unless new ones
/// are given; a component whose own name is in the chain replaces that policy with the
/// settings given; anything else is appended. Admission errors come back verbatim with 422.
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
    // Which policy does it replace? The name given, else the chain's policy the file is named
    // after (`pii-redact.wasm`, `pii_redact.wasm`); its settings carry over unless new ones
    // are given.
    let target = settings.name.clone().or_else(|| {
        let stem = std::path::Path::new(&file)
            .file_stem()
            .map(|s| s.to_string_lossy().replace('_', "-"))?;
        entry_of(&live, &stem).map(|_| stem)
    });
    let existing = target.as_deref().and_then(|n| entry_of(&live, n));
    let enabled = settings.enabled;
    let mut entry = entry_for(settings, existing.as_ref(), &file)?;
    if entry.name.is_none() {
        entry.name = target;
    }
    let engine = live.engine.clone();
    let policy = tokio::task::spawn_blocking(move || admit_bytes(&engine, &entry, &bytes))
        .await
        .map_err(|e| ApiError::internal("admission", e))?
        .map_err(|e| ApiError::unprocessable("admission_failed", e.to_string()))?;
    let name = policy.name.clone();
    let replaced = live
        .chain
        .snapshot()
        .members
        .iter()
        .any(|m| m.policy.name == name);
    let mut generation = live.chain.upsert_policy(Arc::new(policy));
    // A replaced policy keeps its on/off switch unless the upload says otherwise.
    if let Some(enabled) = enabled {
        generation = live
            .chain
            .set_enabled(&name, enabled)
            .map_err(|e| ApiError::internal("enabling the policy", e))?;
    }
    announce(
        &live,
        &caller,
        if replaced { "replaced" } else { "added" },
        &name,
        generation,
    );
    Ok(Json(chain_body(&live)))
}
