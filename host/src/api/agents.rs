//! `agents`: what the store knows of every agent, its figures, and stopping one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::auth::{Admin, Reader};
use super::{ApiError, AppState};
use crate::core::watch::STALE_AFTER;
use crate::store::fleet::Instance;
use crate::store::queries::AgentRecord;

async fn find(state: &AppState, id: &str) -> Result<AgentRecord, ApiError> {
    state
        .store
        .agent(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no agent `{id}`")))
}

/// The processes running an agent (the fleet view): which machine, which process, when each
/// was last seen, and whether it is stale (not seen for [`STALE_AFTER`] though it never said
/// it ended: killed, or its machine is gone).
fn processes(instances: &[Instance], agent_id: &str, now: i64) -> Vec<serde_json::Value> {
    let stale_ms = STALE_AFTER.as_millis() as i64;
    instances
        .iter()
        .filter(|i| i.agent_id == agent_id)
        .map(|i| {
            let running = i.ended_ms.is_none();
            serde_json::json!({
                "instance": i.id,
                "host": i.host,
                "pid": i.pid,
                "runner": i.runner,
                "bundle": i.bundle,
                "revision": i.revision,
                "started_ms": i.started_ms,
                "last_seen_ms": i.last_seen_ms,
                "ended_ms": i.ended_ms,
                "running": running,
                "stale": running && now - i.last_seen_ms > stale_ms,
                "stop_requested_ms": i.stop_requested_ms,
            })
        })
        .collect()
}

/// How long an ended process stays in the fleet view.
const ENDED_SHOWN_MS: i64 = 24 * 3600 * 1000;

/// `GET /api/agents`: every agent with its figures and its processes on every machine
/// (`processes`; `host`, `pid`, `last_seen_ms` and `stale` of the newest one beside the agent).
pub async fn list(State(state): State<AppState>, _: Reader) -> Result<impl IntoResponse, ApiError> {
    sweep(&state).await;
    let instances = state.store.instances(None, ENDED_SHOWN_MS).await?;
    let now = crate::store::now_ms();
    let mut out = Vec::new();
    for a in state.store.agents().await? {
        let metrics = state.store.agent_metrics(&a).await?;
        let procs = processes(&instances, &a.id, now);
        let newest = procs.first().cloned().unwrap_or_default();
        out.push(serde_json::json!({
            "agent": a,
            "metrics": metrics,
            "host": newest.get("host"),
            "pid": newest.get("pid"),
            "last_seen_ms": newest.get("last_seen_ms"),
            "stale": newest.get("stale").and_then(serde_json::Value::as_bool).unwrap_or(false),
            "processes": procs,
        }));
    }
    Ok(Json(out))
}

/// `GET /api/agents/{id}`.
pub async fn show(
    State(state): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    sweep(&state).await;
    let a = find(&state, &id).await?;
    let instances = state.store.instances(Some(&id), ENDED_SHOWN_MS).await?;
    let mut body = serde_json::to_value(&a).unwrap_or_default();
    body["processes"] = processes(&instances, &id, crate::store::now_ms()).into();
    Ok(Json(body))
}

/// `GET /api/agents/{id}/metrics`: progress, success rate, throughput, latency, cost.
pub async fn metrics(
    State(state): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let a = find(&state, &id).await?;
    Ok(Json(state.store.agent_metrics(&a).await?))
}

/// Mark agents whose process is gone as failed before showing them.
async fn sweep(state: &AppState) {
    match state.store.sweep_lost(&crate::core::ids::host_name()).await {
        Ok(lost) => {
            for id in lost {
                tracing::warn!(
                    "agent {id} was left running by an ironhost process that ended without stopping it (killed?); marked failed"
                );
            }
        }
        Err(e) => tracing::warn!("cannot check for agents whose process is gone: {e}"),
    }
}

/// `POST /api/agents/{id}/stop` (admin): every process running the agent, on any machine, is
/// asked to stop through the store and sees it at its next heartbeat (within about a second).
/// Under `ironhost start` the agent then stops as on SIGTERM from a terminal: it sees
/// `KeyboardInterrupt`, runs its cleanup, and stops (143). An agent the Python SDK opened in a
/// program is stopped by its flag: its next call raises `KeyboardInterrupt`, and the rest of
/// the program runs on (in this process, at once).
pub async fn stop(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let a = find(&state, &id).await?;
    if !matches!(a.state.as_str(), "starting" | "running") {
        return Err(ApiError::conflict(format!(
            "agent `{id}` is not running (it is {})",
            a.state
        )));
    }
    let here = crate::core::runs::stop_in_process(&id);
    let asked = state.store.request_stop(&id, &caller.name).await?;
    if !here && asked == 0 {
        return Err(ApiError::conflict(format!(
            "agent `{id}`: no process of it is running"
        )));
    }
    tracing::warn!("agent {id} stopped through the API by {}", caller.name);
    Ok((
        StatusCode::ACCEPTED,
        Json(
            serde_json::json!({"agent_id": id, "state": "stopping", "processes": asked.max(u64::from(here))}),
        ),
    ))
}

/// Tell every process watching the store, on this machine or another, that `topic` changed
/// (`store::fleet`): they re-read it within about a second.
pub async fn announce(state: &AppState, topic: &str) {
    if let Err(e) = state.store.bump(topic).await {
        tracing::warn!("cannot announce the change ({topic}) to other processes: {e}");
    }
}
