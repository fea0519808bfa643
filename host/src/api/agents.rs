//! `agents`: what the store knows of every agent, its figures, and stopping one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::auth::{Admin, Reader};
use super::{ApiError, AppState};
use crate::store::queries::AgentRecord;

async fn find(state: &AppState, id: &str) -> Result<AgentRecord, ApiError> {
    state
        .store
        .agent(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no agent `{id}`")))
}

/// `GET /api/agents`: every agent with its figures.
pub async fn list(State(state): State<AppState>, _: Reader) -> Result<impl IntoResponse, ApiError> {
    sweep(&state).await;
    let mut out = Vec::new();
    for a in state.store.agents().await? {
        let metrics = state.store.agent_metrics(&a).await?;
        out.push(serde_json::json!({"agent": a, "metrics": metrics}));
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
    Ok(Json(find(&state, &id).await?))
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

/// The agent's host process, if it is still the one that registered it (same pid, same start
/// time: a recycled pid is never signalled).
pub fn live_process(a: &AgentRecord) -> Option<i64> {
    a.live_pid()
}

/// Mark agents whose process is gone as failed before showing them.
async fn sweep(state: &AppState) {
    match state.store.sweep_lost().await {
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

/// `POST /api/agents/{id}/stop` (admin): the agent's host gets SIGTERM, as from a terminal:
/// the agent sees `KeyboardInterrupt`, runs its cleanup, and stops (143). An agent the Python
/// SDK opened in this process is stopped by its flag instead: its next call raises
/// `KeyboardInterrupt`, and the rest of the program runs on.
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
    // An agent the Python SDK opened in this process: its calls stop, the program goes on.
    if crate::core::runs::stop_in_process(&id) {
        tracing::warn!("agent {id} stopped through the API by {}", caller.name);
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"agent_id": id, "state": "stopping"})),
        ));
    }
    let pid = live_process(&a)
        .ok_or_else(|| ApiError::conflict(format!("agent `{id}`: its ironhost process is gone")))?;
    // An SDK agent is one part of a Python program: SIGTERM would end the whole program.
    if a.runner == crate::store::queries::RUNNER_PYTHON_SDK {
        return Err(ApiError::conflict(format!(
            "agent `{id}` runs inside a Python program (the ironhost SDK, process {pid}); stop \
             it from that program (AgentRuntime.stop_agent, or leaving its block), or through \
             the control plane that program serves"
        )));
    }
    let target = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| ApiError::conflict(format!("agent `{id}`: bad process id {pid}")))?;
    rustix::process::kill_process(target, rustix::process::Signal::TERM)
        .map_err(|e| ApiError::internal("stopping the agent", e))?;
    tracing::warn!("agent {id} stopped through the API by {}", caller.name);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"agent_id": id, "state": "stopping"})),
    ))
}

/// Tell the agents other ironhost processes run (SIGUSR1) to re-read secrets and limits from
/// the store; this process follows its own changes directly.
pub async fn signal_agents(state: &AppState) {
    let me = i64::from(std::process::id());
    // SDK agents in this process each have their own store handle: they re-read it as an
    // agent in another process would.
    if crate::core::runs::any_in_process() {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR1);
    }
    let agents = match state.store.agents().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("cannot tell running agents about the change: {e}");
            return;
        }
    };
    // Whatever the state: a Python program whose protected function is between calls
    // (completed) still has its agent open and must follow.
    let pids: std::collections::BTreeSet<i64> = agents
        .iter()
        .filter_map(live_process)
        .filter(|p| *p != me)
        .collect();
    for pid in pids {
        if let Some(target) = rustix::process::Pid::from_raw(pid as i32)
            && let Err(e) = rustix::process::kill_process(target, rustix::process::Signal::USR1)
        {
            tracing::warn!("cannot signal the agent process {pid}: {e}");
        }
    }
}
