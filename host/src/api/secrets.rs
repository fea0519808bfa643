//! `secrets`: list and read (masked for viewers and admins, in full for agents), reveal
//! (admins, audited), create/update (admins; a running agent's environment follows), soft
//! delete (admins), and the audit log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Caller, Operator, Reader};
use super::error::{JsonBody, QueryArgs};
use super::{ApiError, AppState};
use crate::auth::Role;
use crate::crypto;
use crate::secrets::{SecretMeta, validate_environment};

/// A secret as the API shows it: `value` is masked unless the caller may see it in full.
#[derive(Debug, Serialize)]
pub struct SecretView {
    #[serde(flatten)]
    pub meta: SecretMeta,
    pub value: String,
    pub masked: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvQuery {
    pub environment: Option<String>,
}

fn environment(q: &EnvQuery) -> Result<String, ApiError> {
    let env = q.environment.clone().unwrap_or_else(|| "dev".to_owned());
    validate_environment(&env)?;
    Ok(env)
}

/// The environment asked for and the secret's metadata, or 404 naming both.
fn find(state: &AppState, name: &str, q: &EnvQuery) -> Result<(String, SecretMeta), ApiError> {
    let env = environment(q)?;
    let meta = state
        .secrets
        .meta(&env, name)
        .ok_or_else(|| ApiError::not_found(format!("no secret `{name}` in environment `{env}`")))?;
    Ok((env, meta))
}

async fn view(state: &AppState, caller: &Caller, meta: SecretMeta) -> Result<SecretView, ApiError> {
    let value = state.secrets.value(&meta.environment, &meta.name)?;
    let full = caller.role == Role::Agent;
    if full {
        state
            .secrets
            .record(&meta.name, &meta.environment, "read", &caller.actor(), None)
            .await?;
    }
    Ok(SecretView {
        value: if full {
            value.to_string()
        } else {
            crypto::mask(&value)
        },
        masked: !full,
        meta,
    })
}

/// `GET /api/secrets[?environment=]`.
pub async fn list(
    State(state): State<AppState>,
    Reader(caller): Reader,
    QueryArgs(q): QueryArgs<EnvQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(env) = &q.environment {
        validate_environment(env)?;
    }
    let mut out = Vec::new();
    for meta in state.secrets.list(q.environment.as_deref()) {
        out.push(view(&state, &caller, meta).await?);
    }
    Ok(Json(out))
}

/// `GET /api/secrets/{name}?environment=dev`.
pub async fn show(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<EnvQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (_, meta) = find(&state, &name, &q)?;
    Ok(Json(view(&state, &caller, meta).await?))
}

/// `POST /api/secrets/{name}/reveal?environment=dev` (admin): the value in full, audited.
pub async fn reveal(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<EnvQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (env, meta) = find(&state, &name, &q)?;
    let value = state.secrets.value(&env, &name)?;
    state
        .secrets
        .record(&name, &env, "reveal", &caller.actor(), None)
        .await?;
    Ok(Json(SecretView {
        meta,
        value: value.to_string(),
        masked: false,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    pub value: String,
    pub environment: Option<String>,
}

/// `PUT /api/secrets/{name}` (admin): create, or update (rotate). 201 or 200, masked.
pub async fn put(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<PutSecret>,
) -> Result<impl IntoResponse, ApiError> {
    let env = req.environment.unwrap_or_else(|| "dev".to_owned());
    let value = zeroize::Zeroizing::new(req.value);
    let (meta, created) = state
        .secrets
        .put(&name, &env, &value, &caller.actor())
        .await?;
    super::agents::announce(&state, crate::store::fleet::TOPIC_SECRETS).await;
    tracing::info!(
        "secret {name} ({env}) {} by {}",
        if created { "created" } else { "updated" },
        caller.name
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SecretView {
            meta,
            value: crypto::mask(&value),
            masked: true,
        }),
    ))
}

/// `DELETE /api/secrets/{name}?environment=dev` (admin): soft delete.
pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<EnvQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let env = environment(&q)?;
    state.secrets.delete(&name, &env, &caller.actor()).await?;
    super::agents::announce(&state, crate::store::fleet::TOPIC_SECRETS).await;
    tracing::info!("secret {name} ({env}) deleted by {}", caller.name);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub secret_name: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /api/secrets/audit[?secret_name=]` (admin, viewer): newest first.
pub async fn audit(
    State(state): State<AppState>,
    _: Operator,
    QueryArgs(q): QueryArgs<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    Ok(Json(
        state
            .secrets
            .audit_log(q.secret_name.as_deref(), limit)
            .await?,
    ))
}
