//! Live figures of one agent: calls, tokens, cost, latency, units of work. Kept by the host
//! across restarts of the agent, read by `ironhost.current()` and the log. Percentiles follow
//! the rule of the store's figures ([`Percentiles`]), so the agent and the dashboard agree.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;

use crate::model::units::{Percentiles, UnitCounts, UnitMetrics};

/// Latencies (and units' seconds) kept for percentiles.
const WINDOW: usize = 10_000;

/// Running totals.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// When the figures began (units per hour count from here).
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::default(),
            started: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    llm_calls: u64,
    llm_errors: u64,
    denied: u64,
    fallbacks: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    cost_by_model: BTreeMap<String, f64>,
    tool_calls: u64,
    tool_errors: u64,
    tool_fallbacks: u64,
    pii_findings: u64,
    pii_by_kind: BTreeMap<String, u64>,
    latencies_ms: VecDeque<f64>,
    units: UnitCounts,
    unit_seconds: VecDeque<f64>,
    unit: Option<String>,
}

fn keep(window: &mut VecDeque<f64>, value: f64) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(value);
}

/// A copy of the figures at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricsSnapshot {
    pub llm_calls: u64,
    pub llm_errors: u64,
    pub denied: u64,
    pub fallbacks: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub cost_by_model: BTreeMap<String, f64>,
    pub tool_calls: u64,
    pub tool_errors: u64,
    pub tool_fallbacks: u64,
    pub pii_findings: u64,
    /// Findings by kind (`email`, `phone`, `ssn`, `credit_card`, ...).
    pub pii_by_kind: BTreeMap<String, u64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Units of work done (`ironhost.unit_done`); none until one is.
    pub units: Option<UnitMetrics>,
}

/// What one finished LLM call adds.
#[derive(Debug, Clone, Copy)]
pub enum LlmTally {
    Answered { input: u32, output: u32, cost: f64 },
    Error,
    Denied,
    Fallback,
}

impl Metrics {
    /// Count one LLM call; returns the agent's cost so far.
    pub fn llm(&self, model: &str, tally: LlmTally, latency_ms: f64) -> f64 {
        let mut m = self.inner.lock();
        m.llm_calls += 1;
        match tally {
            LlmTally::Answered {
                input,
                output,
                cost,
            } => {
                m.input_tokens += u64::from(input);
                m.output_tokens += u64::from(output);
                m.cost_usd += cost;
                *m.cost_by_model.entry(model.to_owned()).or_default() += cost;
                keep(&mut m.latencies_ms, latency_ms);
            }
            LlmTally::Error => m.llm_errors += 1,
            LlmTally::Denied => m.denied += 1,
            LlmTally::Fallback => m.fallbacks += 1,
        }
        m.cost_usd
    }

    /// Count one tool call.
    pub fn tool(&self, failed: bool, fallback: bool, denied: bool) {
        let mut m = self.inner.lock();
        m.tool_calls += 1;
        m.tool_errors += u64::from(failed);
        m.tool_fallbacks += u64::from(fallback);
        m.denied += u64::from(denied);
    }

    /// Count a PII finding of `kind`.
    pub fn pii(&self, kind: &str) {
        let mut m = self.inner.lock();
        m.pii_findings += 1;
        *m.pii_by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// Count a unit of work done (`ironhost.unit_done`).
    pub fn unit(&self, ok: bool, seconds: Option<f64>, fallback: bool, unit: Option<&str>) {
        let mut m = self.inner.lock();
        m.units.done += 1;
        m.units.ok += i64::from(ok);
        m.units.fallback += i64::from(ok && fallback);
        if let Some(s) = seconds {
            keep(&mut m.unit_seconds, s);
        }
        if let Some(u) = unit {
            m.unit = Some(u.to_owned());
        }
    }

    /// The agent's cost so far.
    pub fn cost_usd(&self) -> f64 {
        self.inner.lock().cost_usd
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let m = self.inner.lock();
        // Copied under the lock, sorted after it: calls counting meanwhile do not wait.
        let latencies: Vec<f64> = m.latencies_ms.iter().copied().collect();
        let unit_seconds: Vec<f64> = m.unit_seconds.iter().copied().collect();
        let (unit, counts) = (m.unit.clone(), m.units);
        let mut snapshot = MetricsSnapshot {
            llm_calls: m.llm_calls,
            llm_errors: m.llm_errors,
            denied: m.denied,
            fallbacks: m.fallbacks,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cost_usd: m.cost_usd,
            cost_by_model: m.cost_by_model.clone(),
            tool_calls: m.tool_calls,
            tool_errors: m.tool_errors,
            tool_fallbacks: m.tool_fallbacks,
            pii_findings: m.pii_findings,
            pii_by_kind: m.pii_by_kind.clone(),
            latency_p50_ms: None,
            latency_p95_ms: None,
            latency_p99_ms: None,
            units: None,
        };
        drop(m);
        if let Some(p) = Percentiles::of_some(latencies) {
            snapshot.latency_p50_ms = Some(p.p50);
            snapshot.latency_p95_ms = Some(p.p95);
            snapshot.latency_p99_ms = Some(p.p99);
        }
        snapshot.units = UnitMetrics::of(
            unit,
            counts,
            unit_seconds,
            self.started.elapsed().as_secs_f64(),
        );
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_percentiles() {
        let m = Metrics::default();
        for i in 1..=100 {
            m.llm(
                "gpt-4o",
                LlmTally::Answered {
                    input: 10,
                    output: 5,
                    cost: 0.01,
                },
                f64::from(i),
            );
        }
        m.llm("gpt-4o", LlmTally::Denied, 0.0);
        let s = m.snapshot();
        assert_eq!((s.llm_calls, s.denied, s.input_tokens), (101, 1, 1000));
        assert!((s.cost_usd - 1.0).abs() < 1e-9);
        // Nearest rank, as the store's figures.
        assert_eq!(s.latency_p50_ms, Some(50.0));
        assert_eq!(s.latency_p99_ms, Some(99.0));
        assert_eq!(s.units, None);
    }

    #[test]
    fn units_of_work() {
        let m = Metrics::default();
        m.unit(true, Some(1.0), false, Some("lead"));
        m.unit(true, Some(3.0), true, None);
        m.unit(false, None, true, None);
        let u = m.snapshot().units.expect("units");
        assert_eq!((u.done, u.ok, u.failed, u.fallback), (3, 2, 1, 1));
        assert_eq!(u.unit.as_deref(), Some("lead"));
        assert_eq!((u.seconds.p50, u.seconds.p95), (Some(1.0), Some(3.0)));
    }
}
