//! Serving the control plane: the router state over a core's parts, binding the listen
//! address, and the control plane an agent's process serves beside its agent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast;

use super::{AppState, Inner, Server, ws};
use crate::auth::jwt::Signer;
use crate::config::ApiSettings;
use crate::core::Host;
use crate::core::live::LiveChain;
use crate::core::plane::Plane;

impl AppState {
    /// The router state over `plane`'s parts.
    pub fn new(
        plane: &Plane,
        live: Option<LiveChain>,
        feed: broadcast::Sender<Arc<str>>,
    ) -> AppState {
        AppState(Arc::new(Inner {
            store: plane.store.clone(),
            secrets: plane.secrets.clone(),
            signer: Signer::new(plane.keyring.jwt_key()),
            feed,
            live,
            started: Instant::now(),
            ws_recheck: ws::RECHECK_EVERY,
            login_throttle: Default::default(),
        }))
    }
}

/// Bind the API as `api` says. `Ok(None)`: the default address was busy (another ironhost
/// serves it) and the agent runs without its own control plane; a chosen address that is busy
/// is an error.
pub async fn bind(api: &ApiSettings, state: AppState) -> Result<Option<Server>, String> {
    match Server::bind(&api.listen, state).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && !api.explicit => {
            tracing::warn!(
                "control plane not started: {} is in use (is `ironhost serve` running?); use --listen ADDR to pick another",
                api.listen
            );
            Ok(None)
        }
        Err(e) => Err(format!("api.listen: cannot listen on {}: {e}", api.listen)),
    }
}

/// Where to point a browser.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

/// Serve the control plane beside the agent of `host`, on its runtime, unless the settings
/// turn it off; events reach WebSocket clients straight from the agent's bus. `Ok(None)`: not
/// served (off, or the default address busy); an error names the setting.
pub fn beside(host: &Host) -> Result<Option<SocketAddr>, String> {
    let core = &host.core;
    let api = &core.settings.api;
    if !api.enabled {
        return Ok(None);
    }
    let runtime = core.runtime();
    let _entered = runtime.enter();
    let feed = ws::feed();
    ws::feed_from_bus(&core.bus, feed.clone());
    let state = AppState::new(&core.plane, Some(core.live.clone()), feed);
    match runtime.block_on(bind(api, state))? {
        Some(server) => {
            let addr = server.addr;
            runtime.spawn(async move {
                if let Err(e) = server.run(std::future::pending()).await {
                    tracing::error!("control plane stopped: {e}");
                }
            });
            Ok(Some(addr))
        }
        None => Ok(None),
    }
}
