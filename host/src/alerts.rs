//! Alert webhooks: events of chosen types POSTed as JSON to an operator's endpoint
//! (`[[alerts.webhook]]` in `ironhost.toml`), such as a budget warning to a chat channel.
//!
//! Delivery never touches the call path: a task collects what the event bus published (as the
//! store's recorder does) and posts each matching event, with a timeout and retries. The body
//! is the event exactly as the WebSocket streams it; PII values are never in events.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use crate::events::{Event, EventBus};

/// Every event type a webhook can ask for (the `type` field of events, [`EventKind::type_name`]).
///
/// [`EventKind::type_name`]: crate::events::EventKind::type_name
pub const EVENT_TYPES: [&str; 18] = [
    "agent_started",
    "agent_stopped",
    "llm_call",
    "tool_call",
    "cost_update",
    "pii_finding",
    "budget_warning",
    "budget_exceeded",
    "circuit_opened",
    "circuit_closed",
    "policy_failure",
    "agent_progress",
    "unit_done",
    "prompt_injection",
    "egress_refused",
    "secrets_rotated",
    "policy_changed",
    "policy",
];

/// What a webhook receives when it names no events: the ones an operator acts on.
pub const DEFAULT_EVENTS: [&str; 4] = [
    "budget_warning",
    "budget_exceeded",
    "circuit_opened",
    "policy_failure",
];

/// Attempts per delivery; the wait doubles from [`FIRST_BACKOFF`] between them.
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How often the sender collects what the bus published.
const COLLECT_EVERY: Duration = Duration::from_millis(50);

/// `[alerts]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertsConfig {
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
}

/// `[[alerts.webhook]]`: one endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookConfig {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Event types to send (default [`DEFAULT_EVENTS`]).
    pub events: Option<Vec<String>>,
    /// Per attempt (default 5000).
    pub timeout_ms: Option<u64>,
}

impl WebhookConfig {
    fn wants(&self, kind: &str) -> bool {
        match &self.events {
            Some(list) => list.iter().any(|e| e == kind),
            None => DEFAULT_EVENTS.contains(&kind),
        }
    }
}

impl AlertsConfig {
    /// Why this configuration cannot work, if it cannot: `(key, reason)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (i, w) in self.webhook.iter().enumerate() {
            let key = |field: &str| format!("alerts.webhook[{i}].{field}");
            match reqwest::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => {
                    return Err((
                        key("url"),
                        format!("`{}` is not an http(s) URL with a host", w.url),
                    ));
                }
                Err(e) => return Err((key("url"), format!("`{}` is not a URL: {e}", w.url))),
            }
            if let Some(events) = &w.events {
                if events.is_empty() {
                    return Err((
                        key("events"),
                        "is empty; leave it out for the default events".to_owned(),
                    ));
                }
                if let Some(bad) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
                    return Err((
                        key("events"),
                        format!(
                            "`{bad}` is not an event type; the types are {}",
                            EVENT_TYPES.join(", ")
                        ),
                    ));
                }
            }
            if w.timeout_ms == Some(0) {
                return Err((key("timeout-ms"), "must be more than 0".to_owned()));
            }
        }
        Ok(())
    }
}

/// The running sender.
#[derive(Debug, Clone)]
pub struct Alerts {
    sent: watch::Receiver<u64>,
}

impl Alerts {
    /// Send `bus`'s events to the configured webhooks, on the current runtime; `None` when no
    /// webhook is configured.
    pub fn spawn(config: &AlertsConfig, bus: &EventBus) -> Result<Option<Alerts>, String> {
        if config.webhook.is_empty() {
            return Ok(None);
        }
        // One process-wide TLS provider (the LLM client installs the same one; a second
        // install is harmless). Without it, an https webhook could not be reached in
        // simulator mode, where no LLM client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("ironhost/", env!("CARGO_PKG_VERSION")))
            // A redirect would turn the POST into a GET that looks delivered.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("alert webhooks: cannot build the HTTP client: {e}"))?;
        let rx = bus.subscribe();
        let (tx, sent) = watch::channel(bus.last_seq());
        tokio::spawn(run(client, config.webhook.clone(), rx, tx));
        Ok(Some(Alerts { sent }))
    }

    /// Wait (at most `timeout`) until every event up to `seq` is delivered or given up on.
    pub async fn flush(&self, seq: u64, timeout: Duration) -> bool {
        let mut s = self.sent.clone();
        tokio::time::timeout(timeout, s.wait_for(|done| *done >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn run(
    client: reqwest::Client,
    hooks: Vec<WebhookConfig>,
    mut rx: broadcast::Receiver<Arc<Event>>,
    sent: watch::Sender<u64>,
) {
    let mut tick = tokio::time::interval(COLLECT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            let event = match rx.try_recv() {
                Ok(e) => e,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!("alert webhooks fell behind the event bus; {n} events skipped");
                    continue;
                }
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Closed) => return,
            };
            let kind = event.kind.type_name();
            let targets: Vec<&WebhookConfig> = hooks.iter().filter(|h| h.wants(kind)).collect();
            if !targets.is_empty() {
                match serde_json::to_vec(&*event) {
                    Ok(body) => {
                        for hook in targets {
                            deliver(&client, hook, kind, &body).await;
                        }
                    }
                    Err(e) => tracing::warn!("alert webhooks: cannot encode {kind}: {e}"),
                }
            }
            sent.send_modify(|done| *done = (*done).max(event.seq));
        }
    }
}

/// Where a webhook goes, for logs: scheme, host and port only. Chat webhooks (Slack, Teams)
/// carry their secret in the path.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/…",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// Post `body` to `hook`, retrying timeouts, connection failures, 429 and 5xx.
async fn deliver(client: &reqwest::Client, hook: &WebhookConfig, kind: &str, body: &[u8]) {
    let timeout = Duration::from_millis(hook.timeout_ms.unwrap_or(5000));
    let mut wait = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(&hook.url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("x-ironhost-event", kind)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::debug!("alert webhook {}: {kind} delivered", shown(&hook.url));
                return;
            }
            Ok(r) => {
                last = format!("HTTP {}", r.status().as_u16());
                let retry = r.status().is_server_error() || r.status().as_u16() == 429;
                if !retry {
                    break;
                }
            }
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::warn!(
        "alert webhook {}: {kind} not delivered after {ATTEMPTS} attempts: {last}",
        shown(&hook.url)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str, events: Option<Vec<&str>>) -> AlertsConfig {
        AlertsConfig {
            webhook: vec![WebhookConfig {
                url: url.to_owned(),
                events: events.map(|e| e.into_iter().map(str::to_owned).collect()),
                timeout_ms: None,
            }],
        }
    }

    #[test]
    fn bad_webhooks_are_refused_with_the_key_and_reason() {
        let (key, reason) = hook("ftp://x", None).check().unwrap_err();
        assert_eq!(key, "alerts.webhook[0].url");
        assert!(reason.contains("http(s)"), "{reason}");
        let (key, _) = hook("not a url", None).check().unwrap_err();
        assert_eq!(key, "alerts.webhook[0].url");
        let (key, reason) = hook("http://127.0.0.1:9/h", Some(vec!["budget_warnin"]))
            .check()
            .unwrap_err();
        assert_eq!(key, "alerts.webhook[0].events");
        assert!(
            reason.contains("`budget_warnin` is not an event type"),
            "{reason}"
        );
        let (key, _) = hook("http://127.0.0.1:9/h", Some(vec![]))
            .check()
            .unwrap_err();
        assert_eq!(key, "alerts.webhook[0].events");
        hook("https://hooks.example.com/x", Some(vec!["pii_finding"]))
            .check()
            .unwrap();
    }

    #[test]
    fn the_type_list_matches_what_events_serialize_to() {
        use crate::events::EventKind;
        let kinds = [
            EventKind::BudgetWarning {
                policy: "budget".into(),
                detail: serde_json::json!({}),
            },
            EventKind::AgentProgress {
                done: 1,
                total: None,
                unit: None,
            },
            EventKind::UnitDone {
                ok: true,
                seconds: Some(1.5),
                fallback: Some("cache".into()),
                unit: None,
            },
            EventKind::PromptInjection {
                policy: "prompt-guard".into(),
                detail: serde_json::json!({}),
            },
            EventKind::EgressRefused {
                host: "example.com".into(),
                port: 443,
                reason: "not allowed".into(),
            },
        ];
        for kind in kinds {
            let t = kind.type_name();
            let serialized = serde_json::to_value(&kind).unwrap();
            assert_eq!(serialized["type"], t);
            assert!(EVENT_TYPES.contains(&t), "{t}");
        }
        assert!(DEFAULT_EVENTS.iter().all(|d| EVENT_TYPES.contains(d)));
    }

    #[test]
    fn logs_show_where_a_webhook_goes_but_not_its_secret_path() {
        assert_eq!(
            shown("https://hooks.slack.com/services/T0/B0/s3cr3t"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(shown("http://127.0.0.1:9000/x"), "http://127.0.0.1:9000/…");
    }

    #[test]
    fn webhooks_without_a_list_get_the_default_events() {
        let c = hook("http://127.0.0.1:9/h", None);
        assert!(c.webhook[0].wants("budget_warning"));
        assert!(!c.webhook[0].wants("llm_call"));
        let c = hook("http://127.0.0.1:9/h", Some(vec!["llm_call"]));
        assert!(c.webhook[0].wants("llm_call"));
        assert!(!c.webhook[0].wants("budget_warning"));
    }
}
