//! The recommended action of a budget alert: how much to raise the limit by, if at all.
//!
//! The rule, in whole "nice" steps of the limit's size ($1 under $10, $5 up to $100, $10 up to
//! $500, $50 above):
//! - a projection above the limit: the shortfall plus a 10% margin, rounded up to a step;
//! - no projection (the agent reported no progress with a total): half the limit, rounded up
//!   to a step (a $50 limit → `Approve $25 increase`);
//! - a projection within the limit: no increase.

use std::fmt;

/// What an operator is advised to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recommendation {
    /// Raise the limit by this many dollars (a whole number of steps).
    Increase(f64),
    /// The projected total fits the limit.
    NoIncrease { projected: f64, limit: f64 },
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recommendation::Increase(usd) => write!(f, "Approve ${usd:.0} increase"),
            Recommendation::NoIncrease { projected, limit } => {
                write!(
                    f,
                    "No increase needed: projected ${projected:.2} of ${limit:.2}"
                )
            }
        }
    }
}

/// The rounding step for a limit of `limit_usd`.
pub fn step(limit_usd: f64) -> f64 {
    if limit_usd < 10.0 {
        1.0
    } else if limit_usd <= 100.0 {
        5.0
    } else if limit_usd <= 500.0 {
        10.0
    } else {
        50.0
    }
}

/// `usd` rounded up to a whole number of `step`s, at least one.
fn round_up(usd: f64, step: f64) -> f64 {
    // A hair below, so that an exact multiple computed with rounding error stays itself.
    let steps = ((usd - 1e-9) / step).ceil().max(1.0);
    steps * step
}

/// The recommendation for a limit of `limit_usd` and, if known, the projected total spend.
pub fn recommend(limit_usd: f64, projected_usd: Option<f64>) -> Recommendation {
    let step = step(limit_usd);
    match projected_usd {
        Some(projected) if projected.is_finite() && projected <= limit_usd => {
            Recommendation::NoIncrease {
                projected,
                limit: limit_usd,
            }
        }
        Some(projected) if projected.is_finite() => {
            Recommendation::Increase(round_up((projected - limit_usd) * 1.1, step))
        }
        _ => Recommendation::Increase(round_up(limit_usd / 2.0, step)),
    }
}

/// The projected total: the cost so far per unit done, times the units in all. `None` without
/// progress to go by.
pub fn projection(spent_usd: f64, done: u64, total: Option<u64>) -> Option<f64> {
    let total = total?;
    if done == 0 || total == 0 {
        return None;
    }
    Some(spent_usd / done as f64 * total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_projection_half_the_limit_in_nice_steps() {
        assert_eq!(recommend(50.0, None).to_string(), "Approve $25 increase");
        assert_eq!(recommend(20.0, None).to_string(), "Approve $10 increase");
        assert_eq!(recommend(5.0, None).to_string(), "Approve $3 increase");
        assert_eq!(recommend(0.5, None).to_string(), "Approve $1 increase");
        assert_eq!(recommend(250.0, None).to_string(), "Approve $130 increase");
        assert_eq!(recommend(1000.0, None).to_string(), "Approve $500 increase");
        assert_eq!(recommend(1234.0, None).to_string(), "Approve $650 increase");
    }

    #[test]
    fn a_projection_past_the_limit_asks_for_the_shortfall_and_a_margin() {
        // $52.90 projected of $50: $2.90 short, $3.19 with the margin, one $5 step.
        assert_eq!(
            recommend(50.0, Some(52.90)).to_string(),
            "Approve $5 increase"
        );
        // $72 of $50: $22 short, $24.20 with the margin → $25.
        assert_eq!(recommend(50.0, Some(72.0)), Recommendation::Increase(25.0));
        // Exactly a multiple stays itself: $10 short of $100... +10% = $11 → $15.
        assert_eq!(
            recommend(100.0, Some(110.0)),
            Recommendation::Increase(15.0)
        );
        assert_eq!(recommend(8.0, Some(8.5)), Recommendation::Increase(1.0));
        assert_eq!(
            recommend(600.0, Some(700.0)),
            Recommendation::Increase(150.0)
        );
    }

    #[test]
    fn a_projection_within_the_limit_needs_no_increase() {
        assert_eq!(
            recommend(50.0, Some(48.1)).to_string(),
            "No increase needed: projected $48.10 of $50.00"
        );
        assert_eq!(
            recommend(50.0, Some(50.0)),
            Recommendation::NoIncrease {
                projected: 50.0,
                limit: 50.0
            }
        );
        // A projection that is not a number is no projection.
        assert_eq!(
            recommend(50.0, Some(f64::NAN)),
            Recommendation::Increase(25.0)
        );
    }

    #[test]
    fn the_projection_is_cost_per_unit_times_units() {
        let p = projection(5.29, 10, Some(100)).expect("projected");
        assert!((p - 52.9).abs() < 1e-9, "{p}");
        assert_eq!(projection(5.0, 0, Some(100)), None);
        assert_eq!(projection(5.0, 10, None), None);
        assert_eq!(step(9.99), 1.0);
        assert_eq!(step(10.0), 5.0);
        assert_eq!(step(100.0), 5.0);
        assert_eq!(step(100.01), 10.0);
        assert_eq!(step(500.01), 50.0);
    }
}
