//! Serving the control plane: the router state over a core's parts, binding the listen
//! address, and the control plane an agent's process serves beside its agent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// turn it off; events reach WebSocket clients straight from the agent's bus. Sets
/// `host.api_addr` (and the feed [`farewell`] uses); `Ok(())` with no address: not served (off,
/// or the default address busy); an error names the setting.
pub fn beside(host: &mut Host) -> Result<(), String> {
    let core = &host.core;
    let api = &core.settings.api;
    if !api.enabled {
        return Ok(());
    }
    let runtime = core.runtime();
    let _entered = runtime.enter();
    let feed = ws::feed();
    ws::feed_from_bus(&core.bus, feed.clone());
    let state = AppState::new(&core.plane, Some(core.live.clone()), feed.clone());
    if let Some(server) = runtime.block_on(bind(api, state))? {
        host.api_addr = Some(server.addr);
        runtime.spawn(async move {
            if let Err(e) = server.run(std::future::pending()).await {
                tracing::error!("control plane stopped: {e}");
            }
        });
        host.api_feed = Some(feed);
    }
    Ok(())
}

/// The longest the end of a run waits for its dashboard clients to take their leave.
const FAREWELL_WAIT: Duration = Duration::from_millis(1500);

/// The run of `host` ended and its control plane ends with the process: once the last events
/// are on the feed, tell each WebSocket client so (`{"type": "closing", "reason": "run_ended",
/// agent_id, state, exit_code, ts_ms}`, then a close frame, code 1001) and wait a moment for
/// them to go, so a dashboard shows the run's end instead of a lost connection.
pub fn farewell(host: &Host) {
    let Some(feed) = &host.api_feed else {
        return;
    };
    if feed.receiver_count() == 0 {
        return;
    }
    let id = host.gateway.agent().agent_id.clone();
    let store = host.core.plane.store.clone();
    let feed = feed.clone();
    host.core.runtime().block_on(async move {
        // The bus is collected every COLLECT_EVERY: two rounds put the last events on the feed.
        tokio::time::sleep(ws::COLLECT_EVERY * 2).await;
        let record = store.agent(&id).await.ok().flatten();
        let rest = serde_json::json!({
            "reason": "run_ended",
            "agent_id": id,
            "state": record.as_ref().map(|a| a.state.clone()),
            "exit_code": record.as_ref().and_then(|a| a.exit_code),
            "ts_ms": crate::store::now_ms(),
        })
        .to_string();
        // `type` first: the WebSocket clients know the goodbye by how it begins.
        let note = format!("{}{}", ws::CLOSING, rest.replacen('{', ",", 1));
        let _ = feed.send(Arc::from(note));
        let deadline = tokio::time::Instant::now() + FAREWELL_WAIT;
        while feed.receiver_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
