//! Read-mostly routes over the store: health, the OpenAPI document, usage, protection,
//! limits (budgets), traces and events.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::agents::announce;
use super::auth::{Admin, Reader};
use super::error::{JsonBody, QueryArgs};
use super::{ApiError, AppState};
use crate::core::live::{Prepared, commit_limit, governs, prepare_limit};
use crate::store::fleet::TOPIC_LIMITS;
use crate::store::queries::{Usage, UsageFilter};

/// The OpenAPI document (checked in; a test keeps it in step with the router).
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/health` (anyone).
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "wit": "ironhost:policy@0.1.0",
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "agent_id": state.live.as_ref().and_then(|l| l.agent_id.clone()),
    }))
}

/// `GET /api/openapi.json` (anyone).
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinceQuery {
    /// Only calls at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
}

/// `GET /api/usage/aggregate`.
pub async fn usage_aggregate(
    State(state): State<AppState>,
    _: Reader,
    QueryArgs(q): QueryArgs<SinceQuery>,
) -> Result<impl IntoResponse, ApiError> {
    usage(&state, None, None, q).await
}

async fn usage(
    state: &AppState,
    agent_id: Option<String>,
    model: Option<String>,
    q: SinceQuery,
) -> Result<Json<Usage>, ApiError> {
    let filter = UsageFilter {
        agent_id,
        model,
        since_ms: q.since_ms,
    };
    Ok(Json(state.store.usage(&filter).await?))
}

/// `GET /api/usage/by-agent/{id}`.
pub async fn usage_by_agent(
    State(state): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<SinceQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if state.store.agent(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no agent `{id}`")));
    }
    usage(&state, Some(id), None, q).await
}

/// `GET /api/usage/by-model/{name}`.
pub async fn usage_by_model(
    State(state): State<AppState>,
    _: Reader,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<SinceQuery>,
) -> Result<impl IntoResponse, ApiError> {
    usage(&state, None, Some(name), q).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentQuery {
    pub agent_id: Option<String>,
}

/// `GET /api/protection`: PII findings by type and action, denials and circuit events.
pub async fn protection(
    State(state): State<AppState>,
    _: Reader,
    QueryArgs(q): QueryArgs<AgentQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let pii = state.store.pii_counts(q.agent_id.as_deref()).await?;
    let circuits = state
        .store
        .events(0, q.agent_id.as_deref(), Some("circuit_opened"), 100, true)
        .await?;
    let closed = state
        .store
        .events(0, q.agent_id.as_deref(), Some("circuit_closed"), 100, true)
        .await?;
    Ok(Json(serde_json::json!({
        "pii": pii,
        "circuit_opened": circuits,
        "circuit_closed": closed,
    })))
}

/// `GET /api/limits`.
pub async fn list_limits(
    State(state): State<AppState>,
    _: Reader,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.store.limits().await?))
}

fn limit_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("limit id `{id}`: not a number")))
}

/// `GET /api/limits/{id}`.
pub async fn show_limit(
    State(state): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = limit_id(&id)?;
    state
        .store
        .limit(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no limit {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitBody {
    /// Omitted: the global limit.
    pub agent_id: Option<String>,
    pub limit_usd: f64,
    /// Share of the limit at which the budget warns (default 0.9).
    pub warn_at: Option<f64>,
}

/// The largest limit, in USD (the `budget` policy's own ceiling).
const MAX_LIMIT_USD: f64 = 1e9;

fn check_limit(limit_usd: f64, warn_at: f64) -> Result<(), ApiError> {
    if !limit_usd.is_finite() || limit_usd < 0.0 {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("limit_usd: {limit_usd} is not a non-negative amount"),
        ));
    }
    if limit_usd > MAX_LIMIT_USD {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("limit_usd: {limit_usd:e} is more than the largest limit, {MAX_LIMIT_USD:.0}"),
        ));
    }
    if !(warn_at > 0.0 && warn_at <= 1.0) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("warn_at: {warn_at} is not in (0, 1]"),
        ));
    }
    Ok(())
}

/// The running agent's `budget` policy admitted with a new limit, ready to swap in: done before
/// the limit is saved, so a limit that cannot apply is refused whole.
async fn prepare(
    state: &AppState,
    scope: Option<&str>,
    limit_usd: f64,
    warn_at: f64,
) -> Result<Option<Prepared>, ApiError> {
    let Some(live) = &state.live else {
        return Ok(None);
    };
    if !governs(live, &state.store, scope).await? {
        return Ok(None);
    }
    prepare_limit(live, limit_usd, warn_at)
        .await
        .map_err(|e| ApiError::unprocessable("admission_failed", e))
}

/// `POST /api/limits` (admin): 201, or 409 if that scope has a limit.
pub async fn create_limit(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<LimitBody>,
) -> Result<impl IntoResponse, ApiError> {
    let warn_at = req.warn_at.unwrap_or(0.9);
    if let Some(id) = &req.agent_id {
        crate::core::ids::check_agent_id(id)
            .map_err(|e| ApiError::unprocessable("invalid_limit", format!("agent_id: {e}")))?;
    }
    check_limit(req.limit_usd, warn_at)?;
    let prepared = prepare(&state, req.agent_id.as_deref(), req.limit_usd, warn_at).await?;
    let limit = state
        .store
        .create_limit(req.agent_id.as_deref(), req.limit_usd, warn_at)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(match &req.agent_id {
                Some(a) => format!("agent `{a}` has a limit; update it instead"),
                None => "there is a global limit; update it instead".to_owned(),
            })
        })?;
    if let (Some(p), Some(live)) = (prepared, &state.live) {
        commit_limit(live, &state.store, p, &caller.name).await;
    }
    announce(&state, TOPIC_LIMITS).await;
    Ok((StatusCode::CREATED, Json(limit)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitUpdate {
    pub limit_usd: f64,
    pub warn_at: Option<f64>,
}

/// `PUT /api/limits/{id}` (admin).
pub async fn update_limit(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<LimitUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    let id = limit_id(&id)?;
    let current = state
        .store
        .limit(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no limit {id}")))?;
    let warn_at = req.warn_at.unwrap_or(current.warn_at);
    check_limit(req.limit_usd, warn_at)?;
    let prepared = prepare(&state, current.agent_id.as_deref(), req.limit_usd, warn_at).await?;
    let limit = state
        .store
        .update_limit(id, req.limit_usd, warn_at)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no limit {id}")))?;
    if let (Some(p), Some(live)) = (prepared, &state.live) {
        commit_limit(live, &state.store, p, &caller.name).await;
    }
    announce(&state, TOPIC_LIMITS).await;
    Ok(Json(limit))
}

/// `DELETE /api/limits/{id}` (admin). A running agent keeps its current limit.
pub async fn delete_limit(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = limit_id(&id)?;
    match state.store.delete_limit(id).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found(format!("no limit {id}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    pub agent_id: Option<String>,
    pub before_ms: Option<i64>,
    pub limit: Option<i64>,
}

/// `GET /api/traces`: recent calls, newest first.
pub async fn traces(
    State(state): State<AppState>,
    _: Reader,
    QueryArgs(q): QueryArgs<TraceQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        state
            .store
            .traces(q.agent_id.as_deref(), q.before_ms, limit)
            .await?,
    ))
}

/// `GET /api/traces/{id}`: one call with every policy's verdict and latency.
pub async fn trace(
    State(state): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state
        .store
        .trace(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no call `{id}`")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events with a larger id (for paging forward).
    pub after: Option<i64>,
    pub agent_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/events`: stored events; without `after`, the newest (newest first), with
/// `after`, those after it (oldest first).
pub async fn events(
    State(state): State<AppState>,
    _: Reader,
    QueryArgs(q): QueryArgs<EventQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let newest = q.after.is_none();
    let rows = state
        .store
        .events(
            q.after.unwrap_or(0),
            q.agent_id.as_deref(),
            q.kind.as_deref(),
            limit,
            newest,
        )
        .await?;
    Ok(Json(rows.into_iter().map(Arc::new).collect::<Vec<_>>()))
}
