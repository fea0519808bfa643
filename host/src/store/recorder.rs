//! The recorder: reads the event bus's journal and writes events, call records, PII audit rows
//! and agent states in batches, so the call path only ever does a channel send. Records are
//! never dropped: a write the database refuses for now is retried until it is taken, and calls
//! wait when too many are pending (see `agent::events`).
//!
//! A PII finding's original value arrives beside the event (never inside it) and is sealed
//! with the data key before it touches the database.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Store, now_ms};
use crate::crypto::{self, Key};
use crate::events::{Event, EventBus, EventKind, JournalCounts, JournalReader};

/// Most events written in one transaction.
const MAX_BATCH: usize = 512;
/// How often the recorder collects what the bus published. It polls rather than waits on the
/// channel so that publishing an event never has to wake it: the call path pays a channel
/// push, nothing more.
pub const COLLECT_EVERY: Duration = Duration::from_millis(50);
/// Longest wait between two tries of a write the database refused for now (busy, disk full).
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// How often old events and calls are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The running recorder.
#[derive(Debug, Clone)]
pub struct Recorder {
    written: watch::Receiver<u64>,
    counts: Arc<JournalCounts>,
}

/// The keys the recorder writes with.
#[derive(Debug, Clone, Default)]
pub struct RecorderKeys {
    /// Seals PII originals.
    pub data: Option<Arc<Key>>,
    /// Seals PII audit rows into the audit chain.
    pub audit: Option<super::audit::AuditKey>,
}

impl Recorder {
    /// Take `bus`'s journal and write what it carries into `store`, on the current runtime.
    /// `keys.data` seals PII originals (without it they are not kept, only their fingerprint);
    /// `keys.audit` seals PII audit rows into the audit chain.
    ///
    /// # Panics
    /// If the bus already has a recorder: its journal has one reader.
    pub fn spawn(store: Store, bus: &EventBus, keys: RecorderKeys) -> Recorder {
        let journal = bus
            .journal()
            .expect("an event bus has one recorder: its journal was taken already");
        let (tx, written) = watch::channel(bus.last_seq());
        let counts = journal.counts.clone();
        tokio::spawn(run(store, journal, tx, keys));
        Recorder { written, counts }
    }

    /// Wait until every event up to `seq` is written, or nothing is left to write. Records are
    /// not given up on while the store is making progress: false only when `idle` passes with
    /// nothing written.
    pub async fn flush(&self, seq: u64, idle: Duration) -> bool {
        let mut w = self.written.clone();
        let counts = self.counts.clone();
        loop {
            let before = *w.borrow();
            let c = counts.clone();
            let done = tokio::time::timeout(
                idle,
                w.wait_for(move |done| *done >= seq || c.pending() == 0),
            )
            .await
            .map(|r| r.is_ok());
            match done {
                Ok(ok) => return ok,
                Err(_) if *w.borrow() > before => {
                    tracing::info!("the store is writing the last {} records", counts.pending());
                }
                Err(_) => return false,
            }
        }
    }
}

async fn run(
    store: Store,
    journal: JournalReader,
    written: watch::Sender<u64>,
    keys: RecorderKeys,
) {
    let JournalReader { mut rx, counts } = journal;
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
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let shed = counts.take_shed();
        if shed > 0 {
            tracing::warn!(
                "the store fell behind: {shed} cost and policy events were not stored \
                 (calls, audit rows and state changes all are)"
            );
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
        record(&store, &batch, &keys).await;
        counts.done(batch.len());
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

/// Whether the database will never take what was refused (a constraint, a value too big), as
/// opposed to not taking it now (busy, locked, disk full, I/O, a lost connection, a deadlock).
fn refused_for_good(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code();
            let code = code.as_deref().unwrap_or("");
            !matches!(d.kind(), sqlx::error::ErrorKind::Other)
                // SQLite: SQLITE_TOOBIG, SQLITE_MISMATCH.
                || matches!(code, "18" | "20")
                // PostgreSQL: data exceptions (a NUL in a text, a value out of range),
                // integrity constraints, syntax and undefined objects.
                || (code.len() == 5 && ["22", "23", "42"].contains(&&code[..2]))
        }
        sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    }
}

/// Write `batch`, however long the database takes to accept it: nothing is dropped because the
/// store is busy or full (calls wait at their start meanwhile, see `EventBus::wait_for_room`).
/// Only an event the database refuses for good is dropped, loudly, so it cannot hold up the
/// others.
async fn record(store: &Store, batch: &[Arc<Event>], keys: &RecorderKeys) {
    if write_until_taken(store, batch, keys).await.is_ok() {
        return;
    }
    for event in batch {
        if let Err(e) = write_until_taken(store, std::slice::from_ref(event), keys).await {
            tracing::error!(
                "the store refuses a `{}` event ({e}); it is not recorded",
                event.kind.type_name()
            );
        }
    }
}

/// Retry `batch` until it is written (`Ok`) or refused for good (that error).
async fn write_until_taken(
    store: &Store,
    batch: &[Arc<Event>],
    keys: &RecorderKeys,
) -> Result<(), sqlx::Error> {
    let mut attempt: u32 = 0;
    loop {
        match write_batch(store, batch, keys).await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!("recorded {} events after {attempt} retries", batch.len());
                }
                return Ok(());
            }
            Err(e) if refused_for_good(&e) => return Err(e),
            Err(e) => {
                attempt += 1;
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::warn!(
                        "cannot record {} events yet (attempt {attempt}): {e}; retrying",
                        batch.len()
                    );
                }
                let wait = Duration::from_millis(100)
                    .saturating_mul(1 << attempt.min(6))
                    .min(MAX_RETRY_WAIT);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Every column of `calls`, in the order the inserts below give them.
const CALL_COLUMNS: &str = "id, agent_id, kind, provider, api, model, tool, outcome, status, code, \
     reason, stream, simulated, attempts, input_tokens, output_tokens, cost_usd, latency_ms, policy_us, \
     verdicts, ts_ms";

/// A call record written again (the same id) replaces the earlier one whole.
const CALL_REPLACES: &str = "ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, \
     kind = excluded.kind, provider = excluded.provider, api = excluded.api, model = excluded.model, \
     tool = excluded.tool, outcome = excluded.outcome, status = excluded.status, code = excluded.code, \
     reason = excluded.reason, stream = excluded.stream, simulated = excluded.simulated, \
     attempts = excluded.attempts, input_tokens = excluded.input_tokens, \
     output_tokens = excluded.output_tokens, cost_usd = excluded.cost_usd, \
     latency_ms = excluded.latency_ms, policy_us = excluded.policy_us, verdicts = excluded.verdicts, \
     ts_ms = excluded.ts_ms";

fn text(v: &serde_json::Value, key: &str) -> String {
    v.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned()
}

async fn write_batch(
    store: &Store,
    batch: &[Arc<Event>],
    keys: &RecorderKeys,
) -> Result<(), sqlx::Error> {
    let data_key = keys.data.as_deref();
    let mut tx = store.pool().begin().await?;
    for event in batch {
        let body = serde_json::to_value(&**event).unwrap_or_default();
        let ts = event.ts_ms as i64;
        sqlx::query(
            "INSERT INTO events (ts_ms, agent_id, severity, type, body) VALUES ($1, $2, $3, $4, $5)",
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
                api,
                model,
                stream,
                outcome: _,
                status,
                code,
                reason,
                input_tokens,
                output_tokens,
                cost_usd,
                latency_ms,
                policy_us,
                attempts,
                simulated,
                verdicts,
            } => {
                sqlx::query(&format!(
                    "INSERT INTO calls ({CALL_COLUMNS})
                     VALUES ($1, $2, 'llm', $3, $4, $5, NULL, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18, $19) {CALL_REPLACES}"
                ))
                .bind(call_id)
                .bind(&event.agent_id)
                .bind(provider)
                .bind((!api.is_empty()).then_some(api.as_str()))
                .bind(model)
                .bind(text(&body, "outcome"))
                .bind(status.map(i64::from))
                .bind(code)
                .bind(reason)
                .bind(i64::from(*stream))
                .bind(i64::from(*simulated))
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
                sqlx::query(&format!(
                    "INSERT INTO calls ({CALL_COLUMNS})
                     VALUES ($1, $2, 'tool', NULL, NULL, NULL, $3, $4, NULL, $5, NULL, 0, 0, 1, 0, 0, 0, $6, 0,
                     $7, $8) {CALL_REPLACES}"
                ))
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
                if keys.audit.is_some() {
                    // Rows are numbered in the order they are sealed in.
                    super::audit::lock_head(&mut tx, &super::audit::PII_AUDIT).await?;
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO pii_audit (ts_ms, agent_id, call_id, policy, pii_type, severity, location, action,
                     value_hash, value_nonce, value_ciphertext) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     RETURNING id",
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
                .fetch_one(&mut *tx)
                .await?;
                if let Some(key) = &keys.audit {
                    super::audit::seal(&mut tx, key, &super::audit::PII_AUDIT, id).await?;
                }
            }
            EventKind::AgentStarted { run, .. } => {
                sqlx::query(
                    "INSERT INTO agent_runs (agent_id, run, state, exit_code, started_ms, ended_ms)
                     VALUES ($1, $2, 'running', NULL, $3, NULL)
                     ON CONFLICT (agent_id, run) DO UPDATE SET state = excluded.state,
                       exit_code = excluded.exit_code, started_ms = excluded.started_ms,
                       ended_ms = excluded.ended_ms",
                )
                .bind(&event.agent_id)
                .bind(i64::from(*run))
                .bind(ts)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE agents SET state = 'running', exit_code = NULL, updated_ms = $1 WHERE id = $2")
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
                sqlx::query("UPDATE agent_runs SET state = $1, exit_code = $2, ended_ms = $3 WHERE agent_id = $4 AND run = $5")
                    .bind(state.as_str())
                    .bind(exit_code)
                    .bind(ts)
                    .bind(&event.agent_id)
                    .bind(i64::from(*run))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE agents SET state = $1, exit_code = $2, updated_ms = $3 WHERE id = $4",
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
                    "UPDATE agents SET progress_done = $1, progress_total = $2, progress_unit = $3, updated_ms = $4 WHERE id = $5",
                )
                .bind(*done as i64)
                .bind(total.map(|t| t as i64))
                .bind(unit)
                .bind(ts)
                .bind(&event.agent_id)
                .execute(&mut *tx)
                .await?;
            }
            EventKind::UnitDone {
                ok,
                seconds,
                fallback,
                unit,
            } => {
                sqlx::query(
                    "INSERT INTO units (agent_id, run, ts_ms, ok, seconds, fallback, unit)
                     VALUES ($1, (SELECT MAX(run) FROM agent_runs WHERE agent_id = $2), $3, $4, $5, $6, $7)",
                )
                .bind(&event.agent_id)
                .bind(&event.agent_id)
                .bind(ts)
                .bind(i64::from(*ok))
                .bind(seconds)
                .bind(fallback)
                .bind(unit)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::super::testing::{BACKENDS, TestDb};
    use super::*;
    use crate::events::{AgentState, CallOutcome, EventBus, EventKind, VerdictSummary};
    use crate::model::Severity;
    use crate::policy::chain::VerdictKind;
    use crate::policy::host::SensitiveValue;
    use crate::store::audit::AuditKey;
    use crate::store::queries::{NewAgent, RUNNER_IRONHOST, UsageFilter};
    use crate::store::{Backend, Store};
    use zeroize::Zeroizing;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_flood_of_events_loses_no_call_record() {
        for backend in BACKENDS {
            flood(backend);
        }
    }

    fn flood(backend: Backend) {
        let rt = runtime();
        let db = rt.block_on(TestDb::new(backend));
        let store = rt.block_on(db.store());
        let bus = EventBus::new();
        let recorder =
            rt.block_on(async { Recorder::spawn(store.clone(), &bus, RecorderKeys::default()) });
        // Two publishers, as fast as they can: 20,000 call records among 40,000 cost updates,
        // far more than the store writes in the time (the bus's subscribers lose most of them).
        let publishers: Vec<_> = (0..2)
            .map(|p| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    for n in 0..10_000 {
                        for _ in 0..2 {
                            bus.publish(
                                "flood-1",
                                Severity::Info,
                                EventKind::CostUpdate {
                                    spent_usd: 0.0,
                                    limit_usd: None,
                                    detail: serde_json::json!({}),
                                },
                            );
                        }
                        bus.publish(
                            "flood-1",
                            Severity::Info,
                            EventKind::ToolCall {
                                call_id: format!("tool-{p}-{n}"),
                                tool: "t".into(),
                                outcome: CallOutcome::Ok,
                                code: None,
                                latency_ms: 0.0,
                                verdicts: Vec::new(),
                            },
                        );
                    }
                })
            })
            .collect();
        for p in publishers {
            p.join().expect("publisher");
        }
        let seq = bus.last_seq();
        assert!(
            rt.block_on(recorder.flush(seq, Duration::from_secs(10))),
            "{backend:?}"
        );
        let count = |sql: &'static str| -> i64 {
            rt.block_on(sqlx::query_scalar(sql).fetch_one(store.pool()))
                .expect("count")
        };
        assert_eq!(count("SELECT COUNT(*) FROM calls"), 20_000, "{backend:?}");
        assert_eq!(
            count("SELECT COUNT(*) FROM events WHERE type = 'tool_call'"),
            20_000,
            "{backend:?}"
        );
        assert!(count("SELECT COUNT(*) FROM events WHERE type = 'cost_update'") <= 40_000);
        assert_eq!(bus.journal_pending(), 0);
    }

    const T0: u64 = 1_700_000_000_000;

    fn event(seq: u64, agent: &str, kind: EventKind) -> Arc<Event> {
        Arc::new(Event {
            seq,
            ts_ms: T0 + seq * 1000,
            agent_id: agent.into(),
            severity: Severity::Info,
            kind,
        })
    }

    /// An LLM call; the pair is its cost in dollars and its latency in milliseconds.
    fn llm(
        id: &str,
        model: &str,
        outcome: CallOutcome,
        tokens: (u32, u32),
        (cost_usd, latency_ms): (f64, f64),
        stream: bool,
        code: Option<&str>,
    ) -> EventKind {
        EventKind::LlmCall {
            call_id: id.into(),
            provider: "openai".into(),
            api: if stream { String::new() } else { "chat".into() },
            model: model.into(),
            stream,
            outcome,
            status: (outcome == CallOutcome::Ok).then_some(200),
            code: code.map(str::to_owned),
            reason: code.map(|c| format!("because {c}")),
            input_tokens: tokens.0,
            output_tokens: tokens.1,
            cost_usd,
            latency_ms,
            policy_us: 30,
            attempts: 1 + u32::from(outcome == CallOutcome::Error),
            simulated: !stream,
            verdicts: vec![VerdictSummary {
                policy: "budget".into(),
                hook: "on-llm-request",
                verdict: VerdictKind::Pass,
                enforced: true,
                latency_us: 12,
                code: None,
            }],
        }
    }

    fn tool(id: &str, outcome: CallOutcome, latency_ms: f64) -> EventKind {
        EventKind::ToolCall {
            call_id: id.into(),
            tool: "search".into(),
            outcome,
            code: (outcome == CallOutcome::Error).then(|| "timeout".into()),
            latency_ms,
            verdicts: Vec::new(),
        }
    }

    /// Two agents' runs: calls of every outcome (one written twice, replaced), tools, a PII
    /// finding, progress, a stop and a restart. Costs and latencies are exact in binary, so
    /// sums are the same whatever order a database adds them in.
    fn batch() -> Vec<Arc<Event>> {
        use CallOutcome::{Denied, Error, Fallback, Ok};
        let pii = EventKind::PiiFinding {
            policy: "pii-redact".into(),
            call_id: Some("c1".into()),
            detail: serde_json::json!({"type": "email", "severity": "high", "location": "request",
                "action": "redacted", "fingerprint": "fp-1"}),
            original: Some(SensitiveValue::new("ada@example.com".into())),
        };
        let kinds = vec![
            (
                "lg-1",
                EventKind::AgentStarted {
                    name: "lead_gen".into(),
                    script: "lead_gen.py".into(),
                    run: 1,
                },
            ),
            (
                "lg-1",
                llm("c1", "gpt-4o", Ok, (100, 50), (0.25, 120.5), false, None),
            ),
            (
                "lg-1",
                llm(
                    "c2",
                    "gpt-4o-mini",
                    Denied,
                    (10, 0),
                    (0.0, 3.25),
                    true,
                    Some("budget_exceeded"),
                ),
            ),
            (
                "lg-1",
                llm(
                    "c3",
                    "claude-3-5-haiku",
                    Fallback,
                    (0, 0),
                    (0.125, 40.0),
                    false,
                    None,
                ),
            ),
            (
                "lg-2",
                EventKind::AgentStarted {
                    name: "other".into(),
                    script: "other.py".into(),
                    run: 1,
                },
            ),
            (
                "lg-2",
                llm(
                    "c4",
                    "gpt-4o",
                    Error,
                    (7, 0),
                    (0.5, 900.75),
                    false,
                    Some("upstream_5xx"),
                ),
            ),
            ("lg-1", tool("t1", Ok, 12.5)),
            ("lg-1", tool("t2", Error, 30_000.0)),
            ("lg-1", pii),
            (
                "lg-1",
                EventKind::CostUpdate {
                    spent_usd: 0.375,
                    limit_usd: Some(5.0),
                    detail: serde_json::json!({}),
                },
            ),
            (
                "lg-1",
                EventKind::AgentProgress {
                    done: 3,
                    total: Some(4),
                    unit: Some("leads".into()),
                },
            ),
            // The same call again: its record is replaced whole.
            (
                "lg-1",
                llm("c1", "gpt-4o", Ok, (200, 80), (0.375, 130.25), false, None),
            ),
            (
                "lg-1",
                EventKind::AgentStopped {
                    state: AgentState::Completed,
                    exit_code: 0,
                    run: 1,
                },
            ),
            (
                "lg-2",
                EventKind::AgentStopped {
                    state: AgentState::Failed,
                    exit_code: 3,
                    run: 1,
                },
            ),
            (
                "lg-2",
                EventKind::AgentStarted {
                    name: "other".into(),
                    script: "other.py".into(),
                    run: 2,
                },
            ),
            (
                "lg-2",
                EventKind::AgentStarted {
                    name: "other".into(),
                    script: "other.py".into(),
                    run: 2,
                },
            ),
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, (agent, kind))| event(i as u64 + 1, agent, kind))
            .collect()
    }

    /// What the control plane reads back after [`batch`] is recorded, as JSON, without what
    /// depends on the clock of the test.
    async fn read_back(store: &Store) -> serde_json::Value {
        let json = |v: serde_json::Result<serde_json::Value>| v.expect("json");
        let usage = |f: UsageFilter| async move {
            json(serde_json::to_value(store.usage(&f).await.expect("usage")))
        };
        // Listed newest first: by the time they were registered, which is the test's clock.
        let mut listed = store.agents().await.expect("agents");
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        let mut agents = json(serde_json::to_value(listed));
        for a in agents.as_array_mut().expect("a list") {
            let a = a.as_object_mut().expect("an agent");
            a.remove("created_ms");
            a.remove("pid");
        }
        let lg1 = store.agent("lg-1").await.expect("agent").expect("lg-1");
        let mut metrics = json(serde_json::to_value(
            store.agent_metrics(&lg1).await.expect("metrics"),
        ));
        let m = metrics.as_object_mut().expect("metrics");
        m.remove("uptime_s");
        m.remove("throughput_per_min");
        serde_json::json!({
            "usage": usage(UsageFilter::default()).await,
            "usage_lg1": usage(UsageFilter { agent_id: Some("lg-1".into()), ..UsageFilter::default() }).await,
            "usage_gpt4o": usage(UsageFilter { model: Some("gpt-4o".into()), ..UsageFilter::default() }).await,
            "usage_since": usage(UsageFilter { since_ms: Some(T0 as i64 + 5000), ..UsageFilter::default() }).await,
            "agents": agents,
            "metrics": metrics,
            "traces": json(serde_json::to_value(store.traces(None, None, 100).await.expect("traces"))),
            "traces_page": json(serde_json::to_value(store.traces(Some("lg-1"), Some(T0 as i64 + 12_000), 2).await.expect("traces"))),
            "c1": json(serde_json::to_value(store.trace("c1").await.expect("trace"))),
            "c2": json(serde_json::to_value(store.trace("c2").await.expect("trace"))),
            "events": store.events(0, None, None, 100, false).await.expect("events"),
            "events_newest": store.events(2, Some("lg-1"), Some("llm_call"), 2, true).await.expect("events"),
            "last_event": store.last_event_id().await.expect("last"),
            "pii": json(serde_json::to_value(store.pii_counts(None).await.expect("pii"))),
            "runs": sqlx::query_as::<_, (String, i64, String, Option<i64>, Option<i64>)>(
                "SELECT agent_id, run, state, exit_code, ended_ms FROM agent_runs ORDER BY agent_id, run")
                .fetch_all(store.pool()).await.expect("runs"),
        })
    }

    #[test]
    fn recorded_calls_read_back_the_same_on_both_backends() {
        let data_key = Arc::new(Zeroizing::new([5u8; 32]));
        let audit_key = AuditKey::new(Zeroizing::new(vec![6u8; 32]));
        let mut seen = Vec::new();
        for backend in BACKENDS {
            let rt = runtime();
            seen.push(rt.block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                for (id, name) in [("lg-1", "lead_gen"), ("lg-2", "other")] {
                    store
                        .register_agent(&NewAgent {
                            id,
                            name,
                            script: "x.py",
                            bundle: "default",
                            environment: "dev",
                            budget_usd: Some(5.0),
                            pid: 1,
                            pid_start: None,
                            runner: RUNNER_IRONHOST,
                        })
                        .await
                        .expect("register");
                }
                crate::store::audit::start_chain(&store, &audit_key)
                    .await
                    .expect("chain");
                let keys = RecorderKeys {
                    data: Some(data_key.clone()),
                    audit: Some(audit_key.clone()),
                };
                record(&store, &batch(), &keys).await;
                // The PII row is sealed into the chain, its value kept only as ciphertext.
                let reports = crate::store::audit::verify(&store, &audit_key)
                    .await
                    .expect("verify");
                assert!(
                    reports.iter().all(|r| r.problems.is_empty()),
                    "{backend:?}: {reports:?}"
                );
                let (nonce, ct): (Vec<u8>, Vec<u8>) =
                    sqlx::query_as("SELECT value_nonce, value_ciphertext FROM pii_audit")
                        .fetch_one(store.pool())
                        .await
                        .expect("pii row");
                let opened = crypto::open(&data_key, &nonce, &ct, b"pii:fp-1").expect("opens");
                assert_eq!(opened.as_slice(), b"ada@example.com");
                read_back(&store).await
            }));
        }
        let (sqlite, postgres) = (&seen[0], &seen[1]);
        // The figures themselves.
        let totals = &sqlite["usage"]["totals"];
        assert_eq!(totals["calls"], 6, "{totals}");
        assert_eq!(
            (totals["llm_calls"].as_i64(), totals["tool_calls"].as_i64()),
            (Some(4), Some(2))
        );
        assert_eq!(
            (
                totals["input_tokens"].as_i64(),
                totals["output_tokens"].as_i64()
            ),
            (Some(217), Some(80))
        );
        assert_eq!(totals["cost_usd"], 1.0);
        let by_model = &sqlite["usage"]["by_model"];
        assert_eq!(by_model[0]["key"], "gpt-4o");
        assert_eq!(by_model[0]["cost_usd"], 0.875);
        assert_eq!(by_model[0]["mean_latency_ms"], 515.5);
        assert_eq!(sqlite["usage_gpt4o"]["totals"]["calls"], 2);
        assert_eq!(sqlite["usage_lg1"]["totals"]["calls"], 5);
        assert_eq!(sqlite["usage_since"]["totals"]["calls"], 4);
        let metrics = &sqlite["metrics"];
        assert_eq!(
            (
                &metrics["llm_calls"],
                &metrics["tool_calls"],
                &metrics["denials"],
                &metrics["errors"],
                &metrics["fallbacks"]
            ),
            (
                &serde_json::json!(3),
                &serde_json::json!(2),
                &serde_json::json!(1),
                &serde_json::json!(1),
                &serde_json::json!(1)
            )
        );
        assert_eq!(metrics["success_rate"], 0.6);
        assert_eq!(metrics["latency_ms"]["p50"], 40.0);
        assert_eq!(metrics["pii_findings"], 1);
        assert_eq!(sqlite["c1"]["input_tokens"], 200, "the replaced record");
        assert_eq!(sqlite["c1"]["simulated"], true);
        assert_eq!(sqlite["c2"]["stream"], true);
        assert_eq!(sqlite["c2"]["code"], "budget_exceeded");
        assert_eq!(sqlite["pii"][0]["count"], 1);
        assert_eq!(sqlite["last_event"], 16);
        let lg1 = sqlite["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["id"] == "lg-1"))
            .expect("lg-1");
        assert_eq!(
            (&lg1["state"], &lg1["runs"]),
            (&serde_json::json!("completed"), &serde_json::json!(1))
        );
        assert_eq!(lg1["progress"]["percent"], 75.0);
        // ... and PostgreSQL reads back exactly what SQLite does.
        for key in sqlite.as_object().expect("an object").keys() {
            assert_eq!(
                sqlite[key], postgres[key],
                "{key}: SQLite (left) and PostgreSQL (right)"
            );
        }
    }
}

#[cfg(test)]
mod unit_figures {
    use super::super::testing::{BACKENDS, TestDb};
    use super::*;
    use crate::events::{CallOutcome, EventKind};
    use crate::model::Severity;
    use crate::store::queries::{NewAgent, RUNNER_IRONHOST};

    const T0: i64 = 1_700_000_000_000;

    fn at(s: i64, agent: &str, kind: EventKind) -> Arc<Event> {
        Arc::new(Event {
            seq: s as u64,
            ts_ms: (T0 + s * 1000) as u64,
            agent_id: agent.into(),
            severity: Severity::Info,
            kind,
        })
    }

    fn unit(
        ok: bool,
        seconds: Option<f64>,
        fallback: Option<&str>,
        unit: Option<&str>,
    ) -> EventKind {
        EventKind::UnitDone {
            ok,
            seconds,
            fallback: fallback.map(str::to_owned),
            unit: unit.map(str::to_owned),
        }
    }

    fn denied(id: &str, code: Option<&str>) -> EventKind {
        EventKind::ToolCall {
            call_id: id.into(),
            tool: "crm_write".into(),
            outcome: CallOutcome::Denied,
            code: code.map(str::to_owned),
            latency_ms: 1.0,
            verdicts: Vec::new(),
        }
    }

    fn circuit(opened: bool, service: &str) -> EventKind {
        let detail = serde_json::json!({"service": service, "failures": 5});
        let policy = "circuit-breaker".to_owned();
        if opened {
            EventKind::CircuitOpened { policy, detail }
        } else {
            EventKind::CircuitClosed { policy, detail }
        }
    }

    /// lg-1 runs 100 s (T0 to T0 + 100 s): four units, denials of every kind, a prompt
    /// injection, a refused egress request, and circuits open 11-14 s (two overlapping) and
    /// from 17 s to the end. lg-2 reports one unit and nothing else, and has run no time.
    fn batch() -> Vec<Arc<Event>> {
        let injection = |agent| {
            at(
                15,
                agent,
                EventKind::PromptInjection {
                    policy: "prompt-guard".into(),
                    detail: serde_json::json!({"pattern": "ignore previous instructions"}),
                },
            )
        };
        vec![
            at(
                1,
                "lg-1",
                EventKind::AgentStarted {
                    name: "lead_gen".into(),
                    script: "agent.py".into(),
                    run: 1,
                },
            ),
            at(
                2,
                "lg-1",
                EventKind::AgentProgress {
                    done: 4,
                    total: Some(10),
                    unit: Some("leads".into()),
                },
            ),
            at(3, "lg-1", unit(true, Some(1.0), None, Some("lead"))),
            at(4, "lg-1", unit(true, Some(2.0), Some("cache"), None)),
            at(5, "lg-1", unit(true, None, Some("placeholder"), None)),
            // A fallback that still failed is a failure, not a fallback.
            at(6, "lg-1", unit(false, Some(3.0), Some("cache"), None)),
            at(7, "lg-1", denied("t1", Some("tool_forbidden"))),
            at(8, "lg-1", denied("t2", Some("circuit_open"))),
            at(9, "lg-1", denied("t3", Some("rate_limited"))),
            at(10, "lg-1", denied("t4", None)),
            at(11, "lg-1", circuit(true, "tool:search")),
            at(12, "lg-1", circuit(true, "llm:openai/gpt-4o-mini")),
            at(13, "lg-1", circuit(false, "tool:search")),
            at(14, "lg-1", circuit(false, "llm:openai/gpt-4o-mini")),
            injection("lg-1"),
            at(
                16,
                "lg-1",
                EventKind::EgressRefused {
                    host: "evil.example".into(),
                    port: 443,
                    reason: "evil.example is not in [egress] allow".into(),
                },
            ),
            at(17, "lg-1", circuit(true, "tool:search")),
            at(18, "lg-2", unit(true, None, None, Some("tickets"))),
            at(19, "lg-2", denied("t5", Some("budget_exceeded"))),
        ]
    }

    #[test]
    fn unit_and_protection_figures_read_back_the_same_on_both_backends() {
        let mut seen = Vec::new();
        for backend in BACKENDS {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            seen.push(rt.block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                for id in ["lg-1", "lg-2"] {
                    store
                        .register_agent(&NewAgent {
                            id,
                            name: id,
                            script: "agent.py",
                            bundle: "default",
                            environment: "dev",
                            budget_usd: None,
                            pid: 1,
                            pid_start: None,
                            runner: RUNNER_IRONHOST,
                        })
                        .await
                        .expect("register");
                }
                record(&store, &batch(), &RecorderKeys::default()).await;
                // Fix the run times: lg-1 ran 100 s, lg-2 none.
                for (id, end) in [("lg-1", T0 + 100_000), ("lg-2", T0)] {
                    sqlx::query("UPDATE agents SET state = 'completed', created_ms = $1, updated_ms = $2 WHERE id = $3")
                        .bind(T0)
                        .bind(end)
                        .bind(id)
                        .execute(store.pool())
                        .await
                        .expect("run time");
                }
                let run: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(run) FROM units WHERE agent_id = 'lg-1'")
                        .fetch_one(store.pool())
                        .await
                        .expect("runs");
                assert_eq!(run, Some(1), "{backend:?}: units carry their run");
                let mut out = serde_json::Map::new();
                for id in ["lg-1", "lg-2"] {
                    let a = store.agent(id).await.expect("agent").expect(id);
                    let m = store.agent_metrics(&a).await.expect("metrics");
                    out.insert(id.to_owned(), serde_json::to_value(m).expect("json"));
                }
                serde_json::Value::Object(out)
            }));
        }
        let (sqlite, postgres) = (&seen[0], &seen[1]);
        let lg1 = &sqlite["lg-1"];
        assert_eq!(
            lg1["units"],
            serde_json::json!({
                "unit": "leads", "done": 4, "ok": 3, "failed": 1, "fallback": 2,
                "success_rate": 0.75, "fallback_rate": 0.5, "per_hour": 144.0,
                "seconds": {"p50": 2.0, "p95": 3.0, "p99": 3.0},
            })
        );
        // tool_forbidden, the denial without a code, and the refused egress request.
        assert_eq!(lg1["unauthorized"], 3);
        assert_eq!(lg1["injections"], 1);
        // Open 11-14 s and 17-100 s of 100 s.
        assert_eq!(lg1["circuit_open_s"], 86.0);
        assert_eq!(lg1["uptime_pct"], 14.0);
        let lg2 = &sqlite["lg-2"];
        assert_eq!(
            lg2["units"],
            serde_json::json!({
                "unit": "tickets", "done": 1, "ok": 1, "failed": 0, "fallback": 0,
                "success_rate": 1.0, "fallback_rate": 0.0, "per_hour": null,
                "seconds": {"p50": null, "p95": null, "p99": null},
            })
        );
        assert_eq!(
            (&lg2["unauthorized"], &lg2["injections"], &lg2["uptime_pct"]),
            (
                &serde_json::json!(0),
                &serde_json::json!(0),
                &serde_json::Value::Null
            )
        );
        assert_eq!(sqlite, postgres, "SQLite (left) and PostgreSQL (right)");
    }

    #[test]
    fn an_agent_without_units_has_none() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let db = TestDb::new(crate::store::Backend::Sqlite).await;
            let store = db.store().await;
            store
                .register_agent(&NewAgent {
                    id: "quiet",
                    name: "quiet",
                    script: "agent.py",
                    bundle: "default",
                    environment: "dev",
                    budget_usd: None,
                    pid: 1,
                    pid_start: None,
                    runner: RUNNER_IRONHOST,
                })
                .await
                .expect("register");
            let a = store.agent("quiet").await.expect("agent").expect("quiet");
            let m = serde_json::to_value(store.agent_metrics(&a).await.expect("metrics"))
                .expect("json");
            assert_eq!(m["units"], serde_json::Value::Null);
            assert_eq!(
                (&m["unauthorized"], &m["injections"]),
                (&serde_json::json!(0), &serde_json::json!(0))
            );
            assert_eq!(m["circuit_open_s"], 0.0);
        });
    }
}
