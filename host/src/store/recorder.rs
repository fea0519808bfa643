//! The recorder: subscribes to the event bus and writes events, call records, PII audit rows
//! and agent states in batches, so the call path only ever does a channel send.
//!
//! A PII finding's original value arrives beside the event (never inside it) and is sealed
//! with the data key before it touches the database.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::{Store, now_ms};
use crate::agent::events::{Event, EventBus, EventKind};
use crate::secrets::crypto::{self, Key};

/// Most events written in one transaction.
const MAX_BATCH: usize = 512;
/// How often the recorder collects what the bus published. It polls rather than waits on the
/// channel so that publishing an event never has to wake it: the call path pays a channel
/// push, nothing more.
pub const COLLECT_EVERY: Duration = Duration::from_millis(50);
/// Retries of a batch the database refused (busy, disk full) before it is dropped.
const WRITE_ATTEMPTS: u32 = 5;
/// How often old events and calls are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The running recorder.
#[derive(Debug, Clone)]
pub struct Recorder {
    written: watch::Receiver<u64>,
}

impl Recorder {
    /// Subscribe to `bus` and write what it publishes into `store`, on the current runtime.
    /// `data_key` seals PII originals; without one they are not kept (only their fingerprint).
    pub fn spawn(store: Store, bus: &EventBus, data_key: Option<Arc<Key>>) -> Recorder {
        let rx = bus.subscribe();
        let (tx, written) = watch::channel(bus.last_seq());
        tokio::spawn(run(store, rx, tx, data_key));
        Recorder { written }
    }

    /// Wait (at most `timeout`) until every event up to `seq` is written. False on timeout.
    pub async fn flush(&self, seq: u64, timeout: Duration) -> bool {
        let mut w = self.written.clone();
        tokio::time::timeout(timeout, w.wait_for(|done| *done >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn run(
    store: Store,
    mut rx: broadcast::Receiver<Arc<Event>>,
    written: watch::Sender<u64>,
    data_key: Option<Arc<Key>>,
) {
    let mut last_prune = std::time::Instant::now();
    if let Err(e) = store.prune(now_ms()).await {
        tracing::warn!("cannot prune old records: {e}");
    }
    let mut tick = tokio::time::interval(COLLECT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut batch = Vec::new();
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::error!(
                        "the store fell behind the event bus; {n} events were not recorded"
                    );
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    closed = true;
                    break;
                }
                Err(broadcast::error::TryRecvError::Empty) => break,
            }
        }
        if batch.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        if batch.len() == MAX_BATCH {
            // More may be waiting: come back at once.
            tick.reset_immediately();
        }
        // Publishers number events before they send them, so a batch may arrive out of order.
        let last = batch.iter().map(|e| e.seq).max().unwrap_or(0);
        let mut attempt = 0;
        loop {
            match write_batch(&store, &batch, data_key.as_deref()).await {
                Ok(()) => break,
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(
                        "cannot record {} events (attempt {attempt}): {e}; retrying",
                        batch.len()
                    );
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(
                        "cannot record {} events after {attempt} retries, dropping them: {e}",
                        batch.len()
                    );
                    break;
                }
            }
        }
        written.send_modify(|done| *done = (*done).max(last));
        if last_prune.elapsed() > PRUNE_EVERY {
            last_prune = std::time::Instant::now();
            match store.prune(now_ms()).await {
                Ok((e, c)) if e + c > 0 => tracing::debug!("pruned {e} events and {c} calls"),
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot prune old records: {e}"),
            }
        }
    }
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned()
}

async fn write_batch(
    store: &Store,
    batch: &[Arc<Event>],
    data_key: Option<&Key>,
) -> Result<(), sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    for event in batch {
        let body = serde_json::to_value(&**event).unwrap_or_default();
        let ts = event.ts_ms as i64;
        sqlx::query(
            "INSERT INTO events (ts_ms, agent_id, severity, type, body) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(ts)
        .bind(&event.agent_id)
        .bind(text(&body, "severity"))
        .bind(text(&body, "type"))
        .bind(body.to_string())
        .execute(&mut *tx)
        .await?;
        match &event.kind {
            EventKind::LlmCall {
                call_id,
                provider,
                model,
                stream,
                outcome: _,
                status,
                code,
                input_tokens,
                output_tokens,
                cost_usd,
                latency_ms,
                policy_us,
                attempts,
                simulated,
                verdicts,
            } => {
                sqlx::query(
                    "INSERT OR REPLACE INTO calls (id, agent_id, kind, provider, model, outcome, status, code, stream,
                     simulated, attempts, input_tokens, output_tokens, cost_usd, latency_ms, policy_us, verdicts, ts_ms)
                     VALUES (?, ?, 'llm', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(call_id)
                .bind(&event.agent_id)
                .bind(provider)
                .bind(model)
                .bind(text(&body, "outcome"))
                .bind(status.map(i64::from))
                .bind(code)
                .bind(stream)
                .bind(simulated)
                .bind(i64::from(*attempts))
                .bind(i64::from(*input_tokens))
                .bind(i64::from(*output_tokens))
                .bind(cost_usd)
                .bind(latency_ms)
                .bind(*policy_us as i64)
                .bind(serde_json::to_string(verdicts).unwrap_or_default())
                .bind(ts)
                .execute(&mut *tx)
                .await?;
            }
            EventKind::ToolCall {
                call_id,
                tool,
                code,
                latency_ms,
                verdicts,
                ..
            } => {
                sqlx::query(
                    "INSERT OR REPLACE INTO calls (id, agent_id, kind, tool, outcome, code, latency_ms, verdicts, ts_ms)
                     VALUES (?, ?, 'tool', ?, ?, ?, ?, ?, ?)",
                )
                .bind(call_id)
                .bind(&event.agent_id)
                .bind(tool)
                .bind(text(&body, "outcome"))
                .bind(code)
                .bind(latency_ms)
                .bind(serde_json::to_string(verdicts).unwrap_or_default())
                .bind(ts)
                .execute(&mut *tx)
                .await?;
            }
            EventKind::PiiFinding {
                policy,
                call_id,
                detail,
                original,
            } => {
                let hash = text(detail, "fingerprint");
                let sealed = match (original, data_key) {
                    (Some(v), Some(key)) => {
                        match crypto::seal(
                            key,
                            v.expose().as_bytes(),
                            format!("pii:{hash}").as_bytes(),
                        ) {
                            Ok((nonce, ct)) => Some((nonce.to_vec(), ct)),
                            Err(e) => {
                                tracing::error!("cannot seal a PII value for the audit: {e}");
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let (nonce, ct) = sealed.unzip();
                sqlx::query(
                    "INSERT INTO pii_audit (ts_ms, agent_id, call_id, policy, pii_type, severity, location, action,
                     value_hash, value_nonce, value_ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(ts)
                .bind(&event.agent_id)
                .bind(call_id)
                .bind(policy)
                .bind(text(detail, "type"))
                .bind(text(detail, "severity"))
                .bind(text(detail, "location"))
                .bind(text(detail, "action"))
                .bind(hash)
                .bind(nonce)
                .bind(ct)
                .execute(&mut *tx)
                .await?;
            }
            EventKind::AgentStarted { run, .. } => {
                sqlx::query(
                    "INSERT OR REPLACE INTO agent_runs (agent_id, run, state, started_ms) VALUES (?, ?, 'running', ?)",
                )
                .bind(&event.agent_id)
                .bind(i64::from(*run))
                .bind(ts)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE agents SET state = 'running', exit_code = NULL, updated_ms = ? WHERE id = ?")
                    .bind(ts)
                    .bind(&event.agent_id)
                    .execute(&mut *tx)
                    .await?;
            }
            EventKind::AgentStopped {
                state,
                exit_code,
                run,
            } => {
                sqlx::query("UPDATE agent_runs SET state = ?, exit_code = ?, ended_ms = ? WHERE agent_id = ? AND run = ?")
                    .bind(state.as_str())
                    .bind(exit_code)
                    .bind(ts)
                    .bind(&event.agent_id)
                    .bind(i64::from(*run))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE agents SET state = ?, exit_code = ?, updated_ms = ? WHERE id = ?",
                )
                .bind(state.as_str())
                .bind(exit_code)
                .bind(ts)
                .bind(&event.agent_id)
                .execute(&mut *tx)
                .await?;
            }
            EventKind::AgentProgress { done, total, unit } => {
                sqlx::query(
                    "UPDATE agents SET progress_done = ?, progress_total = ?, progress_unit = ?, updated_ms = ? WHERE id = ?",
                )
                .bind(*done as i64)
                .bind(total.map(|t| t as i64))
                .bind(unit)
                .bind(ts)
                .bind(&event.agent_id)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
    }
    tx.commit().await
}
