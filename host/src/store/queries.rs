//! What the control plane reads and writes besides the recorder: agents, usage, traces,
//! events, limits, users, API tokens and sessions.

use crate::model::recommend::{self, Recommendation};
use crate::model::units::UnitCounts;
pub use crate::model::units::{Percentiles, UnitMetrics, UnitSeconds};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, now_ms};

/// An agent as the store knows it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    pub script: String,
    pub bundle: String,
    pub environment: String,
    pub state: String,
    pub budget_usd: Option<f64>,
    pub pid: Option<i64>,
    #[serde(skip)]
    pub pid_start: Option<i64>,
    /// Who runs it: `ironhost` (`ironhost start`) or `python-sdk`.
    pub runner: String,
    /// The machine of the process `pid` names (none for rows written before fleets).
    pub host: Option<String>,
    pub exit_code: Option<i64>,
    pub progress: Option<Progress>,
    pub runs: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What the agent reported of its progress.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub done: i64,
    pub total: Option<i64>,
    pub unit: Option<String>,
    pub percent: Option<f64>,
}

/// What a new agent is registered with.
#[derive(Debug, Clone)]
pub struct NewAgent<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub script: &'a str,
    pub bundle: &'a str,
    pub environment: &'a str,
    pub budget_usd: Option<f64>,
    pub pid: u32,
    /// When that process started (see [`process_start`]).
    pub pid_start: Option<i64>,
    /// [`RUNNER_IRONHOST`] or [`RUNNER_PYTHON_SDK`].
    pub runner: &'a str,
}

/// An agent `ironhost start` runs: the control plane stops it with SIGTERM to its process.
pub const RUNNER_IRONHOST: &str = "ironhost";
/// An agent the Python SDK opened inside a program: SIGTERM would end the whole program.
pub const RUNNER_PYTHON_SDK: &str = "python-sdk";

/// An agent's figures, from its call records.
#[derive(Debug, Clone, Serialize)]
pub struct AgentMetrics {
    pub agent_id: String,
    pub state: String,
    pub progress: Option<Progress>,
    pub llm_calls: i64,
    pub tool_calls: i64,
    /// Calls answered (by the provider, the tool, or a policy's fallback) over all calls.
    pub success_rate: f64,
    pub denials: i64,
    pub errors: i64,
    pub fallbacks: i64,
    /// Calls per minute over the agent's life so far.
    pub throughput_per_min: f64,
    pub latency_ms: Percentiles,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub budget_usd: Option<f64>,
    pub pii_findings: i64,
    pub uptime_s: f64,
    /// What the agent reported of its units of work; `None` when it never reported one.
    pub units: Option<UnitMetrics>,
    /// Actions refused as not permitted: see [`NOT_UNAUTHORIZED`].
    pub unauthorized: i64,
    /// Prompt-injection attempts policies saw (`prompt_injection` events).
    pub injections: i64,
    /// Share of the run time (created to now, or to the end) with none of the agent's
    /// circuits open, in percent; `None` when the run time is 0.
    pub uptime_pct: Option<f64>,
    /// Seconds of the run time with a circuit open (a circuit still open at the end counts to
    /// the end).
    pub circuit_open_s: f64,
    /// What to do about the budget, by the rule the budget alerts follow
    /// ([`crate::model::recommend`]): `Approve $25 increase`, or `No increase needed: ...`
    /// when the projection fits the limit; none without a limit.
    pub recommended_action: Option<String>,
    /// The increase that action proposes, in dollars; none when none is needed.
    pub recommended_increase_usd: Option<f64>,
}

/// Denial codes that do not make a refused tool call an **unauthorized action**.
///
/// What the metrics count as unauthorized actions (`unauthorized`), defined here:
///
/// - a tool call a policy denied for any reason but one of these (they say a service, a budget
///   or the host could not serve the call, not that the call was not permitted: the circuit was
///   open, the budget was spent or could not be read, secrets could not be injected, a policy
///   failed closed or gave an invalid verdict, the agent cancelled) or a code starting with
///   `rate` (rate limiting). A denial without a code counts.
/// - a network request the host refused under `[egress]` (an `egress_refused` event).
pub const NOT_UNAUTHORIZED: [&str; 7] = [
    "circuit_open",
    "budget_exceeded",
    "budget_unavailable",
    "secrets_unavailable",
    "policy_failed",
    "invalid_verdict",
    "cancelled",
];

/// The SQL condition on `calls` rows for an unauthorized tool call (see [`NOT_UNAUTHORIZED`]).
fn unauthorized_call_sql() -> String {
    let codes: Vec<String> = NOT_UNAUTHORIZED.iter().map(|c| format!("'{c}'")).collect();
    format!(
        "kind = 'tool' AND outcome = 'denied' AND COALESCE(code, '') NOT IN ({}) AND COALESCE(code, '') NOT LIKE 'rate%'",
        codes.join(", ")
    )
}

/// Milliseconds of `[start, end]` during which some circuit was open, from an agent's
/// `circuit_opened` / `circuit_closed` events in order (`(ts_ms, opened, service)`). A circuit
/// is open from its first `circuit_opened` to the next `circuit_closed` of the same service;
/// one still open at `end` counts to `end`.
pub fn circuit_open_ms(events: &[(i64, bool, String)], start: i64, end: i64) -> i64 {
    let mut open: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let mut since = start;
    let mut total = 0;
    for (ts, opened, service) in events {
        let ts = (*ts).clamp(start, end);
        let was_open = !open.is_empty();
        if *opened {
            open.insert(service);
        } else {
            open.remove(service.as_str());
        }
        match (was_open, open.is_empty()) {
            (false, false) => since = ts,
            (true, true) => total += ts - since,
            _ => {}
        }
    }
    if !open.is_empty() {
        total += end - since;
    }
    total.max(0)
}

/// What [`Store::agent_event_figures`] reads.
struct EventFigures {
    injections: i64,
    egress_refused: i64,
    circuit_open_ms: i64,
}

/// Totals over a set of call records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageTotals {
    pub calls: i64,
    pub llm_calls: i64,
    pub tool_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

/// Usage by one key (a model or an agent).
#[derive(Debug, Clone, Serialize)]
pub struct UsageRow {
    pub key: String,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub mean_latency_ms: f64,
}

/// Usage with breakdowns.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub totals: UsageTotals,
    pub by_model: Vec<UsageRow>,
    pub by_agent: Vec<UsageRow>,
}

/// Which call records to count.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub agent_id: Option<String>,
    pub model: Option<String>,
    pub since_ms: Option<i64>,
}

/// One call, as traces list it.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub id: String,
    pub agent_id: String,
    pub kind: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub tool: Option<String>,
    pub outcome: String,
    pub status: Option<i64>,
    pub code: Option<String>,
    pub cost_usd: f64,
    pub latency_ms: f64,
    pub policy_us: i64,
    pub ts_ms: i64,
}

/// One call with every policy's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    #[serde(flatten)]
    pub summary: TraceSummary,
    pub stream: bool,
    pub simulated: bool,
    pub attempts: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub verdicts: serde_json::Value,
}

/// A budget set through the API.
#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    pub id: i64,
    /// `None`: the limit for every agent without one of its own.
    pub agent_id: Option<String>,
    pub limit_usd: f64,
    pub warn_at: f64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A user, without the password hash.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub created_ms: i64,
    #[serde(skip)]
    pub password_hash: String,
}

/// An API token's record (never the token).
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_by: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// PII findings counted by type and action.
#[derive(Debug, Clone, Serialize)]
pub struct PiiCount {
    pub pii_type: String,
    pub action: String,
    pub count: i64,
}

/// When process `pid` started, in clock ticks after boot (`/proc/PID/stat` field 22), if it
/// is running.
impl AgentRecord {
    /// Whether the process that registered the agent still runs (same pid, same start time:
    /// a recycled pid is not taken for it).
    pub fn is_live(&self) -> bool {
        self.live_pid().is_some()
    }

    /// The agent's host process, if it is still the one that registered it.
    pub fn live_pid(&self) -> Option<i64> {
        let pid = self.pid.filter(|p| *p > 0)?;
        let started = self.pid_start?;
        (process_start(pid) == Some(started)).then_some(pid)
    }
}

pub fn process_start(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn progress(row: &AnyRow) -> Option<Progress> {
    let done: Option<i64> = row.get("progress_done");
    let total: Option<i64> = row.get("progress_total");
    done.map(|done| Progress {
        done,
        total,
        unit: row.get("progress_unit"),
        percent: total
            .filter(|t| *t > 0)
            .map(|t| (done as f64 * 100.0 / t as f64 * 10.0).round() / 10.0),
    })
}

fn agent(row: &AnyRow) -> AgentRecord {
    AgentRecord {
        id: row.get("id"),
        name: row.get("name"),
        script: row.get("script"),
        bundle: row.get("bundle"),
        environment: row.get("environment"),
        state: row.get("state"),
        budget_usd: row.get("budget_usd"),
        pid: row.get("pid"),
        pid_start: row.get("pid_start"),
        runner: row.get("runner"),
        host: row.get("host"),
        exit_code: row.get("exit_code"),
        progress: progress(row),
        runs: row.get("runs"),
        created_ms: row.get("created_ms"),
        updated_ms: row.get("updated_ms"),
    }
}

const AGENT_COLUMNS: &str =
    "SELECT a.*, (SELECT COUNT(*) FROM agent_runs r WHERE r.agent_id = a.id) AS runs FROM agents a";

fn trace_summary(row: &AnyRow) -> TraceSummary {
    TraceSummary {
        id: row.get("id"),
        agent_id: row.get("agent_id"),
        kind: row.get("kind"),
        provider: row.get("provider"),
        model: row.get("model"),
        tool: row.get("tool"),
        outcome: row.get("outcome"),
        status: row.get("status"),
        code: row.get("code"),
        cost_usd: row.get("cost_usd"),
        latency_ms: row.get("latency_ms"),
        policy_us: row.get("policy_us"),
        ts_ms: row.get("ts_ms"),
    }
}

fn limit(row: &AnyRow) -> Limit {
    Limit {
        id: row.get("id"),
        agent_id: row.get("agent_id"),
        limit_usd: row.get("limit_usd"),
        warn_at: row.get("warn_at"),
        created_ms: row.get("created_ms"),
        updated_ms: row.get("updated_ms"),
    }
}

fn user(row: &AnyRow) -> User {
    User {
        id: row.get("id"),
        username: row.get("username"),
        role: row.get("role"),
        created_ms: row.get("created_ms"),
        password_hash: row.get("password_hash"),
    }
}

fn token(row: &AnyRow) -> ApiToken {
    ApiToken {
        id: row.get("id"),
        name: row.get("name"),
        role: row.get("role"),
        created_by: row.get("created_by"),
        created_ms: row.get("created_ms"),
        revoked_ms: row.get("revoked_ms"),
    }
}

impl Store {
    /// Record an agent about to start (or restart under the same id).
    pub async fn register_agent(&self, a: &NewAgent<'_>) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agents (id, name, script, bundle, environment, state, budget_usd, pid, pid_start, runner, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, 'starting', $6, $7, $8, $9, $10, $11)
             ON CONFLICT (id) DO UPDATE SET state = 'starting', script = excluded.script, bundle = excluded.bundle,
               environment = excluded.environment, budget_usd = excluded.budget_usd, pid = excluded.pid, pid_start = excluded.pid_start,
               runner = excluded.runner, exit_code = NULL, updated_ms = excluded.updated_ms",
        )
        .bind(a.id)
        .bind(a.name)
        .bind(a.script)
        .bind(a.bundle)
        .bind(a.environment)
        .bind(a.budget_usd)
        .bind(i64::from(a.pid))
        .bind(a.pid_start)
        .bind(a.runner)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Agents recorded as starting or running whose ironhost process is gone (killed with
    /// `kill -9`, crashed hard, the machine restarted): marked `failed`, so they do not show as
    /// running forever. Returns their ids. Checks processes on this machine (`this_host`) only:
    /// an agent another machine runs is seen through its heartbeat (the fleet view).
    pub async fn sweep_lost(&self, this_host: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "{AGENT_COLUMNS} WHERE a.state IN ('starting', 'running')"
        ))
        .fetch_all(self.pool())
        .await?;
        let now = now_ms();
        let mut lost = Vec::new();
        for a in rows.iter().map(agent) {
            if a.is_live() || a.host.as_deref().is_some_and(|h| h != this_host) {
                continue;
            }
            // Only if the row still names the same process (not an agent started meanwhile).
            let changed = sqlx::query(
                "UPDATE agents SET state = 'failed', updated_ms = $1 WHERE id = $2 AND state IN ('starting', 'running') AND pid IS NOT DISTINCT FROM $3 AND pid_start IS NOT DISTINCT FROM $4",
            )
            .bind(now)
            .bind(&a.id)
            .bind(a.pid)
            .bind(a.pid_start)
            .execute(self.pool())
            .await?
            .rows_affected();
            if changed == 0 {
                continue;
            }
            sqlx::query(
                "UPDATE agent_runs SET state = 'failed', ended_ms = $1 WHERE agent_id = $2 AND state IN ('starting', 'running')",
            )
            .bind(now)
            .bind(&a.id)
            .execute(self.pool())
            .await?;
            lost.push(a.id);
        }
        Ok(lost)
    }

    /// Every agent, newest first.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = sqlx::query(&format!("{AGENT_COLUMNS} ORDER BY a.created_ms DESC, a.id"))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(agent).collect())
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query(&format!("{AGENT_COLUMNS} WHERE a.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(agent))
    }

    /// The figures of one agent.
    pub async fn agent_metrics(&self, a: &AgentRecord) -> Result<AgentMetrics, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT
               COUNT(*) FILTER (WHERE kind = 'llm') AS llm, COUNT(*) FILTER (WHERE kind = 'tool') AS tool,
               COUNT(*) FILTER (WHERE outcome IN ('ok', 'fallback')) AS ok,
               COUNT(*) FILTER (WHERE outcome = 'denied') AS denied,
               COUNT(*) FILTER (WHERE outcome = 'error') AS errors,
               COUNT(*) FILTER (WHERE outcome = 'fallback') AS fallbacks,
               COUNT(*) FILTER (WHERE {unauthorized}) AS unauthorized,
               CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input,
               CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output,
               CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost
             FROM calls WHERE agent_id = $1",
            unauthorized = unauthorized_call_sql()
        ))
        .bind(&a.id)
        .fetch_one(self.pool())
        .await?;
        let latencies: Vec<f64> =
            sqlx::query_scalar("SELECT latency_ms FROM calls WHERE agent_id = $1 AND kind = 'llm'")
                .bind(&a.id)
                .fetch_all(self.pool())
                .await?;
        let pii: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pii_audit WHERE agent_id = $1")
            .bind(&a.id)
            .fetch_one(self.pool())
            .await?;
        let (llm, tool, ok): (i64, i64, i64) = (row.get("llm"), row.get("tool"), row.get("ok"));
        let total = llm + tool;
        let running = matches!(a.state.as_str(), "starting" | "running");
        let end = if running { now_ms() } else { a.updated_ms };
        let uptime_s = ((end - a.created_ms).max(0) as f64) / 1000.0;
        let events = self.agent_event_figures(a, end).await?;
        let units = self.unit_metrics(a, uptime_s).await?;
        let unauthorized: i64 = row.get("unauthorized");
        let cost: f64 = row.get("cost");
        let advice = a.budget_usd.filter(|l| *l > 0.0).map(|limit| {
            let projected = a.progress.as_ref().and_then(|p| {
                recommend::projection(
                    cost,
                    u64::try_from(p.done).unwrap_or(0),
                    p.total.and_then(|t| u64::try_from(t).ok()),
                )
            });
            recommend::recommend(limit, projected)
        });
        Ok(AgentMetrics {
            agent_id: a.id.clone(),
            state: a.state.clone(),
            progress: a.progress.clone(),
            llm_calls: llm,
            tool_calls: tool,
            success_rate: if total == 0 {
                1.0
            } else {
                ok as f64 / total as f64
            },
            denials: row.get("denied"),
            errors: row.get("errors"),
            fallbacks: row.get("fallbacks"),
            throughput_per_min: if uptime_s > 0.0 {
                total as f64 * 60.0 / uptime_s
            } else {
                0.0
            },
            latency_ms: Percentiles::of(latencies),
            input_tokens: row.get("input"),
            output_tokens: row.get("output"),
            cost_usd: cost,
            budget_usd: a.budget_usd,
            pii_findings: pii,
            uptime_s,
            units,
            unauthorized: unauthorized + events.egress_refused,
            injections: events.injections,
            uptime_pct: (end > a.created_ms).then(|| {
                let run = (end - a.created_ms) as f64;
                (run - events.circuit_open_ms as f64) * 100.0 / run
            }),
            circuit_open_s: events.circuit_open_ms as f64 / 1000.0,
            recommended_action: advice.map(|r| r.to_string()),
            recommended_increase_usd: match advice {
                Some(Recommendation::Increase(usd)) => Some(usd),
                _ => None,
            },
        })
    }

    /// What an agent's events say for its metrics: counted by type through the
    /// `events_agent_type` index, so only the few rows of those types are read.
    async fn agent_event_figures(
        &self,
        a: &AgentRecord,
        end: i64,
    ) -> Result<EventFigures, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE type = 'prompt_injection') AS injections,
               COUNT(*) FILTER (WHERE type = 'egress_refused') AS egress
             FROM events WHERE agent_id = $1 AND type IN ('prompt_injection', 'egress_refused')",
        )
        .bind(&a.id)
        .fetch_one(self.pool())
        .await?;
        let circuits: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT ts_ms, type, body FROM events
             WHERE agent_id = $1 AND type IN ('circuit_opened', 'circuit_closed') ORDER BY ts_ms, id",
        )
        .bind(&a.id)
        .fetch_all(self.pool())
        .await?;
        let circuits: Vec<(i64, bool, String)> = circuits
            .into_iter()
            .map(|(ts, kind, body)| {
                let service = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|b| b.get("detail")?.get("service")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                (ts, kind == "circuit_opened", service)
            })
            .collect();
        Ok(EventFigures {
            injections: row.get("injections"),
            egress_refused: row.get("egress"),
            circuit_open_ms: circuit_open_ms(&circuits, a.created_ms, end),
        })
    }

    /// An agent's units of work, `None` if it never reported one.
    async fn unit_metrics(
        &self,
        a: &AgentRecord,
        run_s: f64,
    ) -> Result<Option<UnitMetrics>, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS done, COUNT(*) FILTER (WHERE ok = 1) AS ok,
               COUNT(*) FILTER (WHERE ok = 1 AND fallback IS NOT NULL) AS fallback
             FROM units WHERE agent_id = $1",
        )
        .bind(&a.id)
        .fetch_one(self.pool())
        .await?;
        let (done, ok, fallback): (i64, i64, i64) =
            (row.get("done"), row.get("ok"), row.get("fallback"));
        if done == 0 {
            return Ok(None);
        }
        let seconds: Vec<f64> = sqlx::query_scalar(
            "SELECT seconds FROM units WHERE agent_id = $1 AND seconds IS NOT NULL",
        )
        .bind(&a.id)
        .fetch_all(self.pool())
        .await?;
        let unit = match a.progress.as_ref().and_then(|p| p.unit.clone()) {
            Some(u) => Some(u),
            None => sqlx::query_scalar(
                "SELECT unit FROM units WHERE agent_id = $1 AND unit IS NOT NULL ORDER BY ts_ms DESC, id DESC LIMIT 1",
            )
            .bind(&a.id)
            .fetch_optional(self.pool())
            .await?,
        };
        Ok(UnitMetrics::of(
            unit,
            UnitCounts { done, ok, fallback },
            seconds,
            run_s,
        ))
    }

    /// Usage totals and breakdowns by model and by agent.
    pub async fn usage(&self, f: &UsageFilter) -> Result<Usage, StoreError> {
        const WHERE: &str =
            "WHERE ($1 IS NULL OR agent_id = $1) AND ($2 IS NULL OR model = $2) AND ts_ms >= $3";
        let since = f.since_ms.unwrap_or(0);
        let totals = sqlx::query(&format!(
            "SELECT COUNT(*) AS calls, COUNT(*) FILTER (WHERE kind = 'llm') AS llm,
               COUNT(*) FILTER (WHERE kind = 'tool') AS tool,
               CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input,
               CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output,
               CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost FROM calls {WHERE}"
        ))
        .bind(&f.agent_id)
        .bind(&f.model)
        .bind(since)
        .fetch_one(self.pool())
        .await?;
        let breakdown = |column: &str| {
            format!(
                "SELECT {column} AS key, COUNT(*) AS calls,
                   CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input,
                   CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output,
                   CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost,
                   CAST(COALESCE(AVG(latency_ms), 0) AS DOUBLE PRECISION) AS latency
                 FROM calls {WHERE} AND kind = 'llm' GROUP BY {column}
                 ORDER BY cost DESC, {column} IS NOT NULL, {column}"
            )
        };
        let mut by = Vec::new();
        for column in ["model", "agent_id"] {
            let rows = sqlx::query(&breakdown(column))
                .bind(&f.agent_id)
                .bind(&f.model)
                .bind(since)
                .fetch_all(self.pool())
                .await?;
            by.push(
                rows.iter()
                    .map(|r| UsageRow {
                        key: r.get::<Option<String>, _>("key").unwrap_or_default(),
                        calls: r.get("calls"),
                        input_tokens: r.get("input"),
                        output_tokens: r.get("output"),
                        cost_usd: r.get("cost"),
                        mean_latency_ms: r.get("latency"),
                    })
                    .collect::<Vec<_>>(),
            );
        }
        let by_agent = by.pop().unwrap_or_default();
        let by_model = by.pop().unwrap_or_default();
        Ok(Usage {
            totals: UsageTotals {
                calls: totals.get("calls"),
                llm_calls: totals.get("llm"),
                tool_calls: totals.get("tool"),
                input_tokens: totals.get("input"),
                output_tokens: totals.get("output"),
                cost_usd: totals.get("cost"),
            },
            by_model,
            by_agent,
        })
    }

    /// Recent calls, newest first.
    pub async fn traces(
        &self,
        agent_id: Option<&str>,
        before_ms: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TraceSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM calls WHERE ($1 IS NULL OR agent_id = $1) AND ($2 IS NULL OR ts_ms < $2)
             ORDER BY ts_ms DESC, id DESC LIMIT $3",
        )
        .bind(agent_id)
        .bind(before_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(trace_summary).collect())
    }

    pub async fn trace(&self, id: &str) -> Result<Option<Trace>, StoreError> {
        let row = sqlx::query("SELECT * FROM calls WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| Trace {
            summary: trace_summary(&r),
            stream: r.get::<i64, _>("stream") != 0,
            simulated: r.get::<i64, _>("simulated") != 0,
            attempts: r.get("attempts"),
            input_tokens: r.get("input_tokens"),
            output_tokens: r.get("output_tokens"),
            verdicts: serde_json::from_str(&r.get::<String, _>("verdicts")).unwrap_or_default(),
        }))
    }

    /// Stored events with `id > after`, oldest first (with `newest`: the latest, newest
    /// first). Each is the bus's JSON with the store's `id` added.
    pub async fn events(
        &self,
        after: i64,
        agent_id: Option<&str>,
        kind: Option<&str>,
        limit: i64,
        newest: bool,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let order = if newest { "DESC" } else { "ASC" };
        let rows = sqlx::query(&format!(
            "SELECT id, body FROM events WHERE id > $1 AND ($2 IS NULL OR agent_id = $2) AND ($3 IS NULL OR type = $3)
             ORDER BY id {order} LIMIT $4"
        ))
        .bind(after)
        .bind(agent_id)
        .bind(kind)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let mut body: serde_json::Value =
                    serde_json::from_str(&r.get::<String, _>("body")).unwrap_or_default();
                if let Some(o) = body.as_object_mut() {
                    o.insert("id".into(), r.get::<i64, _>("id").into());
                }
                body
            })
            .collect())
    }

    /// Follow the events other processes store: from the current end of the table, read
    /// every `every`, each new row (as [`Store::events`] gives it) into the returned channel,
    /// in order. `who` names the follower in logs. The channel closes if the start cannot be
    /// read; a failed read is logged and tried again at the next tick.
    pub fn follow_events(
        &self,
        every: std::time::Duration,
        who: &'static str,
    ) -> tokio::sync::mpsc::Receiver<serde_json::Value> {
        let (tx, rx) = tokio::sync::mpsc::channel(1000);
        let store = self.clone();
        tokio::spawn(async move {
            let mut after = match store.last_event_id().await {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!("{who}: cannot follow the store's events: {e}");
                    return;
                }
            };
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match store.events(after, None, None, 1000, false).await {
                    Ok(rows) => {
                        for row in rows {
                            if let Some(id) = row.get("id").and_then(serde_json::Value::as_i64) {
                                after = after.max(id);
                            }
                            if tx.send(row).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::warn!("{who}: cannot read new events: {e}"),
                }
            }
        });
        rx
    }

    /// The highest event id stored (0: none).
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// PII findings by type and action (all agents, or one).
    pub async fn pii_counts(&self, agent_id: Option<&str>) -> Result<Vec<PiiCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT pii_type, action, COUNT(*) AS n FROM pii_audit WHERE ($1 IS NULL OR agent_id = $1)
             GROUP BY pii_type, action ORDER BY n DESC, pii_type",
        )
        .bind(agent_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| PiiCount {
                pii_type: r.get("pii_type"),
                action: r.get("action"),
                count: r.get("n"),
            })
            .collect())
    }

    pub async fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        let rows = sqlx::query("SELECT * FROM limits ORDER BY agent_id IS NOT NULL, agent_id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(limit).collect())
    }

    pub async fn limit(&self, id: i64) -> Result<Option<Limit>, StoreError> {
        let row = sqlx::query("SELECT * FROM limits WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(limit))
    }

    /// Record the budget an agent now runs with (a limit applied while it runs).
    pub async fn set_agent_budget(&self, agent_id: &str, usd: f64) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET budget_usd = $1 WHERE id = $2")
            .bind(usd)
            .bind(agent_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The limit that applies to `agent_id`: its own, else the global one.
    pub async fn limit_for(&self, agent_id: &str) -> Result<Option<Limit>, StoreError> {
        let row = sqlx::query("SELECT * FROM limits WHERE agent_id = $1 OR agent_id IS NULL ORDER BY agent_id IS NULL LIMIT 1")
            .bind(agent_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(limit))
    }

    /// Create a limit; `Ok(None)` if that scope already has one.
    pub async fn create_limit(
        &self,
        agent_id: Option<&str>,
        limit_usd: f64,
        warn_at: f64,
    ) -> Result<Option<Limit>, StoreError> {
        let now = now_ms();
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO limits (agent_id, limit_usd, warn_at, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(agent_id)
        .bind(limit_usd)
        .bind(warn_at)
        .bind(now)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        match id {
            Some(id) => self.limit(id).await,
            None => Ok(None),
        }
    }

    pub async fn update_limit(
        &self,
        id: i64,
        limit_usd: f64,
        warn_at: f64,
    ) -> Result<Option<Limit>, StoreError> {
        let n = sqlx::query(
            "UPDATE limits SET limit_usd = $1, warn_at = $2, updated_ms = $3 WHERE id = $4",
        )
        .bind(limit_usd)
        .bind(warn_at)
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        self.limit(id).await
    }

    pub async fn delete_limit(&self, id: i64) -> Result<Option<Limit>, StoreError> {
        let existing = self.limit(id).await?;
        if existing.is_some() {
            sqlx::query("DELETE FROM limits WHERE id = $1")
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        Ok(existing)
    }

    pub async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?)
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(user))
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(user))
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(user).collect())
    }

    /// Create a user; `Ok(None)` if the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<Option<User>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO users (username, password_hash, role, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        match id {
            Some(id) => self.user_by_id(id).await,
            None => Ok(None),
        }
    }

    pub async fn create_token(
        &self,
        name: &str,
        digest: &str,
        role: &str,
        created_by: &str,
    ) -> Result<ApiToken, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, token_sha256, role, created_by, created_ms) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
        )
        .bind(name)
        .bind(digest)
        .bind(role)
        .bind(created_by)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        let row = sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_one(self.pool())
            .await?;
        Ok(token(&row))
    }

    /// The live (unrevoked) token with this digest.
    pub async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM api_tokens WHERE token_sha256 = $1 AND revoked_ms IS NULL")
                .bind(digest)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.as_ref().map(token))
    }

    pub async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(token).collect())
    }

    /// Revoke a token; false if there is no live token with this id.
    pub async fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn create_session(
        &self,
        id: &str,
        user_id: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_ms, expires_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(user_id)
        .bind(now_ms())
        .bind(expires_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Whether the session exists, is unexpired and not revoked.
    pub async fn session_live(&self, id: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE id = $1 AND revoked_ms IS NULL AND expires_ms > $2",
        )
        .bind(id)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        Ok(n == 1)
    }

    /// End every live session of a user (their access and refresh tokens stop working);
    /// returns how many were live.
    pub async fn revoke_user_sessions(&self, user_id: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_ms = $1 WHERE user_id = $2 AND revoked_ms IS NULL AND expires_ms > $3",
        )
        .bind(now_ms())
        .bind(user_id)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Change a user's role, or remove the user (`role` None) with their sessions, in one
    /// transaction that refuses to leave the installation without an admin. `Ok(None)` when
    /// there is no such user; `Err(UserChange::LastAdmin)` when it would remove the last admin.
    pub async fn change_user(
        &self,
        id: i64,
        role: Option<&str>,
    ) -> Result<Result<Option<User>, LastAdmin>, StoreError> {
        // The write lock (SQLite), or the admins' rows and then the user's (PostgreSQL: in that
        // order, so two changes never wait on each other in a circle), are held from before the
        // admins are counted until the change commits: two changes cannot each count the other's
        // admin and leave none.
        let mut tx = self.begin_write().await?;
        let lock = self.for_update();
        let admins = sqlx::query(&format!(
            "SELECT id FROM users WHERE role = 'admin' ORDER BY id{lock}"
        ))
        .fetch_all(&mut *tx)
        .await?
        .len();
        let current: Option<String> =
            sqlx::query_scalar(&format!("SELECT role FROM users WHERE id = $1{lock}"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else {
            return Ok(Ok(None));
        };
        if current == "admin" && admins <= 1 && role != Some("admin") {
            return Ok(Err(LastAdmin));
        }
        match role {
            Some(r) => {
                sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                    .bind(r)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let before = user(&row);
        if role.is_none() {
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Ok(Some(before)))
    }

    pub async fn revoke_session(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// A change refused because it would leave the installation without an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastAdmin;

#[cfg(test)]
mod tests {
    use super::super::testing::{BACKENDS, TestDb, rt};
    use super::*;

    #[test]
    fn a_running_process_has_a_start_time_and_a_missing_one_none() {
        let me = process_start(i64::from(std::process::id())).expect("our own start time");
        assert!(me > 0);
        assert_eq!(process_start(i64::from(std::process::id())), Some(me));
        assert_eq!(process_start(i64::from(i32::MAX)), None);
    }

    #[test]
    fn limits_one_per_scope() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                let global = store.create_limit(None, 10.0, 0.8).await.expect("create");
                let global = global.unwrap_or_else(|| panic!("{backend:?}: the global limit"));
                assert_eq!(
                    (global.agent_id.as_deref(), global.limit_usd, global.warn_at),
                    (None, 10.0, 0.8)
                );
                // One global limit, one per agent.
                assert!(
                    store
                        .create_limit(None, 20.0, 0.9)
                        .await
                        .expect("create")
                        .is_none(),
                    "{backend:?}"
                );
                let own = store
                    .create_limit(Some("lg-1"), 2.5, 0.5)
                    .await
                    .expect("create")
                    .expect("own");
                assert!(
                    store
                        .create_limit(Some("lg-1"), 3.0, 0.5)
                        .await
                        .expect("create")
                        .is_none()
                );
                assert!(own.id > global.id);
                // An agent's own limit applies before the global one.
                assert_eq!(
                    store.limit_for("lg-1").await.expect("for").map(|l| l.id),
                    Some(own.id)
                );
                assert_eq!(
                    store.limit_for("lg-2").await.expect("for").map(|l| l.id),
                    Some(global.id)
                );
                let listed: Vec<Option<String>> = store
                    .limits()
                    .await
                    .expect("limits")
                    .into_iter()
                    .map(|l| l.agent_id)
                    .collect();
                assert_eq!(listed, [None, Some("lg-1".to_owned())], "{backend:?}");
                let updated = store
                    .update_limit(own.id, 4.0, 0.75)
                    .await
                    .expect("update")
                    .expect("exists");
                assert_eq!((updated.limit_usd, updated.warn_at), (4.0, 0.75));
                assert!(
                    store
                        .update_limit(999, 1.0, 0.5)
                        .await
                        .expect("update")
                        .is_none()
                );
                // A value the schema refuses is an error, not a silent "exists already".
                assert!(
                    store.create_limit(Some("lg-3"), -1.0, 0.5).await.is_err(),
                    "{backend:?}"
                );
                assert!(store.delete_limit(own.id).await.expect("delete").is_some());
                assert!(store.delete_limit(own.id).await.expect("delete").is_none());
                assert_eq!(
                    store.limit_for("lg-1").await.expect("for").map(|l| l.id),
                    Some(global.id)
                );
            });
        }
    }

    #[test]
    fn users_tokens_and_sessions() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                assert_eq!(store.user_count().await.expect("count"), 0);
                let admin = store
                    .create_user("admin", "h1", "admin")
                    .await
                    .expect("create")
                    .expect("new");
                assert!(
                    store
                        .create_user("admin", "h2", "viewer")
                        .await
                        .expect("create")
                        .is_none(),
                    "{backend:?}"
                );
                let viewer = store
                    .create_user("v", "h3", "viewer")
                    .await
                    .expect("create")
                    .expect("new");
                assert_eq!(
                    store
                        .user_by_name("admin")
                        .await
                        .expect("by name")
                        .map(|u| u.password_hash),
                    Some("h1".into())
                );
                assert_eq!(store.users().await.expect("users").len(), 2);

                let t = store
                    .create_token("ci", "digest-1", "agent", "admin")
                    .await
                    .expect("token");
                assert_eq!((t.name.as_str(), t.revoked_ms), ("ci", None));
                assert_eq!(
                    store
                        .token_by_digest("digest-1")
                        .await
                        .expect("by digest")
                        .map(|x| x.id),
                    Some(t.id)
                );
                assert!(store.revoke_token(t.id).await.expect("revoke"));
                assert!(!store.revoke_token(t.id).await.expect("revoke again"));
                assert!(
                    store
                        .token_by_digest("digest-1")
                        .await
                        .expect("by digest")
                        .is_none()
                );

                let later = now_ms() + 60_000;
                store
                    .create_session("s1", admin.id, later)
                    .await
                    .expect("session");
                store
                    .create_session("s2", admin.id, later)
                    .await
                    .expect("session");
                store
                    .create_session("old", admin.id, now_ms() - 1)
                    .await
                    .expect("session");
                assert!(store.session_live("s1").await.expect("live"));
                assert!(!store.session_live("old").await.expect("expired"));
                store.revoke_session("s1").await.expect("revoke");
                assert!(!store.session_live("s1").await.expect("revoked"));
                assert_eq!(
                    store
                        .revoke_user_sessions(admin.id)
                        .await
                        .expect("revoke all"),
                    1
                );

                // The last admin stays.
                assert!(matches!(
                    store
                        .change_user(admin.id, Some("viewer"))
                        .await
                        .expect("change"),
                    Err(LastAdmin)
                ));
                assert!(matches!(
                    store.change_user(admin.id, None).await.expect("remove"),
                    Err(LastAdmin)
                ));
                let promoted = store
                    .change_user(viewer.id, Some("admin"))
                    .await
                    .expect("change");
                assert_eq!(
                    promoted.ok().flatten().map(|u| u.role),
                    Some("admin".into())
                );
                let removed = store.change_user(admin.id, None).await.expect("remove");
                assert_eq!(
                    removed.ok().flatten().map(|u| u.username),
                    Some("admin".into())
                );
                assert!(store.user_by_id(admin.id).await.expect("by id").is_none());
                assert!(matches!(
                    store
                        .change_user(admin.id, Some("viewer"))
                        .await
                        .expect("gone"),
                    Ok(None)
                ));
            });
        }
    }

    #[test]
    fn two_admins_demoting_each_other_at_once_leave_one() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                let a = store
                    .create_user("a", "h", "admin")
                    .await
                    .expect("a")
                    .expect("new");
                let b = store
                    .create_user("b", "h", "admin")
                    .await
                    .expect("b")
                    .expect("new");
                let (ra, rb) = tokio::join!(
                    tokio::spawn({
                        let store = store.clone();
                        async move { store.change_user(a.id, Some("viewer")).await }
                    }),
                    tokio::spawn({
                        let store = store.clone();
                        async move { store.change_user(b.id, Some("viewer")).await }
                    })
                );
                let (ra, rb) = (ra.expect("task").expect("a"), rb.expect("task").expect("b"));
                assert!(
                    ra.is_err() != rb.is_err(),
                    "{backend:?}: exactly one is refused: {ra:?} {rb:?}"
                );
                let admins = store
                    .users()
                    .await
                    .expect("users")
                    .into_iter()
                    .filter(|u| u.role == "admin")
                    .count();
                assert_eq!(admins, 1, "{backend:?}");
            });
        }
    }

    #[test]
    fn a_lost_agent_is_marked_failed_and_a_restarted_one_is_not() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                let me = std::process::id();
                for (id, pid, pid_start) in [
                    ("gone", i32::MAX as u32, Some(1)),
                    ("alive", me, process_start(i64::from(me))),
                ] {
                    store
                        .register_agent(&NewAgent {
                            id,
                            name: id,
                            script: "a.py",
                            bundle: "default",
                            environment: "dev",
                            budget_usd: None,
                            pid,
                            pid_start,
                            runner: RUNNER_IRONHOST,
                        })
                        .await
                        .expect("register");
                }
                // An agent another machine runs is that machine's to sweep.
                store
                    .register_agent(&NewAgent {
                        id: "remote",
                        name: "remote",
                        script: "a.py",
                        bundle: "default",
                        environment: "dev",
                        budget_usd: None,
                        pid: i32::MAX as u32,
                        pid_start: Some(1),
                        runner: RUNNER_IRONHOST,
                    })
                    .await
                    .expect("register");
                store
                    .register_instance(&crate::store::fleet::NewInstance {
                        id: "remote-1",
                        agent_id: "remote",
                        host: "another-machine",
                        pid: i32::MAX as u32,
                        runner: RUNNER_IRONHOST,
                        bundle: "default",
                        revision: None,
                    })
                    .await
                    .expect("instance");
                assert_eq!(
                    store.sweep_lost("this-machine").await.expect("sweep"),
                    ["gone"],
                    "{backend:?}"
                );
                assert_eq!(
                    store.agent("gone").await.expect("agent").map(|a| a.state),
                    Some("failed".into())
                );
                assert_eq!(
                    store.agent("alive").await.expect("agent").map(|a| a.state),
                    Some("starting".into())
                );
                store.set_agent_budget("alive", 2.5).await.expect("budget");
                assert_eq!(
                    store
                        .agent("alive")
                        .await
                        .expect("agent")
                        .and_then(|a| a.budget_usd),
                    Some(2.5)
                );
            });
        }
    }
}

#[cfg(test)]
mod circuit_tests {
    use super::circuit_open_ms;

    fn ev(ts: i64, opened: bool, s: &str) -> (i64, bool, String) {
        (ts, opened, s.to_owned())
    }

    #[test]
    fn open_time_is_the_union_of_the_circuits() {
        // Nothing open: nothing counted.
        assert_eq!(circuit_open_ms(&[], 0, 100), 0);
        // Overlapping circuits count once; an opening repeated while open changes nothing.
        let events = [
            ev(10, true, "a"),
            ev(15, true, "b"),
            ev(18, true, "a"),
            ev(20, false, "a"),
            ev(30, false, "b"),
        ];
        assert_eq!(circuit_open_ms(&events, 0, 100), 20);
        // Still open at the end: counted to the end; events outside the run are clamped.
        assert_eq!(circuit_open_ms(&[ev(-5, true, "a")], 0, 100), 100);
        assert_eq!(circuit_open_ms(&[ev(90, true, "a")], 0, 100), 10);
        // A close without an opening (opened before the run) counts nothing.
        assert_eq!(circuit_open_ms(&[ev(50, false, "a")], 0, 100), 0);
    }
}
