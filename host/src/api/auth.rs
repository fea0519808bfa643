//! Authentication and roles at the API edge: the extractors that admit callers by role, and
//! the `auth`, `users` and `tokens` routes.
//!
//! A caller presents `Authorization: Bearer TOKEN`, where TOKEN is an access JWT from
//! `auth/login` or an API token (`ih_...`). Only `/ws` also takes `?access_token=TOKEN`
//! (browsers cannot set headers on a WebSocket); a token in a REST URL would end up in logs and
//! browser history, so REST routes refuse it.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::error::JsonBody;
use super::{ApiError, AppState};
use crate::auth::jwt::{ACCESS_TTL_SECS, Claims, REFRESH_TTL_SECS, TokenType};
use crate::auth::{self as authn, Role};
use crate::crypto;
use crate::secrets::Actor;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The login session, for JWT callers (logout revokes it).
    pub session: Option<String>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.name.clone(),
            role: self.role,
        }
    }

    fn require(self, roles: &[Role]) -> Result<Caller, ApiError> {
        if roles.contains(&self.role) {
            Ok(self)
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; you are {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                self.role.as_str()
            )))
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The token of a REST request: `Authorization: Bearer TOKEN` only.
fn bearer(parts: &Parts) -> Result<Option<String>, ApiError> {
    let token = header_token(&parts.headers);
    if token.is_none() && query_token(&parts.uri).is_some() {
        return Err(ApiError::unauthorized(
            "`?access_token=` is for /ws only: send `Authorization: Bearer TOKEN`",
        ));
    }
    Ok(token)
}

fn header_token(headers: &axum::http::HeaderMap) -> Option<String> {
    let text = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_token(uri: &axum::http::Uri) -> Option<String> {
    axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri)
        .ok()?
        .0
        .remove("access_token")
}

/// The caller of `/ws` (any role), and the token they came with (checked again while the
/// connection lasts): `Authorization: Bearer TOKEN`, else `?access_token=TOKEN`.
#[derive(Debug, Clone)]
pub struct WsCaller {
    pub caller: Caller,
    pub token: String,
}

impl FromRequestParts<AppState> for WsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<WsCaller, ApiError> {
        let token = if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            header_token(&parts.headers)
        } else {
            query_token(&parts.uri)
        }
        .ok_or_else(|| {
            ApiError::unauthorized(
                "sign in: send `Authorization: Bearer TOKEN` or `?access_token=TOKEN`",
            )
        })?;
        let caller = authenticate(state, &token).await?;
        Ok(WsCaller { caller, token })
    }
}

/// Who holds `token`, if anyone.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    if token.starts_with(authn::TOKEN_PREFIX) {
        let record = state
            .store
            .token_by_digest(&authn::token_digest(token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked API token"))?;
        let role = Role::parse(&record.role).map_err(|e| ApiError::internal("token role", e))?;
        return Ok(Caller {
            name: format!("token:{}", record.name),
            role,
            session: None,
        });
    }
    let claims = state
        .signer
        .verify(token, now_secs())
        .map_err(|e| ApiError::unauthorized(format!("{e}; log in again")))?;
    if claims.typ != TokenType::Access {
        return Err(ApiError::unauthorized(
            "a refresh token cannot be used for requests",
        ));
    }
    if !state.store.session_live(&claims.sid).await? {
        return Err(ApiError::unauthorized(
            "the session has ended; log in again",
        ));
    }
    // The role is the user's now, not the one written in the token when it was made.
    let role = current_role(state, &claims.sub).await?;
    Ok(Caller {
        name: claims.sub,
        role,
        session: Some(claims.sid),
    })
}

/// The role user `name` has in the store now; 401 if the user is gone.
async fn current_role(state: &AppState, name: &str) -> Result<Role, ApiError> {
    let user = state.store.user_by_name(name).await?.ok_or_else(|| {
        ApiError::unauthorized(format!(
            "user `{}` no longer exists; log in again",
            crate::model::plain_text(name, 64)
        ))
    })?;
    Role::parse(&user.role).map_err(|e| ApiError::internal("user role", e))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let token = bearer(parts)?.ok_or_else(|| {
            ApiError::unauthorized("sign in: send `Authorization: Bearer TOKEN` (a login access token or an API token)")
        })?;
        authenticate(state, &token).await
    }
}

/// A caller with the admin role.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

/// A caller who may read: admin, viewer or agent.
#[derive(Debug, Clone)]
pub struct Reader(pub Caller);

/// A human reader: admin or viewer (not agents).
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, ApiError> {
        Ok(Admin(
            Caller::from_request_parts(parts, state)
                .await?
                .require(&[Role::Admin])?,
        ))
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Reader, ApiError> {
        Ok(Reader(
            Caller::from_request_parts(parts, state).await?.require(&[
                Role::Admin,
                Role::Viewer,
                Role::Agent,
            ])?,
        ))
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Operator, ApiError> {
        Ok(Operator(
            Caller::from_request_parts(parts, state)
                .await?
                .require(&[Role::Admin, Role::Viewer])?,
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub username: String,
    pub role: Role,
}

fn session_tokens(state: &AppState, username: &str, role: Role, sid: &str) -> (String, String) {
    let now = now_secs();
    let claims = |typ, ttl| Claims {
        sub: username.to_owned(),
        role,
        sid: sid.to_owned(),
        typ,
        iat: now,
        exp: now + ttl,
    };
    (
        state
            .signer
            .sign(&claims(TokenType::Access, ACCESS_TTL_SECS)),
        state
            .signer
            .sign(&claims(TokenType::Refresh, REFRESH_TTL_SECS)),
    )
}

/// `POST /api/auth/login`.
/// The client's address, when the server knows it (a router called directly does not).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let refused = || ApiError::unauthorized("wrong user name or password");
    // Throttled names and addresses are refused before any password is checked.
    if let Err(locked) = state.login_throttle.check(&req.username, address) {
        let secs = locked.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let user = crate::model::plain_text(&req.username, 64);
        tracing::warn!(
            user = user.as_str(),
            address = address.map(|a| a.to_string()).unwrap_or_default(),
            "login refused: too many failed logins for this {}",
            locked.what
        );
        return Err(ApiError::too_many(
            secs,
            format!(
                "too many failed logins for this {}; try again in {secs} s",
                locked.what
            ),
        ));
    }
    // Each check takes ~19 MiB and tens of ms: a flood of logins must not take the host down.
    let _permit = LOGIN_CHECKS
        .acquire()
        .await
        .map_err(|e| ApiError::internal("login", e))?;
    let user = state.store.user_by_name(&req.username).await?;
    let Some(user) = user else {
        // Spend the same time as a real check so names cannot be probed by timing.
        let _ = tokio::task::spawn_blocking(|| authn::verify_password("x", dummy_hash())).await;
        state.login_throttle.failed(&req.username, address);
        return Err(refused());
    };
    let hash = user.password_hash.clone();
    let password = zeroize::Zeroizing::new(req.password);
    let ok = tokio::task::spawn_blocking(move || authn::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        tracing::warn!(user = user.username.as_str(), "failed login");
        state.login_throttle.failed(&req.username, address);
        return Err(refused());
    }
    state.login_throttle.succeeded(&req.username);
    let role = Role::parse(&user.role).map_err(|e| ApiError::internal("user role", e))?;
    let sid = hex::encode(crypto::random::<16>().map_err(|e| ApiError::internal("randomness", e))?);
    let expires = crate::store::now_ms() + (REFRESH_TTL_SECS * 1000) as i64;
    state.store.create_session(&sid, user.id, expires).await?;
    let (access_token, refresh_token) = session_tokens(&state, &user.username, role, &sid);
    Ok(Json(TokenPair {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        username: user.username,
        role,
    }))
}

/// Password checks running at once, at most.
static LOGIN_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// A real Argon2id hash of a random password, so failed logins of unknown users take as
/// long as those of known ones.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        authn::generate_password()
            .and_then(|p| authn::hash_password(&p))
            .unwrap_or_default()
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `POST /api/auth/refresh`: a new access token for a live session.
pub async fn refresh(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let claims = state
        .signer
        .verify(&req.refresh_token, now_secs())
        .map_err(|e| ApiError::unauthorized(format!("{e}; log in again")))?;
    if claims.typ != TokenType::Refresh {
        return Err(ApiError::unauthorized("not a refresh token"));
    }
    if !state.store.session_live(&claims.sid).await? {
        return Err(ApiError::unauthorized(
            "the session has ended; log in again",
        ));
    }
    let role = current_role(&state, &claims.sub).await?;
    let (access_token, _) = session_tokens(&state, &claims.sub, role, &claims.sid);
    Ok(Json(TokenPair {
        access_token,
        refresh_token: req.refresh_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        username: claims.sub,
        role,
    }))
}

/// `POST /api/auth/logout`: ends the caller's session (its access and refresh tokens).
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    match &caller.session {
        Some(sid) => {
            state.store.revoke_session(sid).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::bad_request(
            "API tokens have no session to end; revoke the token instead (DELETE /api/tokens/{id})",
        )),
    }
}

/// `GET /api/auth/me`.
pub async fn me(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({"name": caller.name, "role": caller.role}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: String,
}

pub use crate::auth::MIN_PASSWORD_LEN;

fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_user",
            "username: use 1-64 letters, digits, `_`, `-`, `.` or `@`",
        ))
    }
}

/// `GET /api/users` (admin).
pub async fn list_users(
    State(state): State<AppState>,
    _: Admin,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.store.users().await?))
}

/// `POST /api/users` (admin).
pub async fn create_user(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<NewUser>,
) -> Result<impl IntoResponse, ApiError> {
    check_username(&req.username)?;
    let role = Role::parse(&req.role)
        .map_err(|e| ApiError::unprocessable("invalid_user", format!("role: {e}")))?;
    if req.password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::unprocessable(
            "invalid_user",
            format!("password: at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    let password = zeroize::Zeroizing::new(req.password);
    let hash = tokio::task::spawn_blocking(move || authn::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal("password hashing", e))?
        .map_err(|e| ApiError::internal("password hashing", e))?;
    let user = state
        .store
        .create_user(&req.username, &hash, role.as_str())
        .await?
        .ok_or_else(|| ApiError::conflict(format!("user `{}` exists", req.username)))?;
    tracing::info!(
        "user {} ({}) created by {}",
        user.username,
        user.role,
        caller.name
    );
    Ok((StatusCode::CREATED, Json(user)))
}

fn user_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("user id `{id}`: not a number")))
}

/// `PATCH /api/users/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: String,
}

const LAST_ADMIN: &str =
    "the installation's last admin cannot be removed or demoted; make another admin first";

/// `PATCH /api/users/{id}` (admin): change a user's role. It applies from the user's next
/// request (roles are read from the store on each one).
pub async fn change_user(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UserChange>,
) -> Result<impl IntoResponse, ApiError> {
    let id = user_id(&id)?;
    let role = Role::parse(&req.role)
        .map_err(|e| ApiError::unprocessable("invalid_user", format!("role: {e}")))?;
    match state.store.change_user(id, Some(role.as_str())).await? {
        Ok(Some(user)) => {
            tracing::warn!(
                "user {} is now {} (changed by {})",
                user.username,
                user.role,
                caller.name
            );
            Ok(Json(user))
        }
        Ok(None) => Err(ApiError::not_found(format!("no user {id}"))),
        Err(_) => Err(ApiError::conflict(LAST_ADMIN)),
    }
}

/// `DELETE /api/users/{id}` (admin): remove a user and end their sessions; their tokens stop
/// working at once.
pub async fn delete_user(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = user_id(&id)?;
    match state.store.change_user(id, None).await? {
        Ok(Some(user)) => {
            tracing::warn!("user {} removed by {}", user.username, caller.name);
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(None) => Err(ApiError::not_found(format!("no user {id}"))),
        Err(_) => Err(ApiError::conflict(LAST_ADMIN)),
    }
}

/// `DELETE /api/users/{id}/sessions` (admin): sign a user out everywhere: every access and
/// refresh token of their sessions stops working; the user may log in again.
pub async fn end_sessions(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = user_id(&id)?;
    let user = state
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    let ended = state.store.revoke_user_sessions(id).await?;
    tracing::warn!(
        "{ended} sessions of user {} ended by {}",
        user.username,
        caller.name
    );
    Ok(Json(
        serde_json::json!({"user_id": id, "sessions_ended": ended}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub role: String,
}

/// `GET /api/tokens` (admin): token records, never tokens.
pub async fn list_tokens(
    State(state): State<AppState>,
    _: Admin,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.store.tokens().await?))
}

/// `POST /api/tokens` (admin): the token is in this response and nowhere else, ever.
pub async fn create_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<NewToken>,
) -> Result<impl IntoResponse, ApiError> {
    if req.name.trim().is_empty() || req.name.len() > 128 {
        return Err(ApiError::unprocessable(
            "invalid_token",
            "name: 1-128 characters",
        ));
    }
    let role = Role::parse(&req.role)
        .map_err(|e| ApiError::unprocessable("invalid_token", format!("role: {e}")))?;
    let token = authn::new_api_token().map_err(|e| ApiError::internal("randomness", e))?;
    let record = state
        .store
        .create_token(
            req.name.trim(),
            &authn::token_digest(&token),
            role.as_str(),
            &caller.name,
        )
        .await?;
    let mut body = serde_json::to_value(&record).unwrap_or_default();
    if let Some(o) = body.as_object_mut() {
        o.insert("token".into(), token.into());
    }
    Ok((StatusCode::CREATED, Json(body)))
}

/// `DELETE /api/tokens/{id}` (admin).
pub async fn revoke_token(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("token id `{id}`: not a number")))?;
    if state.store.revoke_token(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no live token {id}")))
    }
}
