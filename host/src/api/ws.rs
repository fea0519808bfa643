//! `/ws`: the live event stream. Each event is serialized once and shared by every client;
//! a client that falls behind is told how many events it missed and carries on, without
//! slowing anyone else.
//!
//! Authenticate with `Authorization: Bearer TOKEN` or `/ws?access_token=TOKEN` (browsers
//! cannot set headers on WebSocket requests). Messages are the bus's event JSON, plus
//! `{"type": "hello", ...}` first, `{"type": "lagged", "missed": N}` when events were lost, and
//! `{"type": "closing", "reason": "run_ended", ...}` last when the `ironhost start` serving it
//! ends with its run (then a close frame, code 1001).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use tokio::sync::broadcast;

use super::AppState;
use super::auth::WsCaller;
use crate::events::EventBus;
use crate::store::Store;

/// How long a leaving server waits for the client's answer to its close frame.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// How the last message of a control plane that ends with its run begins.
pub const CLOSING: &str = r#"{"type":"closing""#;

/// Events kept for a client that falls behind.
pub const FEED_CAPACITY: usize = 8192;
/// How often `ironhost serve` looks for events other processes stored.
pub const TAIL_EVERY: Duration = Duration::from_millis(100);

/// A new feed.
pub fn feed() -> broadcast::Sender<Arc<str>> {
    broadcast::channel(FEED_CAPACITY).0
}

/// How often the feed collects this process's bus. Polling keeps publishing free of wake-ups
/// on the call path; events still reach clients within this plus the send.
pub const COLLECT_EVERY: Duration = Duration::from_millis(20);

/// Forward this process's bus into the feed (serializing each event once, and only while
/// someone is connected).
pub fn feed_from_bus(bus: &EventBus, feed: broadcast::Sender<Arc<str>>) {
    let mut rx = bus.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(COLLECT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            loop {
                match rx.try_recv() {
                    Ok(event) => {
                        if feed.receiver_count() == 0 {
                            continue;
                        }
                        if let Ok(text) = serde_json::to_string(&*event) {
                            let _ = feed.send(Arc::from(text));
                        }
                    }
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        tracing::warn!(
                            "the live feed fell behind the bus; {n} events not streamed"
                        );
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Closed) => return,
                }
            }
        }
    });
}

/// Follow the store: events other processes write appear in the feed within [`TAIL_EVERY`]
/// plus their writer's batching.
pub fn feed_from_store(store: Store, feed: broadcast::Sender<Arc<str>>) {
    let mut rows = store.follow_events(TAIL_EVERY, "the live feed");
    tokio::spawn(async move {
        while let Some(row) = rows.recv().await {
            let _ = feed.send(Arc::from(row.to_string()));
        }
    });
}

/// How often an open connection's token is checked again: logout, revocation and expiry end
/// the stream within this.
pub const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// `GET /ws` (admin, viewer, agent).
pub async fn upgrade(
    State(state): State<AppState>,
    WsCaller { caller, token }: WsCaller,
    ws: WebSocketUpgrade,
) -> Response {
    let rx = state.feed.subscribe();
    ws.on_upgrade(move |socket| client(socket, rx, caller.name, state, token))
}

async fn client(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<Arc<str>>,
    who: String,
    state: AppState,
    token: String,
) {
    let every = state.ws_recheck;
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let hello =
        serde_json::json!({"type": "hello", "user": who, "version": env!("CARGO_PKG_VERSION")});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Ok(text) => {
                    if socket.send(Message::Text(Utf8Bytes::from(&*text))).await.is_err() {
                        return;
                    }
                    if text.starts_with(CLOSING) {
                        // The process is ending (see `serve::farewell`): leave cleanly.
                        let close = axum::extract::ws::CloseFrame {
                            code: 1001,
                            reason: Utf8Bytes::from_static("the run ended"),
                        };
                        let _ = socket.send(Message::Close(Some(close))).await;
                        // Wait for the client's reply, so the process does not end the
                        // connection (a reset) before the close frame is read.
                        let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, async {
                            while let Some(Ok(m)) = socket.recv().await {
                                if matches!(m, Message::Close(_)) {
                                    break;
                                }
                            }
                        })
                        .await;
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let note = serde_json::json!({"type": "lagged", "missed": n});
                    if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = recheck.tick() => {
                if let Err(e) = super::auth::authenticate(&state, &token).await {
                    let close = axum::extract::ws::CloseFrame {
                        code: 4401,
                        reason: Utf8Bytes::from(e.message.chars().take(120).collect::<String>()),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
