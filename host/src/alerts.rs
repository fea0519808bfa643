//! Alerts: events of chosen types sent to an operator, as JSON POSTs to webhooks
//! (`[[alerts.webhook]]` in `ironhost.toml`, such as a budget warning to a chat channel) and as
//! plain-text email over SMTP (`[[alerts.email]]`, [`email`]).
//!
//! Delivery never touches the call path: a task collects the events (from this process's bus
//! in an agent's process, from the store in `ironhost serve`, which sees every process's) and
//! sends each matching one, with a timeout and retries. Every process of a fleet that runs a
//! sender sees the same events, so each delivery is claimed in the store first (`sent_alerts`,
//! [`threshold_key`]): one process delivers it, and a budget threshold alerts once per limit
//! and warning share however often it is crossed. A webhook's body is the event as the
//! WebSocket streams it (plus `recommended_action` on budget events); PII values are never in
//! events.

pub mod email;
pub use crate::model::recommend;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sha2::Digest;
use tokio::sync::{broadcast, watch};
use zeroize::Zeroizing;

use crate::events::{Event, EventBus};
use crate::secrets::SecretStore;
use crate::store::Store;
use crate::store::sent_alerts::AlertKey;

pub use email::EmailConfig;

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
/// `[alerts]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertsConfig {
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    #[serde(default)]
    pub email: Vec<EmailConfig>,
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
        wants(self.events.as_deref(), kind)
    }

    /// The channel name in `sent_alerts`: a hash of the URL (chat webhooks carry their secret
    /// in it).
    fn channel(&self) -> String {
        let digest = sha2::Sha256::digest(self.url.as_bytes());
        format!("webhook:{}", hex::encode(&digest[..12]))
    }
}

fn wants(events: Option<&[String]>, kind: &str) -> bool {
    match events {
        Some(list) => list.iter().any(|e| e == kind),
        None => DEFAULT_EVENTS.contains(&kind),
    }
}

/// Why an `events` list cannot work.
fn check_events(events: Option<&[String]>) -> Result<(), String> {
    if let Some(events) = events {
        if events.is_empty() {
            return Err("is empty; leave it out for the default events".to_owned());
        }
        if let Some(bad) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
            return Err(format!(
                "`{bad}` is not an event type; the types are {}",
                EVENT_TYPES.join(", ")
            ));
        }
    }
    Ok(())
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
            check_events(w.events.as_deref()).map_err(|r| (key("events"), r))?;
            if w.timeout_ms == Some(0) {
                return Err((key("timeout-ms"), "must be more than 0".to_owned()));
            }
        }
        for (i, e) in self.email.iter().enumerate() {
            let key = |field: &str| format!("alerts.email[{i}].{field}");
            e.check().map_err(|(field, r)| (key(field), r))?;
            check_events(e.events.as_deref()).map_err(|r| (key("events"), r))?;
        }
        Ok(())
    }

    /// Read the passwords `password-env` names from `vars` (the process environment, read at
    /// start).
    pub fn read_env(&mut self, vars: &BTreeMap<String, String>) -> Result<(), (String, String)> {
        for (i, e) in self.email.iter_mut().enumerate() {
            if let Some(var) = &e.password_env {
                match vars.get(var) {
                    Some(v) if !v.is_empty() => {
                        e.password_from_env = Some(Zeroizing::new(v.clone()))
                    }
                    _ => {
                        return Err((
                            format!("alerts.email[{i}].password-env"),
                            format!("the variable `{var}` is not set"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Read the `ca-file`s, relative to `base` (the configuration file's folder).
    pub fn read_files(&mut self, base: &Path) -> Result<(), (String, String)> {
        for (i, e) in self.email.iter_mut().enumerate() {
            e.read_ca_file(base)
                .map_err(|r| (format!("alerts.email[{i}].ca-file"), r))?;
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.webhook.is_empty() && self.email.is_empty()
    }
}

/// Which crossing an event is, for `sent_alerts`: a budget event is keyed by its limit (and the
/// warning share), so the same threshold alerts once however often it is seen and a raised
/// limit arms a new alert; a circuit opening by its service and the opening itself; any other
/// event by itself (its process's time and sequence number, the same in the bus and the store).
pub fn threshold_key(event: &Value) -> String {
    let detail = event.get("detail");
    let num = |k: &str| detail.and_then(|d| d.get(k)).and_then(Value::as_f64);
    let ts = event.get("ts_ms").and_then(Value::as_u64).unwrap_or(0);
    let seq = event.get("seq").and_then(Value::as_u64).unwrap_or(0);
    match event.get("type").and_then(Value::as_str) {
        Some("budget_warning") if num("limit_usd").is_some() => format!(
            "limit={}:warn={}",
            num("limit_usd").unwrap_or(0.0),
            num("threshold").unwrap_or(0.9)
        ),
        Some("budget_exceeded") if num("limit_usd").is_some() => {
            format!("limit={}", num("limit_usd").unwrap_or(0.0))
        }
        Some("circuit_opened") => format!(
            "{}@{ts}:{seq}",
            detail
                .and_then(|d| d.get("service"))
                .and_then(Value::as_str)
                .unwrap_or("?")
        ),
        _ => format!("event@{ts}:{seq}"),
    }
}

/// What a sender uses of its process: the store (claims, agent names, progress) and the
/// secrets (SMTP passwords).
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: Store,
    pub secrets: Arc<SecretStore>,
    /// The environment whose secrets hold the SMTP passwords.
    pub environment: String,
}

/// The running sender.
#[derive(Debug, Clone)]
pub struct Alerts {
    sent: watch::Receiver<u64>,
}

impl Alerts {
    /// Send `bus`'s events as configured, on the current runtime; `None` when no alert is
    /// configured.
    pub fn spawn(
        config: &AlertsConfig,
        bus: &EventBus,
        deps: Deps,
    ) -> Result<Option<Alerts>, String> {
        let Some(sender) = Sender::new(config, deps)? else {
            return Ok(None);
        };
        let rx = bus.subscribe();
        let (tx, sent) = watch::channel(bus.last_seq());
        tokio::spawn(from_bus(sender, rx, tx));
        Ok(Some(Alerts { sent }))
    }

    /// Send the events every process records in the store from now on (`ironhost serve`), on
    /// the current runtime. `false` when no alert is configured.
    pub fn follow_store(config: &AlertsConfig, deps: Deps) -> Result<bool, String> {
        let Some(sender) = Sender::new(config, deps)? else {
            return Ok(false);
        };
        tokio::spawn(from_store(sender));
        Ok(true)
    }

    /// Wait (at most `timeout`) until every event up to `seq` is delivered or given up on.
    pub async fn flush(&self, seq: u64, timeout: Duration) -> bool {
        let mut s = self.sent.clone();
        tokio::time::timeout(timeout, s.wait_for(|done| *done >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// An agent's last progress report: done, total, unit.
type Progress = (u64, Option<u64>, Option<String>);

/// Delivers events to the configured webhooks and mailboxes.
struct Sender {
    client: Option<reqwest::Client>,
    hooks: Vec<WebhookConfig>,
    mailers: Vec<email::Mailer>,
    deps: Deps,
    progress: HashMap<String, Progress>,
    names: HashMap<String, String>,
}

/// What the store said about delivering an alert.
enum Claim {
    /// This sender delivers it.
    Mine,
    /// Sent, or being sent, by another.
    Taken,
    /// The store could not say: deliver anyway (a duplicate beats a lost alert).
    Unknown,
}

impl Sender {
    fn new(config: &AlertsConfig, deps: Deps) -> Result<Option<Sender>, String> {
        if config.is_empty() {
            return Ok(None);
        }
        // One process-wide TLS provider (the LLM client installs the same one; a second
        // install is harmless). Without it, an https webhook or an SMTP server could not be
        // reached in simulator mode, where no LLM client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = if config.webhook.is_empty() {
            None
        } else {
            Some(
                reqwest::Client::builder()
                    .user_agent(concat!("ironhost/", env!("CARGO_PKG_VERSION")))
                    // A redirect would turn the POST into a GET that looks delivered.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("alert webhooks: cannot build the HTTP client: {e}"))?,
            )
        };
        let mailers = config
            .email
            .iter()
            .map(email::Mailer::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Sender {
            client,
            hooks: config.webhook.clone(),
            mailers,
            deps,
            progress: HashMap::new(),
            names: HashMap::new(),
        }))
    }

    /// Whether any channel wants events of type `kind` (progress is always followed, for the
    /// projection in budget emails).
    fn follows(&self, kind: &str) -> bool {
        kind == "agent_progress"
            || self.hooks.iter().any(|h| h.wants(kind))
            || self
                .mailers
                .iter()
                .any(|m| wants(m.config.events.as_deref(), kind))
    }

    async fn claim(&self, key: &AlertKey<'_>) -> Claim {
        match self.deps.store.claim_alert(key).await {
            Ok(true) => Claim::Mine,
            Ok(false) => Claim::Taken,
            Err(e) => {
                tracing::warn!(
                    "alerts: cannot claim {} of {} in the store ({e}); sending it anyway",
                    key.event_type,
                    key.agent_id
                );
                Claim::Unknown
            }
        }
    }

    /// Record the outcome of a claimed delivery: sent, or released for a later sender.
    async fn settle(&self, key: &AlertKey<'_>, claim: Claim, delivered: bool) {
        if !matches!(claim, Claim::Mine) {
            return;
        }
        let done = if delivered {
            self.deps.store.alert_sent(key).await
        } else {
            self.deps.store.release_alert(key).await
        };
        if let Err(e) = done {
            tracing::warn!(
                "alerts: cannot record the delivery of {} of {}: {e}",
                key.event_type,
                key.agent_id
            );
        }
    }

    /// The agent's name and last progress, for an email.
    async fn context(&mut self, agent: &str) -> email::Context {
        if !self.names.contains_key(agent)
            && let Ok(Some(a)) = self.deps.store.agent(agent).await
        {
            self.names.insert(agent.to_owned(), a.name);
        }
        if !self.progress.contains_key(agent)
            && let Ok(rows) = self
                .deps
                .store
                .events(0, Some(agent), Some("agent_progress"), 1, true)
                .await
            && let Some(p) = rows.first().and_then(progress_of)
        {
            self.progress.insert(agent.to_owned(), p);
        }
        email::Context {
            name: self.names.get(agent).cloned(),
            progress: self.progress.get(agent).cloned(),
        }
    }

    async fn handle(&mut self, event: &Value) {
        let Some(kind) = event.get("type").and_then(Value::as_str) else {
            return;
        };
        let agent = event
            .get("agent_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if kind == "agent_progress" {
            if let Some(p) = progress_of(event) {
                self.progress.insert(agent.clone(), p);
            }
            if !self.hooks.iter().any(|h| h.wants(kind))
                && !self
                    .mailers
                    .iter()
                    .any(|m| wants(m.config.events.as_deref(), kind))
            {
                return;
            }
        }
        let threshold = threshold_key(event);
        let is_budget = matches!(kind, "budget_warning" | "budget_exceeded");
        let ctx = if is_budget || !self.mailers.is_empty() {
            self.context(&agent).await
        } else {
            email::Context::default()
        };
        let action = email::recommended_action(event, &ctx);
        if let Some(client) = &self.client {
            for hook in self.hooks.iter().filter(|h| h.wants(kind)) {
                let channel = hook.channel();
                let key = AlertKey {
                    channel: &channel,
                    agent_id: &agent,
                    event_type: kind,
                    threshold_key: &threshold,
                };
                let claim = self.claim(&key).await;
                if matches!(claim, Claim::Taken) {
                    continue;
                }
                let mut body = event.clone();
                if let (Some(a), Some(o)) = (&action, body.as_object_mut()) {
                    o.insert("recommended_action".into(), a.to_string().into());
                }
                let delivered = match serde_json::to_vec(&body) {
                    Ok(bytes) => deliver(client, hook, kind, &bytes).await,
                    Err(e) => {
                        tracing::warn!("alert webhooks: cannot encode {kind}: {e}");
                        false
                    }
                };
                self.settle(&key, claim, delivered).await;
            }
        }
        let mut mails = Vec::new();
        for (i, m) in self.mailers.iter().enumerate() {
            if wants(m.config.events.as_deref(), kind) {
                mails.push(i);
            }
        }
        if mails.is_empty() {
            return;
        }
        let (subject, body) = email::compose(event, &ctx);
        for i in mails {
            let mailer = &self.mailers[i];
            let channel = mailer.config.channel();
            let key = AlertKey {
                channel: &channel,
                agent_id: &agent,
                event_type: kind,
                threshold_key: &threshold,
            };
            let claim = self.claim(&key).await;
            if matches!(claim, Claim::Taken) {
                tracing::debug!("alert email {kind} of {agent}: sent by another process");
                continue;
            }
            let delivered = self.mail(mailer, kind, &agent, &subject, &body).await;
            self.settle(&key, claim, delivered).await;
        }
    }

    /// Send one email, retrying; `true` once the server took it.
    async fn mail(
        &self,
        mailer: &email::Mailer,
        kind: &str,
        agent: &str,
        subject: &str,
        body: &str,
    ) -> bool {
        let mut wait = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let password = match self.password(mailer) {
                Ok(p) => p,
                Err(e) => {
                    last = e;
                    break;
                }
            };
            match mailer.send(subject, body, password).await {
                Ok(()) => {
                    tracing::info!(
                        "alert email {kind} of {agent} sent to {}",
                        mailer.config.to.join(", ")
                    );
                    return true;
                }
                Err(e) => last = e,
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        tracing::warn!(
            "alert email {kind} of {agent} to {} not delivered: {last}; another process that sees it may send it",
            mailer.config.shown()
        );
        false
    }

    fn password(&self, mailer: &email::Mailer) -> Result<Option<Zeroizing<String>>, String> {
        if let Some(p) = &mailer.config.password_from_env {
            return Ok(Some(p.clone()));
        }
        match &mailer.config.password_secret {
            Some(name) => self
                .deps
                .secrets
                .value(&self.deps.environment, name)
                .map(Some)
                .map_err(|e| format!("the SMTP password: {e}")),
            None => Ok(None),
        }
    }
}

fn progress_of(event: &Value) -> Option<Progress> {
    Some((
        event.get("done").and_then(Value::as_u64)?,
        event.get("total").and_then(Value::as_u64),
        event.get("unit").and_then(Value::as_str).map(str::to_owned),
    ))
}

/// How often a sender collects what the bus published.
const COLLECT_EVERY: Duration = Duration::from_millis(50);
/// How often `ironhost serve`'s sender reads the events other processes stored (the pace of
/// the live feed that follows the store).
const TAIL_EVERY: Duration = Duration::from_millis(100);

async fn from_bus(
    mut sender: Sender,
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
                    tracing::warn!("alerts fell behind the event bus; {n} events skipped");
                    continue;
                }
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Closed) => return,
            };
            if sender.follows(event.kind.type_name()) {
                match serde_json::to_value(&*event) {
                    Ok(v) => sender.handle(&v).await,
                    Err(e) => {
                        tracing::warn!("alerts: cannot encode {}: {e}", event.kind.type_name())
                    }
                }
            }
            sent.send_modify(|done| *done = (*done).max(event.seq));
        }
    }
}

async fn from_store(mut sender: Sender) {
    let mut rows = sender.deps.store.follow_events(TAIL_EVERY, "alerts");
    while let Some(row) = rows.recv().await {
        let kind = row.get("type").and_then(Value::as_str).unwrap_or("");
        if sender.follows(kind) {
            sender.handle(&row).await;
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

/// Post `body` to `hook`, retrying timeouts, connection failures, 429 and 5xx; `true` once
/// delivered.
async fn deliver(client: &reqwest::Client, hook: &WebhookConfig, kind: &str, body: &[u8]) -> bool {
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
                return true;
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
    false
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
            email: Vec::new(),
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
