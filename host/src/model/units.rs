//! Figures over units of work (`ironhost.unit_done`: leads found, tickets answered) and the
//! one percentile rule every figure of the host uses: the in-process metrics
//! (`ironhost.current()`) and the store's (`GET /api/agents`, the dashboard) give the same p95
//! for the same values.

use serde::Serialize;

/// Percentiles (nearest rank) of a set of values.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (all 0 when there are none).
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        Percentiles {
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
        }
    }

    /// [`Percentiles::of`], or `None` when there are no values.
    pub fn of_some(values: Vec<f64>) -> Option<Percentiles> {
        (!values.is_empty()).then(|| Percentiles::of(values))
    }
}

/// An agent's units of work.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnitMetrics {
    /// The agent's progress unit if it reported one, else the latest `unit_done` unit.
    pub unit: Option<String>,
    pub done: i64,
    pub ok: i64,
    pub failed: i64,
    /// Units served by a fallback (`cache`, `placeholder`); counted in `ok`.
    pub fallback: i64,
    /// `ok / done`.
    pub success_rate: f64,
    /// `fallback / done`.
    pub fallback_rate: f64,
    /// Units done per hour of run time; `None` under a second of run time.
    pub per_hour: Option<f64>,
    /// Percentiles of the seconds units took (those that said).
    pub seconds: UnitSeconds,
}

/// Nearest-rank percentiles of units' seconds; `None` when no unit said how long it took.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UnitSeconds {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Counts of units done, the basis of [`UnitMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitCounts {
    pub done: i64,
    pub ok: i64,
    /// Done with a fallback (and ok).
    pub fallback: i64,
}

impl UnitMetrics {
    /// The figures of `counts` over `run_s` seconds of run time, with the seconds the units
    /// said they took; `None` when no unit is done.
    pub fn of(
        unit: Option<String>,
        counts: UnitCounts,
        seconds: Vec<f64>,
        run_s: f64,
    ) -> Option<UnitMetrics> {
        let UnitCounts { done, ok, fallback } = counts;
        if done <= 0 {
            return None;
        }
        let seconds = match Percentiles::of_some(seconds) {
            Some(p) => UnitSeconds {
                p50: Some(p.p50),
                p95: Some(p.p95),
                p99: Some(p.p99),
            },
            None => UnitSeconds::default(),
        };
        Some(UnitMetrics {
            unit,
            done,
            ok,
            failed: done - ok,
            fallback,
            success_rate: ok as f64 / done as f64,
            fallback_rate: fallback as f64 / done as f64,
            per_hour: (run_s >= 1.0).then(|| done as f64 * 3600.0 / run_s),
            seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).rev().collect());
        assert_eq!((p.p50, p.p95, p.p99), (50.0, 95.0, 99.0));
        let p = Percentiles::of(vec![2.0]);
        assert_eq!((p.p50, p.p95, p.p99), (2.0, 2.0, 2.0));
        assert_eq!(Percentiles::of_some(Vec::new()), None);
    }

    #[test]
    fn unit_figures_from_counts() {
        let counts = UnitCounts {
            done: 23,
            ok: 22,
            fallback: 2,
        };
        let m = UnitMetrics::of(
            Some("lead".into()),
            counts,
            vec![1.0, 2.1],
            3600.0 / 212.0 * 23.0,
        )
        .expect("units");
        assert_eq!((m.done, m.ok, m.failed, m.fallback), (23, 22, 1, 2));
        assert!((m.success_rate - 22.0 / 23.0).abs() < 1e-12);
        assert!((m.per_hour.unwrap() - 212.0).abs() < 1e-9);
        assert_eq!(m.seconds.p95, Some(2.1));
        let none = UnitMetrics::of(None, UnitCounts::default(), Vec::new(), 10.0);
        assert_eq!(none, None);
        let quick = UnitMetrics::of(
            None,
            UnitCounts {
                done: 1,
                ok: 1,
                fallback: 0,
            },
            Vec::new(),
            0.5,
        )
        .expect("one unit");
        assert_eq!((quick.per_hour, quick.seconds.p50), (None, None));
    }
}
