//! Following the store: every ironhost process watches the store's change counters
//! (`store::fleet`) and applies what other processes, on this machine or another, changed:
//! a new revision of its bundle (`bundle:NAME`), secrets (`secrets`), budget limits
//! (`limits`), stop requests (`stop`). A process running an agent also beats: it records that
//! it is alive (the fleet view's "last seen") and learns whether a stop was requested for it.
//!
//! The counters are read every [`POLL`] on SQLite; on PostgreSQL each change is also notified
//! (`LISTEN`/`NOTIFY`) and read at once, with a slower poll behind it ([`POLL_LISTENING`]). A
//! change is applied well within the design's bound of 1 s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::live::{self, LiveChain};
use super::revisions;
use crate::secrets::SecretStore;
use crate::store::Store;
use crate::store::fleet::{StopRequest, TOPIC_LIMITS, TOPIC_SECRETS, TOPIC_STOP, bundle_topic};

/// How often the change counters are read.
pub const POLL: Duration = Duration::from_millis(200);
/// How often they are read when the store also notifies changes (PostgreSQL).
pub const POLL_LISTENING: Duration = Duration::from_millis(1000);
/// How often a process running an agent records that it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// An instance not seen for this long is shown as stale (it may be gone without a word:
/// `kill -9`, a lost machine).
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// What a stop request does in this process.
pub type StopHandler = Box<dyn Fn(&StopRequest) + Send + Sync>;

/// The agent process a watcher beats for.
struct Beating {
    instance: String,
    on_stop: StopHandler,
    stopped: bool,
}

/// A process's watch on the store; dropped, the watch ends at its next round.
pub struct Watcher {
    beating: Mutex<Option<Beating>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Start watching (on the current runtime) for `live`'s process.
    pub fn spawn(live: LiveChain, store: Store, secrets: Arc<SecretStore>) -> Arc<Watcher> {
        let watcher = Arc::new(Watcher {
            beating: Mutex::new(None),
        });
        let weak = Arc::downgrade(&watcher);
        tokio::spawn(async move {
            let mut seen: Option<BTreeMap<String, i64>> = None;
            let mut last_beat: Option<Instant> = None;
            let mut failing = false;
            // PostgreSQL tells of changes as they commit; the counters are still read every
            // round (a notification can be missed while the listener reconnects), less often.
            let mut feed = store.change_feed();
            loop {
                match feed.as_mut() {
                    Some(f) => {
                        if let Ok(None) = tokio::time::timeout(POLL_LISTENING, f.recv()).await {
                            // The listener is gone: poll as on SQLite.
                            feed = None;
                        }
                    }
                    None => tokio::time::sleep(POLL).await,
                }
                let Some(watcher) = weak.upgrade() else {
                    return;
                };
                let counters = match store.change_counters().await {
                    Ok(c) => {
                        if failing {
                            tracing::info!("the store answers again: following its changes");
                            failing = false;
                        }
                        c.into_iter().collect::<BTreeMap<_, _>>()
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!("cannot read the store's changes: {e}");
                            failing = true;
                        }
                        continue;
                    }
                };
                let changed: Vec<String> = match &seen {
                    // The first round: catch up with whatever changed since this process read
                    // the store at start (every reload is a no-op if nothing did).
                    None => vec![
                        bundle_topic(&live.bundle.name),
                        TOPIC_SECRETS.to_owned(),
                        TOPIC_LIMITS.to_owned(),
                        TOPIC_STOP.to_owned(),
                    ],
                    Some(old) => counters
                        .iter()
                        .filter(|(t, s)| old.get(*t) != Some(*s))
                        .map(|(t, _)| t.clone())
                        .collect(),
                };
                seen = Some(counters);
                let mut beat_now = last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT);
                for topic in changed {
                    if topic == bundle_topic(&live.bundle.name) {
                        if let Err(e) = revisions::catch_up(&live, &store).await {
                            tracing::error!("{e}; this process keeps the chain it runs");
                        }
                    } else if topic == TOPIC_SECRETS {
                        match secrets.reload().await {
                            Ok(changed) if changed.is_empty() => {}
                            Ok(changed) => tracing::info!(
                                "secrets changed in the store: {}",
                                changed.join(", ")
                            ),
                            Err(e) => tracing::error!("cannot reload secrets: {e}"),
                        }
                    } else if topic == TOPIC_LIMITS {
                        if let Err(e) = live::reload_limit(&live, &store).await {
                            tracing::error!("cannot apply the stored limit: {e}");
                        }
                    } else if topic == TOPIC_STOP {
                        beat_now = true;
                    }
                }
                if beat_now && let Some(instance) = watcher.instance() {
                    last_beat = Some(Instant::now());
                    let revision = Some(live.bundle.running().revision).filter(|r| *r > 0);
                    match store.instance_seen(&instance, revision).await {
                        Ok(Some(stop)) => watcher.stop(&stop),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("cannot record the heartbeat: {e}"),
                    }
                }
            }
        });
        watcher
    }

    /// Beat for the agent process `instance`; `on_stop` runs once when a stop is requested.
    pub fn beat_for(&self, instance: String, on_stop: StopHandler) {
        *self.beating.lock() = Some(Beating {
            instance,
            on_stop,
            stopped: false,
        });
    }

    fn instance(&self) -> Option<String> {
        self.beating.lock().as_ref().map(|b| b.instance.clone())
    }

    fn stop(&self, request: &StopRequest) {
        let mut guard = self.beating.lock();
        if let Some(b) = guard.as_mut()
            && !b.stopped
        {
            b.stopped = true;
            tracing::warn!(
                "stop requested through the control plane by {}",
                request.actor
            );
            (b.on_stop)(request);
        }
    }
}
