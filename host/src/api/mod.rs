//! The control plane: a REST API under `/api`, a WebSocket at `/ws` and the web dashboard at
//! `/` (axum), bound to 127.0.0.1 by default. Every route names the roles it admits through its
//! extractor ([`auth::Admin`], [`auth::Reader`], [`auth::Caller`]); the route table in
//! `openapi.json` documents the same.
//!
//! `ironhost start` serves it in-process beside the agent; `ironhost serve` runs it alone and
//! follows the store for events other processes write.

mod agents;
pub mod auth;
pub mod dashboard;
mod error;
mod policies;
mod records;
mod secrets;
pub mod serve;
pub mod throttle;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::routing::{get, post};
use tokio::sync::broadcast;
use tower_http::cors::CorsLayer;

pub use error::ApiError;
pub use records::OPENAPI;

use crate::auth::jwt::Signer;
use crate::core::live::LiveChain;
use crate::secrets::SecretStore;
use crate::store::Store;

/// Origins of the dashboard's development server (Vite), allowed by CORS.
pub const DEV_ORIGINS: [&str; 2] = ["http://localhost:5173", "http://127.0.0.1:5173"];
/// Largest request body (a policy component upload), in bytes.
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// Everything a handler may use.
#[derive(Debug)]
pub struct Inner {
    pub store: Store,
    pub secrets: Arc<SecretStore>,
    pub signer: Signer,
    /// Events as JSON text, serialized once for every WebSocket client.
    pub feed: broadcast::Sender<Arc<str>>,
    pub live: Option<LiveChain>,
    pub started: Instant,
    /// How often an open WebSocket's token is checked again ([`ws::RECHECK_EVERY`]).
    pub ws_recheck: std::time::Duration,
    /// Failed logins by user name and address.
    pub login_throttle: throttle::LoginThrottle,
}

/// Shared state of the router.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The router: `/api/...`, `/ws`, and the dashboard for everything else.
pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(DEV_ORIGINS.map(HeaderValue::from_static))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    let api = Router::new()
        .route("/health", get(records::health))
        .route("/openapi.json", get(records::openapi))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/users", get(auth::list_users).post(auth::create_user))
        .route(
            "/users/{id}",
            axum::routing::patch(auth::change_user).delete(auth::delete_user),
        )
        .route(
            "/users/{id}/sessions",
            axum::routing::delete(auth::end_sessions),
        )
        .route("/tokens", get(auth::list_tokens).post(auth::create_token))
        .route("/tokens/{id}", axum::routing::delete(auth::revoke_token))
        .route("/agents", get(agents::list))
        .route("/agents/{id}", get(agents::show))
        .route("/agents/{id}/metrics", get(agents::metrics))
        .route("/agents/{id}/stop", post(agents::stop))
        .route("/policies", get(policies::list).post(policies::upload))
        .route("/policies/order", axum::routing::put(policies::reorder))
        .route("/policies/revisions", get(policies::revisions_list))
        .route("/policies/revisions/{n}", get(policies::revision_show))
        .route("/policies/rollback", post(policies::rollback))
        .route(
            "/policies/{name}/config",
            axum::routing::put(policies::set_config),
        )
        .route("/policies/{name}/enable", post(policies::enable))
        .route("/policies/{name}/disable", post(policies::disable))
        .route("/secrets", get(secrets::list))
        .route("/secrets/audit", get(secrets::audit))
        .route(
            "/secrets/{name}",
            get(secrets::show).put(secrets::put).delete(secrets::delete),
        )
        .route("/secrets/{name}/reveal", post(secrets::reveal))
        .route("/usage/aggregate", get(records::usage_aggregate))
        .route("/usage/by-agent/{id}", get(records::usage_by_agent))
        .route("/usage/by-model/{name}", get(records::usage_by_model))
        .route("/protection", get(records::protection))
        .route(
            "/limits",
            get(records::list_limits).post(records::create_limit),
        )
        .route(
            "/limits/{id}",
            get(records::show_limit)
                .put(records::update_limit)
                .delete(records::delete_limit),
        )
        .route("/traces", get(records::traces))
        .route("/traces/{id}", get(records::trace))
        .route("/events", get(records::events))
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::not_found);
    Router::new()
        .nest("/api", api)
        .route("/ws", get(ws::upgrade))
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(get(dashboard::serve))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(error::limit_uri))
        .layer(cors)
        .with_state(state)
}

/// A bound control plane.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Server {
    /// Bind `addr` (port 0 picks a free one).
    pub async fn bind(addr: &str, state: AppState) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Server {
            addr: listener.local_addr()?,
            listener,
            state,
        })
    }

    /// Serve until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            router(self.state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}
